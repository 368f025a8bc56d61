"""Prepares VoxCeleb1 (vox1_dev/vox1_test/vox1_all + O/E/H trials) and/or VoxCeleb2 dev data directories."""

from __future__ import annotations

import argparse
import logging
import sys

from speakernet.bin import run_stage
from speakernet.data.prepare.voxceleb import prepare_voxceleb1, prepare_voxceleb2_dev
from speakernet.utils.logging import setup_logging

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    """Returns the command-line parser."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--voxceleb1-root", help="VoxCeleb1 root holding wav/<id1xxxx>/<video>/<nnnnn>.wav")
    parser.add_argument("--voxceleb2-root", help="VoxCeleb2 root holding dev/aac/<id0xxxx>/<video>/<n>.m4a")
    parser.add_argument("--trial-lists-dir", help="directory with veri_test2.txt, list_test_{all,hard}2.txt and "
                                                  "vox1_meta.csv (default: the VoxCeleb1 root, then its parent)")
    parser.add_argument("--allow-missing", action="store_true",
                        help="drop trials whose audio is missing instead of failing")
    parser.add_argument("--vox2-name", default="vox2_dev", help="name of the VoxCeleb2 data directory")
    parser.add_argument("--out-dir", required=True, help="where the data directories are written")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Runs the preparation; returns the process exit status."""
    args = build_parser().parse_args(argv)
    setup_logging()
    if args.voxceleb1_root is None and args.voxceleb2_root is None:
        logger.error("give --voxceleb1-root and/or --voxceleb2-root")
        return 2

    def prepare() -> None:
        if args.voxceleb1_root is not None:
            prepare_voxceleb1(args.voxceleb1_root, args.out_dir, args.trial_lists_dir, args.allow_missing)
        if args.voxceleb2_root is not None:
            prepare_voxceleb2_dev(args.voxceleb2_root, args.out_dir, name=args.vox2_name)

    return run_stage(prepare)


if __name__ == "__main__":
    sys.exit(main())

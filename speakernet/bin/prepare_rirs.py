"""Prepares RIRS_NOISES' RIR and isotropic-noise source dirs.

Reads ``<root>/simulated_rirs/{smallroom,mediumroom,largeroom}/Room*/Room*-*.wav`` -> ``rirs_<type>``
and ``<root>/real_rirs_isotropic_noises/*.wav`` -> ``rirs_real``, ``noise_isotropic`` (see
:mod:`speakernet.data.prepare.rirs`)::

    python -m speakernet.bin.prepare_rirs --root /corpora/RIRS_NOISES --out-dir data [--room-types smallroom,mediumroom]
"""

from __future__ import annotations

import argparse
import sys

from speakernet.bin import parse_bool, run_stage
from speakernet.data.prepare.rirs import prepare_rirs
from speakernet.utils.logging import setup_logging


def build_parser() -> argparse.ArgumentParser:
    """Returns the command-line parser."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", required=True, help="the RIRS_NOISES folder")
    parser.add_argument("--out-dir", required=True, help="parent of the data dirs written (each replaced as a whole)")
    parser.add_argument("--room-types", default="",
                        help="comma-separated simulated room types to take (default: those present)")
    parser.add_argument("--real", type=parse_bool, default=True,
                        help="read real_rirs_isotropic_noises/ when present (default %(default)s)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Runs the preparation; returns the process exit status."""
    args = build_parser().parse_args(argv)
    setup_logging()
    room_types = [kind.strip() for kind in args.room_types.split(",") if kind.strip()] or None
    return run_stage(lambda: prepare_rirs(args.root, args.out_dir, room_types=room_types, real=args.real))


if __name__ == "__main__":
    sys.exit(main())

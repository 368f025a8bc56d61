"""Stage: check a Kaldi data directory against the data-dir contract.

Lists every problem found (file, line, key) and exits 1, or exits 0 if the dir is valid::

    python -m speakernet.bin.validate_data_dir data/train --need-feats --need-vad
"""

from __future__ import annotations

import argparse
import sys

from speakernet.bin import run_stage
from speakernet.data.validate import validate_data_dir
from speakernet.utils.logging import setup_logging


def main(argv: list[str] | None = None) -> int:
    """Parses the command line and validates; returns 0 if the dir is valid, 1 otherwise."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_dir", help="data directory")
    parser.add_argument("--need-feats", action="store_true", help="require feats.scp")
    parser.add_argument("--need-vad", action="store_true", help="require vad.scp")
    parser.add_argument("--need-segments", action="store_true", help="require segments")
    parser.add_argument("--check-files-exist", action="store_true",
                        help="check that audio files (not pipes) and feature/VAD archives exist")
    parser.add_argument("--check-trials", action="store_true",
                        help="check that trials refer to utterances (test) and utterances or speakers (enrolment) "
                        "of this dir")
    parser.add_argument("--enroll-dir", default=None,
                        help="with --check-trials: the data dir of the enrolment side (default: this dir)")
    parser.add_argument("--trials", default=None,
                        help="the trial list to check (default: DATA_DIR/trials), e.g. the file a recipe copied")
    parser.add_argument("--max-shown", type=int, default=10, help="how many problems to list")
    args = parser.parse_args(argv)
    setup_logging()
    return run_stage(lambda: validate_data_dir(
        args.data_dir,
        need_feats=args.need_feats,
        need_vad=args.need_vad,
        need_segments=args.need_segments,
        check_files_exist=args.check_files_exist,
        check_trials=args.check_trials,
        enroll_dir=args.enroll_dir,
        max_shown=args.max_shown,
        trials=args.trials,
    ))


if __name__ == "__main__":
    sys.exit(main())

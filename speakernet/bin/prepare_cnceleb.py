"""Prepares CN-Celeb training (CN-Celeb1 dev + optional CN-Celeb2) and CN-Celeb1 evaluation data directories."""

from __future__ import annotations

import argparse
import sys

from speakernet.bin import run_stage
from speakernet.data.prepare.cnceleb import ENROLL_MODES, prepare_cnceleb
from speakernet.utils.logging import setup_logging


def build_parser() -> argparse.ArgumentParser:
    """Returns the command-line parser."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cnceleb1-root", required=True, help="CN-Celeb1 root (data/, dev/, eval/)")
    parser.add_argument("--cnceleb2-root", help="CN-Celeb2 root (data/, spk.lst), added to training")
    parser.add_argument("--enroll-mode", choices=ENROLL_MODES, default="both",
                        help="concat: official enrolment files (eval_enroll); average: enroll.map utterances "
                             "(eval_enroll_map); both")
    parser.add_argument("--min-train-duration", type=float, default=0.0,
                        help="seconds; > 0: merge shorter training utterances with their neighbours of the same "
                             "speaker and genre until they reach it (an ffmpeg pipe per merged utterance; "
                             "WeSpeaker's CN-Celeb recipe merges to 5)")
    parser.add_argument("--merged-audio-dir",
                        help="with --min-train-duration: write the merged utterances here as wav files (read many "
                             "times faster than the default ffmpeg pipes: for training from audio)")
    parser.add_argument("--out-dir", required=True, help="where the data directories are written")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Runs the preparation; returns the process exit status."""
    args = build_parser().parse_args(argv)
    setup_logging()
    return run_stage(lambda: prepare_cnceleb(args.cnceleb1_root, args.out_dir, args.cnceleb2_root,
                                                   args.enroll_mode, args.min_train_duration, args.merged_audio_dir))


if __name__ == "__main__":
    sys.exit(main())

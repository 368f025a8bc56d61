"""Stage: global mean embedding (``mean.vec``) and/or per-speaker means (``spk_xvector.ark/.scp``).

    python -m speakernet.bin.compute_mean --scp exp/embed/train/xvector.scp --out exp/embed/train/mean.vec
    python -m speakernet.bin.compute_mean --scp exp/embed/test/xvector.scp --utt2spk data/test/utt2spk \\
        --spk-out-dir exp/embed/test
"""

from __future__ import annotations

import argparse
import sys

from speakernet.backend.embeddings import compute_mean_files
from speakernet.bin import run_stage
from speakernet.utils.logging import setup_logging


def main(argv: list[str] | None = None) -> int:
    """Parses the command line and writes the means; returns the process exit code."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scp", required=True, help="utterance embeddings (xvector.scp)")
    parser.add_argument("--out", default=None, help="global mean as a Kaldi vector (mean.vec)")
    parser.add_argument("--utt2spk", default=None, help="utt2spk, for per-speaker means")
    parser.add_argument("--spk-out-dir", default=None, help="directory for spk_xvector.ark/.scp")
    args = parser.parse_args(argv)
    if args.out is None and args.spk_out_dir is None:
        parser.error("give --out and/or --spk-out-dir")
    if (args.utt2spk is None) != (args.spk_out_dir is None):
        parser.error("--utt2spk and --spk-out-dir go together")
    setup_logging()
    return run_stage(lambda: compute_mean_files(args.scp, args.out, args.utt2spk, args.spk_out_dir))


if __name__ == "__main__":
    sys.exit(main())

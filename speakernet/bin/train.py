"""Stage: train a speaker-embedding model.

Run it directly for one process, or under ``torchrun --nproc_per_node N`` for DDP:

    python -m speakernet.bin.train --conf conf/ecapa.yaml --data-dir data/train --exp-dir exp/ecapa
    python -m speakernet.bin.train ... training.epochs=20 optimizer_args.lr=0.05   # overrides
    python -m speakernet.bin.train ... --resume                                    # continue
"""

from __future__ import annotations

import argparse
import logging
import sys

from speakernet.utils.logging import setup_logging

logger = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> int:
    """Parses the command line and trains; returns the process exit code."""
    parser = argparse.ArgumentParser(prog="python -m speakernet.bin.train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--conf", required=True, help="recipe YAML config")
    parser.add_argument("--data-dir", required=True, help="training data dir with feats.scp, utt2spk, vad.scp")
    parser.add_argument("--exp-dir", required=True, help="output dir for config.yaml and checkpoints/")
    parser.add_argument(
        "--resume", nargs="?", const="latest", default=None,
        help="continue from a checkpoint: 'latest' (the default when given without a value), a file name in "
        "exp_dir/checkpoints, or a path",
    )
    parser.add_argument("--device", default=None, choices=["cpu", "cuda"], help="default: cuda when available")
    parser.add_argument("overrides", nargs="*", help="config overrides key.sub=value")
    args = parser.parse_args(argv)
    setup_logging()

    from speakernet.config import ConfigError, load_config
    from speakernet.training.trainer import train

    try:
        config = load_config(args.conf, args.overrides)
    except ConfigError as error:
        logger.error("%s", error)
        return 2
    try:
        train(config, args.data_dir, args.exp_dir, resume=args.resume, device=args.device)
    except (FileNotFoundError, ValueError) as error:  # DataDirError is a ValueError
        logger.error("%s", error)
        return 1
    except KeyboardInterrupt:
        logger.warning("interrupted; re-run the stage (or add --resume) to continue from the latest checkpoint "
                       "in %s/checkpoints", args.exp_dir)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())

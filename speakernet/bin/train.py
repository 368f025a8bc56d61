"""Stage: train a speaker-embedding model.

Run it directly for one process, or under ``torchrun --nproc_per_node N`` for DDP:

    python -m speakernet.bin.train --conf conf/ecapa.yaml --data-dir data/train --exp-dir exp/ecapa
    python -m speakernet.bin.train ... training.epochs=20 optimizer_args.lr=0.05   # overrides
    python -m speakernet.bin.train ... --resume                                    # continue
    python -m speakernet.bin.train ... --overwrite                                 # start again
    python -m speakernet.bin.train --conf conf/ecapa_lm.yaml ... --init exp/ecapa/checkpoints/avg10.pt

``--init`` starts a new training from another one's weights (large-margin fine-tuning, or a
second stage); it sets ``training.init_from``, so the exp dir's config.yaml records it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from speakernet.bin import run_stage
from speakernet.utils.logging import setup_logging


def main(argv: list[str] | None = None) -> int:
    """Parses the command line and trains; returns the process exit code."""
    parser = argparse.ArgumentParser(prog="python -m speakernet.bin.train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--conf", required=True, help="recipe YAML config")
    parser.add_argument("--data-dir", required=True, help="training data dir with feats.scp, utt2spk, vad.scp "
                        "(data.source=audio: wav.scp, utt2spk)")
    parser.add_argument("--exp-dir", required=True, help="output dir for config.yaml and checkpoints/")
    parser.add_argument(
        "--resume", nargs="?", const="latest", default=None,
        help="continue from a checkpoint: 'latest' (the default when given without a value), a file name in "
        "exp_dir/checkpoints, or a path",
    )
    parser.add_argument("--overwrite", action="store_true",
                        help="start a new training in an exp dir that holds one (its checkpoints are removed)")
    parser.add_argument("--init", default=None,
                        help="start from this checkpoint (a file, or an exp dir for its latest): training.init_from")
    parser.add_argument("--device", default=None, choices=["cpu", "cuda"], help="default: cuda when available")
    parser.add_argument("overrides", nargs="*", help="config overrides key.sub=value")
    args = parser.parse_args(argv)
    setup_logging()
    if args.resume is not None and "=" in args.resume and not os.path.exists(args.resume):
        # `--resume training.epochs=4`: argparse gave the override to --resume (its value is optional)
        args.overrides.insert(0, args.resume)
        args.resume = "latest"

    from speakernet.config import ConfigError, load_config
    from speakernet.training.trainer import train

    def run() -> None:
        overrides = list(args.overrides)
        if args.init is not None:
            # A YAML-quoted value: a path is a string whatever it looks like ("1e5", "yes").
            overrides.append("training.init_from=" + json.dumps(str(args.init)))
        config = load_config(args.conf, overrides)
        try:
            train(config, args.data_dir, args.exp_dir, resume=args.resume, device=args.device,
                  overwrite=args.overwrite)
        except ConfigError as error:  # a component that rejects its arguments when it is built
            source = args.conf + (" + command-line overrides" if overrides else "")
            raise ConfigError(f"{source}: {error}") from None

    # A bad config exits 2 (a usage error, before any work), a bad input 1, Ctrl-C 130.
    return run_stage(run, {ConfigError: 2}, interrupted=(
        "interrupted; re-run the stage (or add --resume) to continue from the latest checkpoint "
        f"in {args.exp_dir}/checkpoints"))


if __name__ == "__main__":
    sys.exit(main())

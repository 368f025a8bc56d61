"""Stage: extract embeddings of data dirs with a trained (or the untrained) model.

    python -m speakernet.bin.extract --exp-dir exp/ecapa --data-dir data/test --out-dir exp/ecapa/embeddings/latest/test
    python -m speakernet.bin.extract --exp-dir exp/ecapa --checkpoint init ...   # the untrained model
    python -m speakernet.bin.extract --exp-dir exp/ecapa --data-dir data/test data/dev --out-dir E/test E/dev

Several data dirs (with as many output dirs, in the same order) are embedded by one model load.
"""

from __future__ import annotations

import argparse
import sys

from speakernet.bin import run_stage
from speakernet.utils.logging import setup_logging


def main(argv: list[str] | None = None) -> int:
    """Parses the command line and extracts; returns the process exit code."""
    parser = argparse.ArgumentParser(prog="python -m speakernet.bin.extract", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exp-dir", required=True, help="training output dir (config.yaml, checkpoints/)")
    parser.add_argument("--data-dir", required=True, nargs="+", help="data dirs with feats.scp (and vad.scp)")
    parser.add_argument("--out-dir", required=True, nargs="+",
                        help="one per data dir: where its xvector.scp, spk_xvector.scp and mean.vec go")
    parser.add_argument("--checkpoint", default="latest",
                        help="latest | init (untrained) | avgN | file name in exp_dir/checkpoints | path")
    parser.add_argument("--mode", choices=["full", "multicrop"], default=None, help="default: the config's")
    parser.add_argument("--num-crops", type=int, default=None)
    parser.add_argument("--crop-frames", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--max-frames", type=int, default=None,
                        help="full mode: longer utterances are embedded in chunks of at most this many frames, "
                        "averaged (0: whole; default: the config's extract.max_frames)")
    parser.add_argument("--num-threads", type=int, default=0, help="torch threads (0: torch default)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    args = parser.parse_args(argv)
    if len(args.out_dir) != len(args.data_dir):
        parser.error(f"--out-dir needs one dir per --data-dir: got {len(args.data_dir)} data dirs and "
                     f"{len(args.out_dir)} output dirs")
    setup_logging()

    import torch

    from speakernet.backend.extract import extract_embeddings
    from speakernet.features.frontend import check_same_frontend
    from speakernet.training.checkpoint import load_model
    from speakernet.utils.fileio import ensure_writable_dir

    if args.num_threads > 0:
        torch.set_num_threads(args.num_threads)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")

    def extract() -> None:
        for data_dir in args.data_dir:  # every dir checked before the first is embedded
            check_same_frontend(args.exp_dir, data_dir)
        model, config = load_model(args.exp_dir, args.checkpoint)
        for out_dir in args.out_dir:
            ensure_writable_dir(out_dir)
        extract_cfg = config["extract"]
        for data_dir, out_dir in zip(args.data_dir, args.out_dir):
            extract_embeddings(
                model,
                data_dir,
                out_dir,
                mode=args.mode or extract_cfg["mode"],
                use_vad=config["data"]["use_vad"],
                num_crops=extract_cfg["num_crops"] if args.num_crops is None else args.num_crops,
                crop_frames=extract_cfg["crop_frames"] if args.crop_frames is None else args.crop_frames,
                batch_size=extract_cfg["batch_size"] if args.batch_size is None else args.batch_size,
                max_frames=extract_cfg["max_frames"] if args.max_frames is None else args.max_frames,
                device=device,
            )

    return run_stage(extract)


if __name__ == "__main__":
    sys.exit(main())

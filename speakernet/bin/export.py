"""Stage: export a trained model to ONNX and TorchScript, each checked against the PyTorch model.

    python -m speakernet.bin.export --exp-dir exp/ecapa --checkpoint avg3 --out-dir exp/ecapa/export
    speakernet compare --exp-dir exp/ecapa/export a.wav b.wav     # runs the ONNX graph (onnxruntime)

The export dir holds model.onnx, model.torchscript, frontend.json, export.json (with the measured
max abs difference from PyTorch per format), and the exp dir's mean.vec and threshold.
"""

from __future__ import annotations

import argparse
import sys

from speakernet.bin import run_stage
from speakernet.utils.logging import setup_logging


def main(argv: list[str] | None = None) -> int:
    """Parses the command line and exports; returns the process exit code."""
    parser = argparse.ArgumentParser(prog="python -m speakernet.bin.export", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exp-dir", required=True, help="training output dir (config.yaml, checkpoints/)")
    parser.add_argument("--checkpoint", default="latest",
                        help="latest | avgN | file name in exp_dir/checkpoints | path")
    parser.add_argument("--out-dir", required=True, help="export dir")
    parser.add_argument("--formats", nargs="+", default=["onnx", "torchscript"], choices=["onnx", "torchscript"])
    args = parser.parse_args(argv)
    setup_logging()

    from speakernet.export import export_model

    return run_stage(lambda: export_model(args.exp_dir, args.out_dir, args.checkpoint, args.formats))


if __name__ == "__main__":
    sys.exit(main())

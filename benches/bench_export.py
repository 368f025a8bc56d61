"""ONNX export of the reference models: parity with PyTorch, and onnxruntime vs PyTorch speed.

Per model it exports the eval-mode model to ONNX (dynamic batch and frames), then prints the export
time, the largest absolute embedding difference from PyTorch over three lengths, and the real-time
factor (seconds of compute per second of audio) of one 5 s utterance (500 frames of 80-dim fbank)
in PyTorch and in onnxruntime, one thread each, measured alternately in this one run, with their
ratio. Compare the ratio, not the absolute figures, on a shared machine.

Usage:
    python benches/bench_export.py
    python benches/bench_export.py --models ResNet34 --repeats 20
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_models import REFERENCE_SIZES  # noqa: E402

from speakernet.export import OnnxModel, export_onnx  # noqa: E402
from speakernet.models import build_model  # noqa: E402

FRAMES = 500  # 5 s at 10 ms


def _seconds_per_call(call, feats: torch.Tensor, repeats: int) -> float:
    call(feats)  # warm-up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call(feats)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["ECAPA_TDNN c512", "ResNet34", "CAMPPlus", "XVEC"],
                        choices=sorted(REFERENCE_SIZES))
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"{'model':<18} {'export s':>8} {'max|diff|':>10} {'RTF torch':>10} {'RTF onnxrt':>10} {'torch/ort':>9}")
    with tempfile.TemporaryDirectory() as work:
        for name in args.models:
            registered, model_args = REFERENCE_SIZES[name]
            model = build_model(registered, feat_dim=80, **model_args).eval()
            path = Path(work) / f"{registered}.onnx"
            started = time.perf_counter()
            export_onnx(model, path, 80)
            export_seconds = time.perf_counter() - started
            runtime = OnnxModel(path, threads=1)
            worst = 0.0
            with torch.inference_mode():
                for frames in (137, 500, 1517):
                    feats = torch.randn(2, frames, 80)
                    worst = max(worst, float((runtime(feats) - model(feats)).abs().max()))
                feats = torch.randn(1, FRAMES, 80)
                torch_s = onnx_s = 0.0
                for _ in range(2):  # alternate, so both see the same load
                    torch_s += _seconds_per_call(model, feats, args.repeats)
                    onnx_s += _seconds_per_call(runtime, feats, args.repeats)
            audio_s = 2 * FRAMES * 0.01
            print(f"{name:<18} {export_seconds:>8.1f} {worst:>10.2e} {torch_s / audio_s:>10.4f} "
                  f"{onnx_s / audio_s:>10.4f} {torch_s / onnx_s:>9.2f}")


if __name__ == "__main__":
    main()

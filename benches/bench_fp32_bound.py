"""How fast a model can run in exact float32 on one core: its multiply-adds against the core's GEMM speed.

Counts the multiply-accumulates per frame of a model dir's network (every convolution and linear
layer, by forward hooks), measures one thread's float32 matrix-product speed on a large GEMM, and
times the network itself on ``--seconds`` of features, each figure the best of ``--rounds``. The
lower bound of the real-time factor is the multiply-adds of a second of audio at that GEMM speed:
no float32 implementation of the same network on this core does better. With ``--reference-rtf``
(e.g. SpeechBrain's, from ``benches/bench_speechbrain.py``) it also prints the largest speed-up over
it that exact float32 could give.

    python benches/bench_fp32_bound.py --model-dir exp/sb_ecapa --reference-rtf 0.1085
"""

from __future__ import annotations

import argparse
import math
import time

import torch

import speakernet

FRAMES_PER_SECOND = 100  # 10 ms frame shift


def _best(function, rounds: int) -> float:
    function()  # warm-up (allocations, kernel choice)
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best


def count_macs(model: torch.nn.Module, feat_dim: int, frames: int = 1000) -> tuple[float, torch.nn.Module, tuple]:
    """Multiply-accumulates per input frame of ``model`` (convolutions and linear layers), and its layer with
    the most of them with that layer's input shape."""
    total, largest = 0, (0, None, ())

    def count(module: torch.nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        nonlocal total, largest
        if isinstance(module, torch.nn.Conv1d | torch.nn.Conv2d):
            macs = output.numel() * (module.in_channels // module.groups) * math.prod(module.kernel_size)
        else:
            macs = output.numel() * module.in_features
        total += macs
        if macs > largest[0]:
            largest = (macs, module, tuple(inputs[0].shape))

    hooks = [m.register_forward_hook(count) for m in model.modules()
             if isinstance(m, torch.nn.Conv1d | torch.nn.Conv2d | torch.nn.Linear)]
    try:
        with torch.inference_mode():
            model(torch.randn(1, frames, feat_dim))
    finally:
        for hook in hooks:
            hook.remove()
    return total / frames, largest[1], largest[2], largest[0]


def frames_of(shape: tuple) -> int:
    """Frames of a layer input ``[batch, channels, frames]`` (or ``[..., frames]``)."""
    return shape[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", required=True, help="an exp dir or model dir (import_model)")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the timed input")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--reference-rtf", type=float, default=None, help="a real-time factor to compare with")
    args = parser.parse_args()
    torch.set_num_threads(1)
    embedder = speakernet.load(args.model_dir)
    model, feat_dim = embedder.model, embedder.config["data"]["feat_dim"]
    macs, layer, shape, layer_macs = count_macs(model, feat_dim)
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1000)
    gemm = 1024 * 1024 * 1000 / _best(lambda: a @ b, args.rounds)
    feats = torch.randn(1, int(args.seconds * FRAMES_PER_SECOND), feat_dim)
    layer_input = torch.randn(shape)
    with torch.inference_mode():
        network = _best(lambda: model(feats), args.rounds) / args.seconds
        layer_speed = layer_macs / _best(lambda: layer(layer_input), args.rounds)
    bound = macs * FRAMES_PER_SECOND / gemm
    print(f"{type(model).__name__}: {macs / 1e6:.2f} M multiply-adds per frame, "
          f"{macs * FRAMES_PER_SECOND / 1e9:.2f} G per second of audio")
    print(f"one thread's float32 GEMM (1024 x 1024 by 1024 x 1000): {gemm / 1e9:.1f} G multiply-adds/s")
    print(f"network on {args.seconds:g} s of features: real-time factor {network:.4f} "
          f"({bound / network:.0%} of the GEMM speed); float32 bound {bound:.4f}")
    print(f"its largest layer ({layer}, input {list(shape)}, {layer_macs / frames_of(shape) / macs:.0%} of the "
          f"multiply-adds) alone: {layer_speed / 1e9:.1f} G/s, {layer_speed / gemm:.0%} of the GEMM speed")
    if args.reference_rtf:
        print(f"against real-time factor {args.reference_rtf:g}: the network alone is "
              f"{args.reference_rtf / network:.2f}x, the float32 bound {args.reference_rtf / bound:.2f}x")


if __name__ == "__main__":
    main()

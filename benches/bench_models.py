"""Speed of the ECAPA-TDNN models on this machine's CPU.

Prints:
- the inference real-time factor (forward time / audio duration, eval mode, one utterance)
  of ECAPA-TDNN c512 and c1024 on 5 s of 80-dim features (500 frames) with one thread
  (comparable to WeSpeaker's ONNX runtime figures: c512 RTF 0.018 on a Xeon 8160);
- the time of one training step (forward, AAM-softmax loss, backward, SGD update) of a small
  ECAPA-TDNN at batch 64 x 200 frames, with ``--train-threads`` threads.

Usage: python benches/bench_models.py [--repeats 10] [--train-threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

from speakernet.losses import build_head
from speakernet.models import build_model

FRAME_SHIFT_S = 0.01


def time_call(function, repeats: int, warmup: int = 2) -> list[float]:
    """Wall-clock seconds of ``repeats`` calls of ``function`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return times


def bench_inference(channels: int, seconds: float, repeats: int) -> None:
    torch.manual_seed(0)
    model = build_model("ECAPA_TDNN", channels=channels).eval()
    frames = round(seconds / FRAME_SHIFT_S)
    feats = torch.randn(1, frames, 80)

    def forward() -> None:
        with torch.inference_mode():
            model(feats)

    times = time_call(forward, repeats)
    median = statistics.median(times)
    parameters = sum(parameter.numel() for parameter in model.parameters()) / 1e6
    print(
        f"ECAPA_TDNN c{channels} ({parameters:.2f} M params) inference, {seconds:g} s ({frames} frames), "
        f"1 thread: median {median * 1000:.1f} ms, RTF {median / seconds:.4f} "
        f"(min {min(times) / seconds:.4f}, max {max(times) / seconds:.4f}, {repeats} runs)"
    )


def bench_training(channels: int, embed_dim: int, num_classes: int, batch: int, frames: int, repeats: int) -> None:
    torch.manual_seed(0)
    model = build_model("ECAPA_TDNN", channels=channels, embed_dim=embed_dim, aggregation_channels=None).train()
    head = build_head("AAMSoftmax", embed_dim=embed_dim, num_classes=num_classes, margin=0.2).train()
    optimizer = torch.optim.SGD(
        list(model.parameters()) + list(head.parameters()), lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4
    )
    feats = torch.randn(batch, frames, 80)
    labels = torch.randint(0, num_classes, (batch,))

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss, _ = head(model(feats), labels)
        loss.backward()
        optimizer.step()

    times = time_call(step, repeats)
    median = statistics.median(times)
    audio_seconds = batch * frames * FRAME_SHIFT_S
    parameters = sum(parameter.numel() for parameter in model.parameters()) / 1e6
    print(
        f"ECAPA_TDNN c{channels} (aggregation 3C, embed {embed_dim}, {parameters:.2f} M params) training step, "
        f"batch {batch} x {frames} frames, {num_classes} classes, {torch.get_num_threads()} threads: "
        f"median {median * 1000:.0f} ms/step ({audio_seconds / median:.0f} s of audio per s, {repeats} runs)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=10, help="timed runs per measurement")
    parser.add_argument("--seconds", type=float, default=5.0, help="utterance length for the inference RTF")
    parser.add_argument("--train-threads", type=int, default=torch.get_num_threads(), help="threads for training")
    parser.add_argument("--tiny-channels", type=int, default=64, help="channels of the small training model")
    parser.add_argument("--tiny-embed-dim", type=int, default=128, help="embedding size of the small model")
    parser.add_argument("--num-classes", type=int, default=200, help="speakers in the AAM-softmax head")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--frames", type=int, default=200)
    args = parser.parse_args(argv)

    print(f"torch {torch.__version__}")
    torch.set_num_threads(1)
    for channels in (512, 1024):
        bench_inference(channels, args.seconds, args.repeats)
    torch.set_num_threads(args.train_threads)
    bench_training(args.tiny_channels, args.tiny_embed_dim, args.num_classes, args.batch, args.frames, args.repeats)
    return 0


if __name__ == "__main__":
    sys.exit(main())

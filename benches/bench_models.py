"""Speed and memory of every registered model at its reference size, on this machine's CPU.

Per model (each in a fresh process, so that its peak memory is its own) it prints:

- parameters without the classifier (and after ``deploy()`` for RepVGG);
- training throughput: 200-frame crops per second of a full step (forward, AAM-softmax loss over
  ``--classes`` speakers, backward, SGD update) at batch 64 with ``--train-threads`` threads;
- inference real-time factor on 5 s of 80-dim features (500 frames), eval mode, one thread
  (the deployed form for RepVGG), beside WeSpeaker's ONNX-runtime RTFs where REFERENCE.md gives
  one (one thread of a Xeon 8160, 5 s chunks: ECAPA c512 0.018, CAM++ 0.023, ResNet34 0.061,
  ResNet293 0.364);
- peak resident memory of the process.

Usage:
    python benches/bench_models.py                          # every model (long: the big ResNets)
    python benches/bench_models.py --models ResNet34 CAMPPlus --train-steps 3
    python benches/bench_models.py --conf egs/pooled/v1/conf/*.yaml   # the models of recipe confs

On a shared machine compare models within one run (the same load), not across runs.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch

FRAME_SHIFT_S = 0.01

# name -> (registered model, model_args): the reference sizes of REFERENCE.md and the voxceleb confs.
REFERENCE_SIZES: dict[str, tuple[str, dict[str, Any]]] = {
    "ECAPA_TDNN c512": ("ECAPA_TDNN", {"channels": 512}),
    "ECAPA_TDNN c1024": ("ECAPA_TDNN", {"channels": 1024}),
    "ResNet34": ("ResNet34", {}),
    "ResNet221": ("ResNet221", {}),
    "ResNet293": ("ResNet293", {}),
    "CAMPPlus": ("CAMPPlus", {}),
    "RepVGG_TINY_A0": ("RepVGG_TINY_A0", {}),
    "RepVGG_B1": ("RepVGG_B1", {}),
    "XVEC": ("XVEC", {}),
    "ResCNN": ("ResCNN", {}),
}
WESPEAKER_ONNX_RTF = {"ECAPA_TDNN c512": 0.018, "CAMPPlus": 0.023, "ResNet34": 0.061, "ResNet293": 0.364}


def time_call(function: Callable[[], None], repeats: int, warmup: int = 1) -> list[float]:
    """Wall-clock seconds of ``repeats`` calls of ``function`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return times


def measure(model_name: str, model_args: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """Measures one model in this process (see the module docstring)."""
    from speakernet.losses import build_head
    from speakernet.models import build_model

    torch.manual_seed(0)
    model = build_model(model_name, feat_dim=80, **model_args)
    result: dict[str, Any] = {"params_m": sum(p.numel() for p in model.parameters()) / 1e6}

    if args.train_steps > 0:
        torch.set_num_threads(args.train_threads)
        embed_dim = model(torch.zeros(2, 200, 80)).shape[1]
        head = build_head("AAMSoftmax", embed_dim=embed_dim, num_classes=args.classes, margin=0.2)
        model.train()
        optimizer = torch.optim.SGD(list(model.parameters()) + list(head.parameters()), lr=0.01, momentum=0.9,
                                    nesterov=True, weight_decay=1e-4)
        feats = torch.randn(args.batch, 200, 80)
        labels = torch.randint(0, args.classes, (args.batch,))

        def step() -> None:
            optimizer.zero_grad(set_to_none=True)
            loss, _ = head(model(feats), labels)
            loss.backward()
            optimizer.step()

        times = time_call(step, args.train_steps)
        result["train_crops_per_s"] = args.batch / statistics.median(times)
        result["train_step_s"] = statistics.median(times)
        del optimizer, head

    torch.set_num_threads(1)
    model.eval()
    if hasattr(model, "deploy"):
        model.deploy()
        result["deployed_params_m"] = sum(p.numel() for p in model.parameters()) / 1e6
    frames = round(args.seconds / FRAME_SHIFT_S)
    utterance = torch.randn(1, frames, 80)

    def forward() -> None:
        with torch.inference_mode():
            model(utterance)

    times = time_call(forward, args.repeats, warmup=2)
    result["rtf"] = statistics.median(times) / args.seconds
    result["peak_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return result


def _models(args: argparse.Namespace) -> dict[str, tuple[str, dict[str, Any]]]:
    chosen = dict(REFERENCE_SIZES)
    if args.models:
        unknown = [name for name in args.models if name not in chosen]
        if unknown:
            raise SystemExit(f"unknown model(s) {', '.join(unknown)}; choose from: {', '.join(chosen)}")
        chosen = {name: chosen[name] for name in args.models}
    if args.conf:
        from speakernet.config import load_config

        if not args.models:
            chosen = {}
        for path in args.conf:
            config = load_config(path)
            chosen[Path(path).stem] = (config["model"], config["model_args"])
    return chosen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+",
                        help=f"reference sizes to run (default all: {', '.join(REFERENCE_SIZES)})")
    parser.add_argument("--conf", nargs="+", help="also (or, without --models, only) the models of these confs")
    parser.add_argument("--train-steps", type=int, default=2, help="timed training steps after one warm-up (0: none)")
    parser.add_argument("--train-threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--classes", type=int, default=1000, help="speakers of the AAM-softmax head")
    parser.add_argument("--seconds", type=float, default=5.0, help="utterance length of the inference RTF")
    parser.add_argument("--repeats", type=int, default=10, help="timed inference runs")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure one model, print JSON
    args = parser.parse_args(argv)

    if args.one:
        model_name, model_args = json.loads(args.one)
        print(json.dumps(measure(model_name, model_args, args)))
        return 0

    print(f"torch {torch.__version__}; training: batch {args.batch} x 200 frames, {args.train_threads} threads, "
          f"{args.classes}-class AAM head; inference: {args.seconds:g} s, 1 thread")
    print(f"{'model':<22} {'params M':>9} {'deployed':>9} {'train crops/s':>14} {'RTF':>8} {'WeSpeaker':>10} "
          f"{'peak MiB':>9}")
    passthrough = [f"--train-steps={args.train_steps}", f"--train-threads={args.train_threads}",
                   f"--batch={args.batch}", f"--classes={args.classes}", f"--seconds={args.seconds}",
                   f"--repeats={args.repeats}"]
    for label, (model_name, model_args) in _models(args).items():
        command = [sys.executable, __file__, "--one", json.dumps([model_name, model_args]), *passthrough]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            if done.returncode < 0:
                why = f"killed by signal {-done.returncode}" + (" (out of memory? try a smaller --batch)"
                                                                 if done.returncode == -9 else "")
            else:
                why = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"
            print(f"{label:<22} failed: {why}", flush=True)
            continue
        row = json.loads(done.stdout.strip().splitlines()[-1])
        deployed = f"{row['deployed_params_m']:.3f}" if "deployed_params_m" in row else "-"
        train = f"{row['train_crops_per_s']:.1f}" if "train_crops_per_s" in row else "-"
        reference = f"{WESPEAKER_ONNX_RTF[label]:.3f}" if label in WESPEAKER_ONNX_RTF else "-"
        print(f"{label:<22} {row['params_m']:>9.3f} {deployed:>9} {train:>14} {row['rtf']:>8.4f} {reference:>10} "
              f"{row['peak_mib']:>9.0f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

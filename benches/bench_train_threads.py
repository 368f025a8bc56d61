"""Training speed against torch's thread count: which ``training.num_threads`` is fastest here.

For each recipe conf it builds the trainer on a data dir's features (its model, head, optimiser,
data loader with the conf's ``data.num_workers``) and times full training steps (loading the
crops, forward, loss, backward, clipping, update) with each candidate thread count. The
candidates run interleaved in one process, A B then B A and so on, so a load change on a shared
machine hits all of them alike; compare the ratios, not the absolute figures of two runs.

Usage (a small corpus and its features first):
    python -m speakernet.bin.make_synthetic_corpus --out-dir /tmp/c --num-train-speakers 16 \
        --num-test-speakers 2 --utts-per-speaker 8 --min-duration 2 --max-duration 4
    python -m speakernet.bin.make_features --data-dir /tmp/c/data/train --feat-dir /tmp/c/fbank --nj 2
    python benches/bench_train_threads.py --data-dir /tmp/c/data/train \
        --conf egs/mini/v1/conf/ecapa_mini.yaml egs/pooled/v1/conf/ecapa_small.yaml --threads 1 2

Measured on the 2-core development machine (data.num_workers 0, 40 steps a block, 3 rounds,
medians): with nothing else running (load average 1.3-1.9, the bench itself), 2 threads ran
ecapa_mini.yaml at 1.71x and ecapa_small.yaml at 1.59x the steps/s of 1 thread; beside other
agents' test suites and trainings (load 2.3-4.8), 2 threads ran at 0.92x and 0.21x (mini) and
0.53x (small): oversubscribed cores cost 2 threads far more than an idle core costs 1.

Prints steps/s per conf, thread count and round (with the 1-minute load average after it: this
process counts about as many as its threads), the median, and each median's ratio to the first
candidate's.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from speakernet.config import load_config
from speakernet.data.dataset import collate_crops
from speakernet.training.trainer import Trainer


def timed_steps(trainer: Trainer, threads: int, steps: int, warmup: int, seed: int) -> float:
    """Steps per second of ``steps`` training steps with ``threads`` torch threads, after ``warmup`` steps."""
    torch.set_num_threads(threads)
    rng = np.random.default_rng(seed)
    batch_size = trainer.config["data"]["batch_size"]
    batches = [[(int(index), int(rng.integers(2**31))) for index in rng.integers(0, len(trainer.dataset), batch_size)]
               for _ in range(warmup + steps)]
    loader = torch.utils.data.DataLoader(trainer.dataset, batch_sampler=batches, collate_fn=collate_crops,
                                         num_workers=trainer.config["data"]["num_workers"])
    module = trainer.module.train()
    started = 0.0
    for done, (feats, labels) in enumerate(loader):
        if done == warmup:
            started = time.perf_counter()
        loss, _ = module(feats, labels)
        trainer.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(module.parameters(), trainer.config["training"]["grad_clip"] or float("inf"))
        trainer.optimizer.step()
    return steps / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", required=True, help="data dir with feats.scp, vad.scp and utt2spk")
    parser.add_argument("--conf", nargs="+", required=True, help="recipe training confs")
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2], help="candidate torch thread counts")
    parser.add_argument("--steps", type=int, default=40, help="timed steps per candidate and round")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps before each timing")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of all candidates (order reversed each round)")
    parser.add_argument("overrides", nargs="*", help="config overrides key.sub=value, applied to every conf")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    print(f"# {os.cpu_count()} CPUs; load average at start {os.getloadavg()[0]:.2f}")
    rows = []
    for conf in args.conf:
        config = load_config(conf, args.overrides)
        with tempfile.TemporaryDirectory() as exp_dir:
            trainer = Trainer(config, args.data_dir, exp_dir, device="cpu")
            speeds: dict[int, list[float]] = {threads: [] for threads in args.threads}
            for round_number in range(args.rounds):
                order = args.threads if round_number % 2 == 0 else args.threads[::-1]
                for threads in order:
                    speed = timed_steps(trainer, threads, args.steps, args.warmup, seed=round_number)
                    speeds[threads].append(speed)
                    print(f"{Path(conf).name:24s} threads {threads}  round {round_number + 1}: {speed:.3f} steps/s "
                          f"(load average {os.getloadavg()[0]:.2f})", flush=True)
        base = statistics.median(speeds[args.threads[0]])
        for threads in args.threads:
            median = statistics.median(speeds[threads])
            rows.append((Path(conf).name, config["data"]["num_workers"], threads, median, median / base,
                         " ".join(f"{speed:.3f}" for speed in speeds[threads])))
    print(f"# load average at end {os.getloadavg()[0]:.2f}")
    print(f"\n{'conf':24s} {'workers':>7s} {'threads':>7s} {'steps/s':>8s} {'ratio':>6s}  rounds")
    for name, workers, threads, median, ratio, rounds in rows:
        print(f"{name:24s} {workers:7d} {threads:7d} {median:8.3f} {ratio:6.2f}  {rounds}")


if __name__ == "__main__":
    main()

"""Speed and memory of cosine scoring, score-file I/O and metrics on a million random trials.

Run: ``python benches/bench_scoring.py [--trials 1000000 --utts 5000 --dim 192]``. Prints the
throughput of each step in trials/s and the process's peak resident memory.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from speakernet.backend.metrics import compute_metrics
from speakernet.backend.score_files import read_scores, trial_labels, write_scores
from speakernet.backend.scoring import cosine_score_trials


def _peak_rss_mib() -> float:
    # ru_maxrss is in KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=1_000_000, help="number of trials")
    parser.add_argument("--utts", type=int, default=5000, help="number of utterances (embeddings)")
    parser.add_argument("--speakers", type=int, default=250, help="number of speakers")
    parser.add_argument("--dim", type=int, default=192, help="embedding dimension")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    keys = [f"spk{index % args.speakers:04d}-utt{index:06d}" for index in range(args.utts)]
    speaker_of = np.arange(args.utts) % args.speakers
    centres = rng.standard_normal((args.speakers, args.dim)).astype(np.float32)
    matrix = centres[speaker_of] + 1.5 * rng.standard_normal((args.utts, args.dim)).astype(np.float32)
    mean = matrix.mean(axis=0)
    enroll_index = rng.integers(0, args.utts, args.trials)
    test_index = rng.integers(0, args.utts, args.trials)
    trials = [
        (keys[e], keys[t], "target" if speaker_of[e] == speaker_of[t] else "nontarget")
        for e, t in zip(enroll_index.tolist(), test_index.tolist())
    ]
    print(f"{args.trials} trials over {args.utts} utterances, {args.dim}-d; "
          f"peak RSS after setup {_peak_rss_mib():.0f} MiB")

    def report(step: str, seconds: float) -> None:
        print(f"{step:<28s} {seconds:8.3f} s  {args.trials / seconds:14,.0f} trials/s  "
              f"peak RSS {_peak_rss_mib():.0f} MiB")

    start = time.perf_counter()
    scores = cosine_score_trials(trials, (keys, matrix), (keys, matrix), mean)
    report("cosine_score_trials", time.perf_counter() - start)

    labels = trial_labels(trials)
    start = time.perf_counter()
    metrics = compute_metrics(scores, labels)
    report("compute_metrics", time.perf_counter() - start)
    print(f"  EER {metrics['eer'] * 100:.3f}%  minDCF@0.01 {metrics['min_dcf'][0.01]:.4f}  "
          f"minDCF@0.05 {metrics['min_dcf'][0.05]:.4f}")

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "scores"
        start = time.perf_counter()
        write_scores(path, trials, scores)
        report("write_scores", time.perf_counter() - start)
        start = time.perf_counter()
        read_scores(path)
        report("read_scores (4 columns)", time.perf_counter() - start)
    return 0


if __name__ == "__main__":
    sys.exit(main())

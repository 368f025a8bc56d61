"""Speed and memory of the back-ends at VoxCeleb1-H scale, on synthetic embeddings.

Run: ``python benches/bench_backend.py [--utts 140000 --trials 550000 --cohort-speakers 6000 --dim 256]``.

Each part runs in a fresh process, so its peak resident memory is its own:

- ``asnorm``: the AS-norm stage end to end, as a process (``python -m speakernet.bin.score_norm``:
  interpreter start, imports, read the embedding, cohort and trial files, top-300 statistics of
  every utterance, write the score file with side columns), then in-process (``as_norm_files``)
  and its computation alone;
- ``metrics``: EER + minDCF + actDCF + Cllr of 10 M scores;
- ``plda``: PLDA scoring of the trials (LDA to 200 dims) with a model trained on the cohort.

Targets on 2 CPU cores: AS-norm under 10 s and 2 GB, metrics under 5 s, PLDA scoring under 10 s.
Each part runs ``--repeat`` times (3): on a shared machine the fastest run is the one least
disturbed by other load.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def _make_inputs(work: Path, args: argparse.Namespace) -> None:
    from speakernet.backend.embeddings import write_embeddings, write_vector
    from speakernet.data.kaldi_dir import write_scp, write_trials

    rng = np.random.default_rng(args.seed)
    speakers = args.utts // 20
    centres = rng.standard_normal((speakers, args.dim), dtype=np.float32)
    speaker_of = np.arange(args.utts) % speakers
    keys = [f"id{s:05d}-{u:06d}" for u, s in enumerate(speaker_of)]
    matrix = centres[speaker_of] + 1.5 * rng.standard_normal((args.utts, args.dim), dtype=np.float32)
    write_embeddings(work / "test.ark", work / "test.scp", keys, matrix)
    cohort_utts = args.cohort_speakers * 4
    cohort_centres = rng.standard_normal((args.cohort_speakers, args.dim), dtype=np.float32)
    cohort_speaker = np.arange(cohort_utts) // 4
    cohort_keys = [f"c{s:05d}-{u:06d}" for u, s in enumerate(cohort_speaker)]
    cohort = cohort_centres[cohort_speaker] + 1.5 * rng.standard_normal((cohort_utts, args.dim), dtype=np.float32)
    write_embeddings(work / "cohort.ark", work / "cohort.scp", cohort_keys, cohort)
    write_scp(work / "cohort_utt2spk", {key: key.split("-")[0] for key in cohort_keys})
    write_vector(work / "mean.vec", cohort.mean(axis=0))
    enroll = rng.integers(0, args.utts, args.trials)
    same = rng.random(args.trials) < 0.5
    test = np.where(same, (enroll + speakers * rng.integers(1, 19, args.trials)) % args.utts,
                    rng.integers(0, args.utts, args.trials))
    write_trials(work / "trials", [
        (keys[e], keys[t], "target" if speaker_of[e] == speaker_of[t] else "nontarget")
        for e, t in zip(enroll.tolist(), test.tolist()) if e != t
    ])
    (work / "data").mkdir()
    write_scp(work / "data" / "utt2num_frames", {key: str(300 + i % 900) for i, key in enumerate(keys)})


def _part_asnorm(work: Path, args: argparse.Namespace) -> str:
    from speakernet.backend.normalization import as_norm_files, as_norm_trials, build_cohort, read_durations
    from speakernet.backend.embeddings import load_embeddings, read_vector
    from speakernet.backend.scoring import load_trial_tables
    from speakernet.data.kaldi_dir import read_utt2spk

    start = time.perf_counter()
    as_norm_files(work / "trials", work / "test.scp", work / "test.scp", work / "cohort.scp", work / "asnorm.score",
                  mean_vec=work / "mean.vec", cohort_utt2spk=work / "cohort_utt2spk", top_n=300,
                  enroll_data=work / "data", test_data=work / "data")
    stage = time.perf_counter() - start
    # The stage as users run it: a fresh interpreter, its imports, the same files.
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "speakernet.bin.score_norm", "--trials", str(work / "trials"),
                    "--enroll-scp", str(work / "test.scp"), "--test-scp", str(work / "test.scp"),
                    "--cohort-scp", str(work / "cohort.scp"), "--cohort-utt2spk", str(work / "cohort_utt2spk"),
                    "--mean-vec", str(work / "mean.vec"), "--top-n", "300", "--enroll-data", str(work / "data"),
                    "--test-data", str(work / "data"), "--out", str(work / "asnorm_cli.score")],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    process = time.perf_counter() - start
    process_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0
    if (work / "asnorm_cli.score").read_bytes() != (work / "asnorm.score").read_bytes():
        raise SystemExit("bench_backend: the score_norm process wrote other scores than as_norm_files")
    # The same computation without the file I/O: cohort building, statistics, normalisation.
    trials, enroll, test = load_trial_tables(work / "trials", work / "test.scp", work / "test.scp")
    mean = read_vector(work / "mean.vec")
    cohort_keys, cohort_matrix = load_embeddings(work / "cohort.scp")
    utt2spk = read_utt2spk(work / "cohort_utt2spk")
    durations = read_durations(work / "data")
    start = time.perf_counter()
    cohort = build_cohort(cohort_keys, cohort_matrix, mean, utt2spk)
    as_norm_trials(trials, enroll, test, cohort, mean, 300, durations, durations)
    compute = time.perf_counter() - start
    # The top-300 selection against a plain full selection, on the same cohort product, in this run.
    from speakernet.backend.topn import SELECTION_THREADS, top_values

    unit = np.asarray(load_embeddings(work / "test.scp")[1][:8192], dtype=np.float32)
    unit /= np.linalg.norm(unit, axis=1, keepdims=True)
    scores = unit @ cohort.unit.astype(np.float32).T
    kth = scores.shape[1] - 300
    timings = {}
    with ThreadPoolExecutor(SELECTION_THREADS) as pool:  # as cohort_statistics runs it
        halves = np.array_split(scores, SELECTION_THREADS)
        for name, select in (("np.partition", lambda: list(pool.map(lambda part: np.partition(part, kth, axis=1),
                                                                     halves))),
                             ("top_values", lambda: top_values(scores, 300, pool))):
            select()
            begin = time.perf_counter()
            for _ in range(3):
                select()
            timings[name] = (time.perf_counter() - begin) / 3
    ratio = timings["np.partition"] / timings["top_values"]
    return (f"AS-norm (top 300 of {args.cohort_speakers} speakers): stage process {process:6.2f} s "
            f"(peak RSS {process_rss:.0f} MiB), in-process "
            f"with file I/O {stage:6.2f} s, "
            f"computation alone {compute:6.2f} s; top-300 selection {ratio:.2f}x faster than a full np.partition")


def _part_metrics(work: Path, args: argparse.Namespace) -> str:
    from speakernet.backend.metrics import compute_metrics

    rng = np.random.default_rng(args.seed)
    labels = rng.random(args.metric_scores) < 0.5
    scores = rng.normal(size=args.metric_scores) + 2.0 * labels
    start = time.perf_counter()
    compute_metrics(scores, labels, (0.01, 0.05, 0.001))
    return f"EER + minDCF + actDCF + Cllr of {args.metric_scores:,} scores  {time.perf_counter() - start:7.2f} s"


def _part_plda(work: Path, args: argparse.Namespace) -> str:
    from speakernet.backend.plda import score_plda_files, train_plda_files

    train_plda_files(work / "cohort.scp", work / "cohort_utt2spk", work / "plda.npz", lda_dim=200)
    start = time.perf_counter()
    score_plda_files(work / "trials", work / "test.scp", work / "test.scp", work / "plda.npz", work / "plda.score")
    return f"PLDA scoring (LDA 200) end to end                {time.perf_counter() - start:7.2f} s"


PARTS = {"asnorm": _part_asnorm, "metrics": _part_metrics, "plda": _part_plda}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--utts", type=int, default=140_000, help="evaluation utterances")
    parser.add_argument("--trials", type=int, default=550_000, help="trials")
    parser.add_argument("--cohort-speakers", type=int, default=6000, help="cohort speakers (4 utterances each)")
    parser.add_argument("--dim", type=int, default=256, help="embedding dimension")
    parser.add_argument("--metric-scores", type=int, default=10_000_000, help="scores for the metrics part")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs of each part (a shared machine's load varies: take the fastest)")
    parser.add_argument("--parts", nargs="+", default=list(PARTS), choices=list(PARTS))
    parser.add_argument("--work", default=None, help=argparse.SUPPRESS)  # set for the child processes
    parser.add_argument("--part", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.part is not None:  # a child: run one part and print its line
        before = _peak_rss_mib()
        line = PARTS[args.part](Path(args.work), args)
        print(f"{line}  peak RSS {_peak_rss_mib():6.0f} MiB (interpreter and imports {before:.0f} MiB)", flush=True)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        _make_inputs(Path(tmp), args)
        print(f"{args.utts:,} utterances x {args.dim}-d, {args.trials:,} trials, cohort {args.cohort_speakers:,} "
              f"speakers; inputs written in {time.perf_counter() - start:.1f} s", flush=True)
        for part in args.parts:
            child = [sys.executable, __file__, "--part", part, "--work", tmp] + [
                f"--{name.replace('_', '-')}={value}" for name, value in vars(args).items()
                if name not in ("parts", "work", "part", "repeat")
            ]
            for _ in range(args.repeat):
                subprocess.run(child, check=True, stderr=subprocess.DEVNULL)
    return 0


if __name__ == "__main__":
    sys.exit(main())

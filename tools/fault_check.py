"""Crash-safety check: kill the mini recipe at chosen points, re-run it, compare with a clean run.

    python tools/fault_check.py                  # the default mini corpus and conf (minutes)
    python tools/fault_check.py --tiny           # a tiny corpus and model (the test suite's)
    python tools/fault_check.py --points train.step@3 --nproc 2

First the recipe runs uninterrupted (stages 0-8). Then, in the same directory (so that paths
inside the outputs are the same), it runs again from nothing, killed with SIGKILL of its whole
process group at each point in turn (``SPEAKERNET_FAULT``, see ``speakernet/utils/faults.py``):
inside a feature archive, mid-epoch, inside a checkpoint save, during extraction, while a score
file is written. Each re-run continues where the last one died; a last one runs to the end.
Every output file must then equal the clean run's byte for byte, checkpoints included; only
files that record when or how fast something ran (logs, the training metrics' clock columns,
lock files with a pid) are left out, and JSON records are compared without their clock fields
(``wall_seconds``, ``seconds``, ``utts_per_s``, ``data_wait``); the summary says which. Exit status 0 when all
match.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUN = ROOT / "egs" / "mini" / "v1" / "run.sh"

# The order of a recipe run: each point is reached by the re-run after the previous kill.
DEFAULT_POINTS = ("features.utt@2", "train.step@2", "checkpoint.save", "extract.batch@2", "scores.block")
TINY_CORPUS = ("--num-train-speakers 6 --num-test-speakers 3 --utts-per-speaker 3 --test-utts-per-speaker 2 "
               "--min-duration 1.0 --max-duration 1.5 --trials-per-utt 1")
# (one torch thread: the test suite runs this next to other tests, and threads that fight cost CPU)
TINY_TRAINING = ("training.epochs=2 data.batch_size=6 data.min_frames=40 data.crop_frames=60 "
                 "model_args.channels=8 model_args.embed_dim=8 training.log_interval=1 training.num_threads=1")
# Files that hold wall-clock times, rates or pids, not results.
VOLATILE_DIRS = ("log",)
VOLATILE_NAMES = (".lock",)
VOLATILE_SUFFIXES = (".log",)
# JSON fields that measure time, not results (the corpus record, the training metrics).
CLOCK_KEYS = frozenset({"wall_seconds", "seconds", "utts_per_s", "data_wait"})


def _recipe(exp_root: Path, args: argparse.Namespace, fault: str | None) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHON": sys.executable}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env.pop("SPEAKERNET_FAULT", None)
    if fault:
        env["SPEAKERNET_FAULT"] = fault
    command = [str(RUN), "--corpus", str(exp_root / "corpus"), "--exp", str(exp_root / "exp"), "--stop-stage", "8",
               "--nproc", str(args.nproc), "--backends", args.backends]
    if args.corpus_opts:
        command += ["--corpus-opts", args.corpus_opts]
    if args.train_overrides:
        command += ["--train-overrides", args.train_overrides]
    # A session of its own, whose group (the shell's pid) the fault kills: the recipe and every
    # stage process, torchrun's workers included, never this script.
    command = ["bash", "-c", 'export SPEAKERNET_FAULT_PGID=$$; exec "$@"', "fault_check", *command]
    return subprocess.run(command, env=env, capture_output=True, text=True, start_new_session=True,
                          timeout=args.timeout)


def _volatile(relative: Path) -> bool:
    return (any(part in VOLATILE_DIRS for part in relative.parts[:-1]) or relative.name in VOLATILE_NAMES
            or relative.suffix in VOLATILE_SUFFIXES)


def _without_clock(text: str) -> object:
    """A JSON or JSON-lines text with its clock fields dropped, or None if it is neither."""
    def strip(value: object) -> object:
        if isinstance(value, dict):
            return {key: strip(item) for key, item in value.items() if key not in CLOCK_KEYS}
        if isinstance(value, list):
            return [strip(item) for item in value]
        return value

    try:
        return strip(json.loads(text))
    except json.JSONDecodeError:
        pass
    try:
        return [strip(json.loads(line)) for line in text.splitlines() if line.strip()]
    except json.JSONDecodeError:
        return None


def _same(first: Path, second: Path) -> tuple[bool, bool]:
    """``(same, by_clock_only)``: equal bytes, or equal JSON once the clock fields are dropped."""
    a, b = first.read_bytes(), second.read_bytes()
    if a == b:
        return True, False
    try:
        a_json, b_json = _without_clock(a.decode("utf-8")), _without_clock(b.decode("utf-8"))
    except UnicodeDecodeError:
        return False, False
    same = a_json is not None and a_json == b_json
    return same, same


def compare_trees(reference: Path, candidate: Path) -> tuple[int, list[str], list[str], list[str]]:
    """``(files compared, differences, files left out, files equal but for clock fields)``."""
    differences, left_out, clock_only, compared = [], [], [], 0
    ref_files = {p.relative_to(reference) for p in reference.rglob("*") if p.is_file()}
    cand_files = {p.relative_to(candidate) for p in candidate.rglob("*") if p.is_file()}
    for relative in sorted(ref_files ^ cand_files):
        if not _volatile(relative):
            where = "only in the clean run" if relative in ref_files else "only in the interrupted run"
            differences.append(f"{relative}: {where}")
    for relative in sorted(ref_files & cand_files):
        if _volatile(relative):
            left_out.append(str(relative))
            continue
        compared += 1
        same, by_clock = _same(reference / relative, candidate / relative)
        if not same:
            differences.append(f"{relative}: differs")
        elif by_clock:
            clock_only.append(str(relative))
    return compared, differences, left_out, clock_only


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="a tiny corpus and model (seconds per run)")
    parser.add_argument("--points", nargs="+", default=list(DEFAULT_POINTS),
                        help="fault points in run order, each <point>[@<hit>] (default: %(default)s)")
    parser.add_argument("--nproc", type=int, default=1, help="training processes (2: DDP on gloo)")
    parser.add_argument("--backends", default="cosine asnorm plda", help="back-ends of the runs")
    parser.add_argument("--corpus-opts", default=None, help="corpus size options (default: the recipe's)")
    parser.add_argument("--train-overrides", default=None, help="config overrides (default: the recipe's)")
    parser.add_argument("--work", default=None, help="work dir (default: a temporary one, removed)")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds per recipe run")
    args = parser.parse_args(argv)
    if args.tiny:
        args.corpus_opts = args.corpus_opts or TINY_CORPUS
        args.train_overrides = args.train_overrides or TINY_TRAINING
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="speakernet-faults-"))
    run_root, reference = work / "run", work / "clean"
    try:
        shutil.rmtree(run_root, ignore_errors=True)
        shutil.rmtree(reference, ignore_errors=True)
        start = time.perf_counter()
        clean = _recipe(run_root, args, None)
        if clean.returncode != 0:
            print(f"fault_check: the clean run failed:\n{clean.stderr[-3000:]}", file=sys.stderr)
            return 2
        run_root.rename(reference)
        print(f"clean run: {time.perf_counter() - start:.0f} s")
        for point in args.points:
            start = time.perf_counter()
            result = _recipe(run_root, args, point)
            # killed by the signal, or a shell that reports its child's SIGKILL (128 + 9)
            if result.returncode not in (-signal.SIGKILL, 128 + signal.SIGKILL):
                print(f"fault_check: {point} was not reached (exit status {result.returncode}): a point must lie "
                      f"in work that the run still has to do\n{result.stderr[-2000:]}", file=sys.stderr)
                return 2
            print(f"killed at {point} after {time.perf_counter() - start:.0f} s")
        start = time.perf_counter()
        final = _recipe(run_root, args, None)
        if final.returncode != 0:
            print(f"fault_check: the re-run after the kills failed:\n{final.stderr[-3000:]}", file=sys.stderr)
            return 1
        print(f"re-run to the end: {time.perf_counter() - start:.0f} s")
        compared, differences, left_out, clock_only = compare_trees(reference, run_root)
        print(f"{compared} output files compared, {len(left_out)} left out (logs, lock files), "
              f"{len(clock_only)} equal but for their clock fields ({', '.join(clock_only) or 'none'}): "
              f"{len(differences)} differ")
        for line in differences:
            print(f"  {line}")
        return 1 if differences else 0
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

"""What the parallel stages over a data dir share (features, shards): their jobs' environment, progress,
failure reports and the one-data-dir-per-output-dir claim. The jobs run through :mod:`speakernet.utils.launch`.

A stage ``python -m speakernet.bin.X --data-dir D --OUT-dir O --nj J --cmd CMD`` prepares ``O/log/``, then runs
``J`` copies of ``python -m speakernet.bin.X --OUT-dir O --job JOB`` through the launcher; each job writes its
count of utterances done to a progress file now and then, its bad keys to a ``.failed`` file, and its
outputs under temporary names renamed when it succeeds.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

from speakernet.utils.fileio import atomic_write
from speakernet.utils.launch import JobRange, JobRun, JobStatus, Launcher, LocalLauncher, unused_placeholder
from speakernet.utils.logging import Progress

logger = logging.getLogger(__name__)

OWNER_FILE_NAME = "data_dir"
LOG_TAIL_LINES = 30
MAX_KEYS_IN_MESSAGE = 50
#: Seconds between a job's progress reports (a count of utterances done, polled by the parent).
PROGRESS_INTERVAL_S = 1.0
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS")
_PARENT_ENV = "SPEAKERNET_STAGE_PARENT"


def claim_dir(out_dir: Path, data_dir: Path, what: str) -> None:
    """Records ``data_dir`` as the owner of ``out_dir``; refuses a dir that another data dir owns.

    Job outputs have fixed names, so a second data dir would silently overwrite the outputs the
    first one's lists (feats.scp, shards.list) point into.

    Args:
        out_dir: The stage's output dir.
        data_dir: The data dir whose outputs it holds.
        what: What it holds, singular (``feature``, ``shard``).

    Raises:
        ValueError: when ``out_dir`` belongs to another data dir.
    """
    owner_file = out_dir / OWNER_FILE_NAME
    if owner_file.is_file():
        owner = owner_file.read_text(encoding="utf-8").strip()
        if owner and owner != str(data_dir):
            raise ValueError(f"{what} dir {out_dir} already holds the {what}s of data dir {owner}, not {data_dir}; "
                             f"use one {what} dir per data dir (or delete it)")
    with atomic_write(owner_file) as handle:
        handle.write(f"{data_dir}\n")


def wait_with_progress(run: JobRun, progress_files: Sequence[Path], total: int, what: str,
                       interval_s: float = 30.0) -> list[JobStatus]:
    """Waits for a stage's jobs, showing the sum of their progress counts (see :class:`Progress`).

    The progress files are in the output dir, so this works for any launcher whose jobs see the
    same file system (a cluster's shared one too); they are removed at the end.

    Args:
        run: The running jobs.
        progress_files: Each job's progress file (a count of utterances done).
        total: Utterances of all jobs.
        what: What is shown, e.g. ``features of train``.
        interval_s: Seconds between log lines (off a terminal).

    Returns:
        How each job ended.
    """
    shown = 0
    with Progress(total, what, "utts", interval_s=interval_s, log=logger) as progress:
        finished = False
        while not finished:
            finished = run.poll()
            done = 0
            for path in progress_files:
                with contextlib.suppress(OSError, ValueError):
                    done += int(path.read_text(encoding="utf-8") or 0)
            if done > shown:
                progress.update(done - shown)
                shown = done
            if not finished:
                time.sleep(0.2)
    for path in progress_files:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    return run.statuses()


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last lines of a job's log (``(no log written)`` when there is none)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return "(no log written)"
    return "\n".join(text.rstrip("\n").splitlines()[-lines:])


def job_error(path: Path, first_utterance: bool = False) -> str | None:
    """An ERROR message of a job's log, without its timestamp and source.

    Args:
        path: The job's log.
        first_utterance: The first message about an utterance (``utterance 'KEY' (...): why``, which names
            its file) instead of the last message (e.g. a full disk).
    """
    lines = log_tail(path).splitlines()
    for line in lines if first_utterance else reversed(lines):
        if " ERROR " in line:
            message = re.sub(r"^.*? ERROR \[[^]]*\] \([^)]*\) ", "", line)
            if not first_utterance or message.startswith("utterance '"):
                return message
    return None


def check_parent(error: Callable[[str], Exception]) -> None:
    """Stops a local job whose stage process is gone, raising ``error(message)``.

    A SIGKILLed stage cannot stop its jobs, and its lock dies with it: a re-run would start new jobs
    while the orphans still rename their outputs onto the new ones' names. The local launcher has
    the kernel kill its jobs with their parent (Linux); this check covers the other systems.
    """
    parent = os.environ.get(_PARENT_ENV)
    if parent and os.getppid() != int(parent):
        raise error(f"the stage (pid {parent}) that started this job is gone; stopping")


def set_single_thread() -> None:
    """One thread per job process (the jobs are the parallelism)."""
    for name in THREAD_ENV:
        os.environ[name] = "1"
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(1)


def worker_env(local: bool = True) -> dict[str, str]:
    """The jobs' environment: one thread each, this package importable, and (local jobs) the parent's pid."""
    env = dict(os.environ)
    env.pop(_PARENT_ENV, None)
    if local:  # a cluster job's parent is not this process
        env[_PARENT_ENV] = str(os.getpid())
    for name in THREAD_ENV:
        env[name] = "1"
    # Let the job import this very package even when it is not pip-installed.
    package_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH", "")) if p)
    return env


def run_jobs(launcher: Launcher, module: str, dir_option: str, out_dir: Path, log_name: str, kind: str, nj: int,
             job_file: Callable[[int, str], Path], total: int, what: str,
             error: Callable[[str, list[int], list[str]], Exception]) -> float:
    """Runs ``python -m MODULE DIR_OPTION OUT_DIR --job J`` for J = 1..nj with progress, and checks every job.

    Args:
        launcher: What runs the jobs.
        module: The stage's entry point, e.g. ``speakernet.bin.make_features``.
        dir_option: Its option naming the prepared output dir, e.g. ``--feat-dir``.
        out_dir: The output dir; the logs are ``out_dir/log/<log_name>.J.log``.
        log_name: The logs' base name, e.g. ``make_fbank``.
        kind: The jobs' kind, for the message, e.g. ``feature`` (``1 of 2 feature jobs failed ...``).
        nj: Number of jobs.
        job_file: A job's ``progress`` file (a count of utterances done) or ``failed`` file (its bad keys,
            one a line, when it had some): ``job_file(job, "progress")``.
        total: Utterances of all jobs.
        what: The data, for the progress and the message, e.g. ``features of train``.
        error: Makes the exception raised when jobs failed, from a one-line message naming the jobs, their
            logs and the bad keys, the failed jobs and the bad keys.

    Returns:
        The wall-clock seconds the jobs took.

    Raises:
        Exception: ``error(...)`` when a job failed (each failed job's status and log tail are logged first).
    """
    # The job number's placeholder must not occur in the paths (a dir .../JOBS/... would be rewritten).
    placeholder = unused_placeholder([sys.executable, str(out_dir), module])
    command = [sys.executable, "-m", module, dir_option, str(out_dir), "--job", placeholder]
    jobs = JobRange(placeholder, 1, nj)
    start_time = time.perf_counter()
    run = launcher.start(command, out_dir / "log" / f"{log_name}.{placeholder}.log", jobs,
                         env=worker_env(local=isinstance(launcher, LocalLauncher)))
    try:
        statuses = wait_with_progress(run, [job_file(job, "progress") for job in jobs.jobs], total, what)
    except BaseException:
        run.terminate()
        raise
    wall = time.perf_counter() - start_time
    failed = [status for status in statuses if not status.ok]
    if not failed:
        return wall
    if run.problem:
        logger.error("%s", run.problem)
    utts: list[str] = []
    for status in failed:
        logger.error("job %d failed (%s); tail of %s:\n%s", status.job, status.describe(), status.log,
                     log_tail(status.log))
        if job_file(status.job, "failed").is_file():
            utts.extend(job_file(status.job, "failed").read_text(encoding="utf-8").split())
    logs = ", ".join(str(status.log) for status in failed)
    shown = " ".join(utts[:MAX_KEYS_IN_MESSAGE])
    more = f" (and {len(utts) - MAX_KEYS_IN_MESSAGE} more)" if len(utts) > MAX_KEYS_IN_MESSAGE else ""
    reason = job_error(failed[0].log) or run.problem
    first = job_error(failed[0].log, first_utterance=True) if utts else None
    detail = (f"{len(utts)} bad utterances: {shown}{more}" + (f"; the first: {first}" if first else "") if utts
              else f"job {failed[0].job}: {reason}" if reason
              else f"job {failed[0].job}: {failed[0].describe()}, no utterance list reported")
    raise error(f"{len(failed)} of {len(statuses)} {kind} jobs failed ({detail}); see {logs}",
                [status.job for status in failed], utts)

"""Job launchers, the Kaldi way: run ``JOB=1:N`` copies of a command, one log file per job.

A stage with ``nj`` jobs hands its command (with the placeholder ``JOB`` where the job number goes,
e.g. ``--job JOB``) and a log path (``log/make_fbank.JOB.log``) to a :class:`Launcher` and gets one
:class:`JobStatus` per job back. Which launcher is chosen by a command string, as in Kaldi's ``cmd.sh``:

- ``run.pl [--max-jobs-run M]``: :class:`LocalLauncher`, parallel subprocesses on this machine
  (at most M at once; all at once by default). The resource options of ``slurm.pl`` are accepted
  and ignored, so a recipe can switch launchers without changing its stage options.
- ``slurm.pl [--partition P] [--time T] [--mem M] [--gpu G] [--num-threads N] [--max-jobs-run M]
  [--extra-args "..."]``: :class:`SlurmLauncher`, one ``sbatch --array=1-N%M --wait`` of a generated
  job script that runs the command for ``$SLURM_ARRAY_TASK_ID`` and writes its exit status to a file
  per job. A job without a status file (never started, killed by Slurm, sbatch refused) has failed.

:func:`launcher_from_command` parses such a string; ``python -m speakernet.bin.launch`` and the
shell wrappers ``tools/run.pl``, ``tools/slurm.pl`` run a command line through one.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import re
import shlex
import subprocess
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Mapping, Sequence

from speakernet.utils.fileio import PathLike, atomic_write

logger = logging.getLogger(__name__)

#: The placeholder of the job number in a command and its log path (Kaldi's).
JOB_NAME = "JOB"
_JOB_RANGE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(\d+):(\d+)$")
# Seconds between checks of running jobs.
POLL_INTERVAL_S = 0.2


@dataclass(frozen=True)
class JobRange:
    """The jobs ``NAME=FIRST:LAST`` of a launch (both ends included)."""

    name: str = JOB_NAME
    first: int = 1
    last: int = 1

    @property
    def jobs(self) -> list[int]:
        """The job numbers, in order."""
        return list(range(self.first, self.last + 1))

    def substitute(self, text: str, job: int) -> str:
        """``text`` with every occurrence of the placeholder replaced by ``job`` (as Kaldi does)."""
        return text.replace(self.name, str(job))


def parse_job_range(text: str) -> JobRange | None:
    """``JOB=1:4`` -> ``JobRange("JOB", 1, 4)``; None when ``text`` is not a job range.

    Raises:
        ValueError: on a range whose last job is before its first, or that starts below 1.
    """
    match = _JOB_RANGE.match(text)
    if match is None:
        return None
    name, first, last = match.group(1), int(match.group(2)), int(match.group(3))
    if first < 1 or last < first:
        raise ValueError(f"job range {text}: expected {name}=FIRST:LAST with 1 <= FIRST <= LAST")
    return JobRange(name, first, last)


def unused_placeholder(texts: Sequence[str], base: str = JOB_NAME) -> str:
    """A placeholder name (``JOB``, else ``JOB_``, ...) that occurs in none of ``texts``.

    A stage builds its command from paths it does not control; a path holding ``JOB`` would
    otherwise have its ``JOB`` replaced by the job number too.
    """
    name = base
    while any(name in text for text in texts):
        name += "_"
    return name


@dataclass(frozen=True)
class JobStatus:
    """How one job ended.

    Attributes:
        job: The job number.
        code: Its exit status; None when none was recorded (it never ran, or was killed).
        log: Its log file (the command's stdout and stderr).
        note: Where else to look when there is no status (e.g. Slurm's own output of the task).
    """

    job: int
    code: int | None
    log: Path
    note: str = ""

    @property
    def ok(self) -> bool:
        """The job exited with status 0."""
        return self.code == 0

    def describe(self) -> str:
        """``exit code 3`` or ``no exit status (...)``."""
        if self.code is not None:
            return f"exit code {self.code}"
        return "no exit status (it did not run or was killed" + (f"; see {self.note})" if self.note else ")")


def failure_message(statuses: Sequence[JobStatus], problem: str | None = None) -> str:
    """``2 of 4 jobs failed: job 2 (exit code 1, see log/x.2.log), ...`` (empty when none failed)."""
    failed = [status for status in statuses if not status.ok]
    if not failed:
        return ""
    shown = ", ".join(f"job {s.job} ({s.describe()}, see {s.log})" for s in failed)
    return f"{len(failed)} of {len(statuses)} jobs failed: {shown}" + (f"; {problem}" if problem else "")


class JobRun(ABC):
    """The running jobs of one launch (see :meth:`Launcher.start`)."""

    #: Why the launch itself failed (e.g. sbatch refused the array), or None.
    problem: str | None = None

    @abstractmethod
    def poll(self) -> bool:
        """Checks on the jobs (starting queued ones); True once every job has finished."""

    @abstractmethod
    def statuses(self) -> list[JobStatus]:
        """How each job ended, in job order (after :meth:`poll` returned True)."""

    @abstractmethod
    def terminate(self) -> None:
        """Stops the jobs still running and waits for them."""

    def wait(self, interval_s: float = POLL_INTERVAL_S) -> list[JobStatus]:
        """Waits for every job (stopping them on an exception, e.g. Ctrl-C) and returns :meth:`statuses`."""
        try:
            while not self.poll():
                time.sleep(interval_s)
        except BaseException:
            self.terminate()
            raise
        return self.statuses()


class Launcher(ABC):
    """Runs the jobs of a range: the command and the log path with the job number substituted."""

    #: The command name that selects it (``run.pl``, ``slurm.pl``).
    command_name: ClassVar[str]

    @abstractmethod
    def start(self, command: Sequence[str], log: PathLike, jobs: JobRange,
              env: Mapping[str, str] | None = None) -> JobRun:
        """Starts the jobs.

        Args:
            command: The program and its arguments (run as given, without a shell), holding
                ``jobs.name`` where the job number goes.
            log: The log path of a job, holding ``jobs.name``; its directory is created.
            jobs: The job range.
            env: The jobs' environment (default: this process's).

        Returns:
            The running jobs; :meth:`JobRun.wait` waits for them.
        """

    def run(self, command: Sequence[str], log: PathLike, jobs: JobRange,
            env: Mapping[str, str] | None = None) -> list[JobStatus]:
        """:meth:`start`, then wait for every job; returns how each ended."""
        return self.start(command, log, jobs, env).wait()


def _die_with_parent() -> None:
    """In a job process before it starts: the kernel kills it when the launching process dies.

    A SIGKILLed stage cannot stop its jobs; orphans would go on writing the outputs that a re-run
    writes again. Linux only (prctl); elsewhere nothing happens.
    """
    with contextlib.suppress(OSError, AttributeError):
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG = 1


def _footer(code: int | None, start: float) -> str:
    return f"# ended (exit code {code}) at {time.strftime('%Y-%m-%d %H:%M:%S')}, {time.time() - start:.0f} s\n"


class _LocalRun(JobRun):
    def __init__(self, command: Sequence[str], log: PathLike, jobs: JobRange, env: Mapping[str, str] | None,
                 max_jobs_run: int | None) -> None:
        self.command, self.log, self.range = list(command), str(log), jobs
        self.env = dict(env) if env is not None else None
        self.max_jobs_run = max_jobs_run or len(jobs.jobs)
        self.queued = jobs.jobs
        self.running: dict[int, tuple[subprocess.Popen, float]] = {}
        self.codes: dict[int, int] = {}

    def log_path(self, job: int) -> Path:
        return Path(self.range.substitute(self.log, job))

    def _start(self, job: int) -> None:
        command = [self.range.substitute(arg, job) for arg in self.command]
        log = self.log_path(job)
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "w", encoding="utf-8") as handle:
            handle.write(f"# {shlex.join(command)}\n")
            handle.flush()
            process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       env=self.env, preexec_fn=_die_with_parent)
        self.running[job] = (process, time.time())

    def poll(self) -> bool:
        for job, (process, start) in list(self.running.items()):
            if process.poll() is not None:
                self.codes[job] = process.returncode
                del self.running[job]
                with contextlib.suppress(OSError), open(self.log_path(job), "a", encoding="utf-8") as handle:
                    handle.write(_footer(process.returncode, start))
        while self.queued and len(self.running) < self.max_jobs_run:
            self._start(self.queued.pop(0))
        return not self.queued and not self.running

    def statuses(self) -> list[JobStatus]:
        return [JobStatus(job, self.codes.get(job), self.log_path(job)) for job in self.range.jobs]

    def terminate(self) -> None:
        self.queued = []
        for process, _ in self.running.values():
            if process.poll() is None:
                process.terminate()
        for process, _ in self.running.values():
            process.wait()


@dataclass
class LocalLauncher(Launcher):
    """Kaldi's ``run.pl``: the jobs as subprocesses of this process, each with its log.

    The jobs die with the launching process (Linux), so a killed stage leaves no orphans.

    Attributes:
        max_jobs_run: At most this many jobs at once (None: all of them).
    """

    command_name: ClassVar[str] = "run.pl"
    max_jobs_run: int | None = None

    def start(self, command: Sequence[str], log: PathLike, jobs: JobRange,
              env: Mapping[str, str] | None = None) -> JobRun:
        run = _LocalRun(command, log, jobs, env, self.max_jobs_run)
        try:
            run.poll()
        except BaseException:
            run.terminate()
            raise
        return run


_SCRIPT = """#!/usr/bin/env bash
# Generated by speakernet.utils.launch (slurm.pl): one task of a Slurm job array.
task=${{SLURM_ARRAY_TASK_ID:?this script runs as a task of a Slurm job array}}
command=({command})
command=("${{command[@]//{name}/$task}}")
log={log}; log=${{log//{name}/$task}}
status={status}; status=${{status//{name}/$task}}
mkdir -p "$(dirname "$log")"
cd {cwd} || exit 1
start=$(date +%s)
{{ printf '#'; printf ' %q' "${{command[@]}}"
  printf '\\n# started on %s at %s\\n' "$(hostname)" "$(date '+%F %T')"; }} > "$log"
"${{command[@]}}" >> "$log" 2>&1 < /dev/null
code=$?
echo "# ended (exit code $code) at $(date '+%F %T'), $(( $(date +%s) - start )) s" >> "$log"
echo "$code" > "$status.tmp" && mv -f "$status.tmp" "$status"
exit "$code"
"""


class _SlurmRun(JobRun):
    def __init__(self, process: subprocess.Popen | None, launcher: "SlurmLauncher", log: str, jobs: JobRange,
                 queue_dir: Path, base: str, problem: str | None = None) -> None:
        self.process, self.launcher, self.log, self.range = process, launcher, log, jobs
        self.queue_dir, self.base, self.problem = queue_dir, base, problem
        self.sbatch_log = queue_dir / f"{base}.sbatch.log"
        self.reported = time.monotonic()
        self.finished = process is None

    def status_path(self, job: int) -> Path:
        return self.queue_dir / f"{self.base}.{job}.status"

    def _job_id(self) -> str | None:
        with contextlib.suppress(OSError):
            lines = self.sbatch_log.read_text(encoding="utf-8", errors="replace").splitlines()[1:]  # after "# argv"
            ids = [word.split(";")[0] for line in lines for word in line.split() if word.split(";")[0].isdigit()]
            return ids[0] if ids else None
        return None

    def poll(self) -> bool:
        if self.finished:
            return True
        assert self.process is not None
        code = self.process.poll()
        if code is None:
            if time.monotonic() - self.reported > self.launcher.report_interval_s:
                self.reported = time.monotonic()
                done = sum(self.status_path(job).is_file() for job in self.range.jobs)
                logger.info("Slurm job %s: %d of %d tasks done", self._job_id() or "?", done, len(self.range.jobs))
            return False
        missing = [job for job in self.range.jobs if not self.status_path(job).is_file()]
        if missing and code == 0:  # a shared file system may show the last files late
            deadline = time.monotonic() + self.launcher.status_grace_s
            while missing and time.monotonic() < deadline:
                time.sleep(0.5)
                missing = [job for job in missing if not self.status_path(job).is_file()]
        if missing:
            tail = self.sbatch_log.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-3:] \
                if self.sbatch_log.is_file() else []
            self.problem = (f"{self.launcher.sbatch} exited with status {code} (see {self.sbatch_log})"
                            + (f": {' | '.join(tail)}" if tail else ""))
        self.finished = True
        return True

    def statuses(self) -> list[JobStatus]:
        statuses = []
        for job in self.range.jobs:
            code: int | None = None
            with contextlib.suppress(OSError, ValueError):
                code = int(self.status_path(job).read_text(encoding="utf-8").strip())
            note = f"{self.queue_dir / f'{self.base}.{job}.out'} and {self.sbatch_log}"
            statuses.append(JobStatus(job, code, Path(self.range.substitute(self.log, job)), note))
        return statuses

    def terminate(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        job_id = self._job_id()
        if job_id is not None:
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                subprocess.run([self.launcher.scancel, job_id], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, timeout=60, check=False)
        self.process.terminate()
        self.process.wait()


@dataclass
class SlurmLauncher(Launcher):
    """Kaldi's ``slurm.pl``: the jobs as one Slurm job array, submitted with ``sbatch --wait``.

    Next to the first job's log, ``q/<base>.sh`` is the generated task script, ``q/<base>.J.status``
    a task's exit status, ``q/<base>.J.out`` Slurm's own output of the task (e.g. an out-of-memory
    kill) and ``q/<base>.sbatch.log`` sbatch's, where ``<base>`` is the log's name without the
    placeholder and ``.log``. The environment is passed on (sbatch's default ``--export=ALL``).

    Attributes:
        partition: ``--partition`` (None: the cluster's default).
        time: ``--time`` limit of a task, e.g. ``2:00:00`` (None: the partition's default).
        mem: ``--mem``, memory of a task, e.g. ``4G`` (None: the partition's default).
        gpus: GPUs of a task (``--gres=gpu:N``; 0: none).
        cpus_per_task: ``--cpus-per-task``.
        max_jobs_run: At most this many tasks at once (``--array=1-N%M``; None: no limit).
        extra_args: Further sbatch arguments, e.g. ``["--account", "proj"]``.
        sbatch: The sbatch program; ``scancel`` stops the array when the waiting stage is stopped.
        status_grace_s: Seconds to wait for status files after sbatch succeeded (a shared file system).
        report_interval_s: Seconds between log lines while the tasks run.
    """

    command_name: ClassVar[str] = "slurm.pl"
    partition: str | None = None
    time: str | None = None
    mem: str | None = None
    gpus: int = 0
    cpus_per_task: int = 1
    max_jobs_run: int | None = None
    extra_args: list[str] = field(default_factory=list)
    sbatch: str = "sbatch"
    scancel: str = "scancel"
    status_grace_s: float = 10.0
    report_interval_s: float = 60.0

    def sbatch_args(self, jobs: JobRange, base: str, queue_dir: Path) -> list[str]:
        """The sbatch arguments (without the script) for ``jobs``."""
        array = f"{jobs.first}-{jobs.last}" + (f"%{self.max_jobs_run}" if self.max_jobs_run else "")
        args = [f"--array={array}", "--wait", "--parsable", f"--job-name={base}",
                f"--output={queue_dir / f'{base}.%a.out'}", f"--cpus-per-task={self.cpus_per_task}"]
        if self.partition:
            args.append(f"--partition={self.partition}")
        if self.time:
            args.append(f"--time={self.time}")
        if self.mem:
            args.append(f"--mem={self.mem}")
        if self.gpus:
            args.append(f"--gres=gpu:{self.gpus}")
        return args + list(self.extra_args)

    def start(self, command: Sequence[str], log: PathLike, jobs: JobRange,
              env: Mapping[str, str] | None = None) -> JobRun:
        log = str(Path(log).absolute())
        first_log = Path(jobs.substitute(log, jobs.first))
        base = re.sub(r"\.log$", "", Path(log).name.replace(f".{jobs.name}", "").replace(jobs.name, "")) or "job"
        queue_dir = first_log.parent / "q"
        queue_dir.mkdir(parents=True, exist_ok=True)
        run_paths = _SlurmRun(None, self, log, jobs, queue_dir, base)
        for job in jobs.jobs:  # an earlier run's status or log must not pass for this one's
            for path in (run_paths.status_path(job), Path(jobs.substitute(log, job))):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
        script = queue_dir / f"{base}.sh"
        with atomic_write(script) as handle:
            handle.write(_SCRIPT.format(name=jobs.name, command=" ".join(shlex.quote(arg) for arg in command),
                                        log=shlex.quote(log), status=shlex.quote(str(queue_dir / f"{base}.{jobs.name}"
                                                                                     ".status")),
                                        cwd=shlex.quote(os.getcwd())))
        script.chmod(0o755)
        argv = [self.sbatch, *self.sbatch_args(jobs, base, queue_dir), str(script)]
        logger.info("submitting %d tasks: %s", len(jobs.jobs), shlex.join(argv))
        with open(run_paths.sbatch_log, "w", encoding="utf-8") as handle:
            handle.write(f"# {shlex.join(argv)}\n")
            handle.flush()
            try:
                process = subprocess.Popen(argv, stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                           env=dict(env) if env is not None else None)
            except OSError as error:
                return _SlurmRun(None, self, log, jobs, queue_dir, base,
                                 problem=f"cannot run {self.sbatch}: {error.strerror} (is Slurm installed here?)")
        return _SlurmRun(process, self, log, jobs, queue_dir, base)


class _OptionError(ValueError):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]  # a ValueError, not an exit
        raise _OptionError(f"{self.prog}: {message}")


def launcher_parser(command_name: str) -> argparse.ArgumentParser:
    """The options of ``run.pl`` or ``slurm.pl`` (``run.pl`` accepts and ignores the resource ones).

    Raises:
        ValueError: on an unknown launcher name.
    """
    if command_name not in LAUNCHERS:
        raise ValueError(f"unknown job launcher '{command_name}'; choose one of {', '.join(LAUNCHERS)}")
    parser = _Parser(prog=command_name, add_help=False)
    parser.add_argument("--max-jobs-run", type=int, help="at most this many jobs at once (default: all)")
    ignored = " (ignored by run.pl)" if command_name == "run.pl" else ""
    parser.add_argument("--partition", help="Slurm partition (default: the cluster's)" + ignored)
    parser.add_argument("--time", help="time limit of a job, e.g. 2:00:00 (default: the partition's)" + ignored)
    parser.add_argument("--mem", help="memory of a job, e.g. 4G (default: the partition's)" + ignored)
    parser.add_argument("--gpu", type=int, default=0, help="GPUs per job (default: 0)" + ignored)
    parser.add_argument("--num-threads", type=int, default=1, help="CPUs per job (default: 1)" + ignored)
    parser.add_argument("--extra-args", default="", help="further sbatch arguments, one string" + ignored)
    return parser


def launcher_from_options(command_name: str, options: argparse.Namespace) -> Launcher:
    """The launcher ``command_name`` with the options :func:`launcher_parser` parsed."""
    if options.max_jobs_run is not None and options.max_jobs_run < 1:
        raise ValueError(f"{command_name}: --max-jobs-run must be >= 1, got {options.max_jobs_run}")
    if command_name == "run.pl":
        ignored = [f"--{name.replace('_', '-')}" for name, default in
                   (("partition", None), ("time", None), ("mem", None), ("gpu", 0), ("num_threads", 1),
                    ("extra_args", "")) if getattr(options, name) != default]
        if ignored:
            logger.info("run.pl: ignoring %s (Slurm options)", " ".join(ignored))
        return LocalLauncher(max_jobs_run=options.max_jobs_run)
    return SlurmLauncher(partition=options.partition, time=options.time, mem=options.mem, gpus=options.gpu,
                         cpus_per_task=options.num_threads, max_jobs_run=options.max_jobs_run,
                         extra_args=shlex.split(options.extra_args))


def launcher_from_command(command: str | Sequence[str] | None) -> Launcher:
    """The launcher of a ``cmd.sh`` string: ``run.pl [options]`` or ``slurm.pl [options]``.

    The name may be a path (``tools/slurm.pl``); None or an empty string is ``run.pl``.

    Raises:
        ValueError: on an unknown launcher or option, naming the valid ones.
    """
    words = shlex.split(command) if isinstance(command, str) else list(command or [])
    if not words:
        return LocalLauncher()
    name = Path(words[0]).name
    parser = launcher_parser(name)
    try:
        options = parser.parse_args(words[1:])
    except _OptionError as error:
        raise ValueError(f"job command '{shlex.join(words)}': {error} (options: "
                         f"{' '.join(sorted(o for a in parser._actions for o in a.option_strings))})") from None
    return launcher_from_options(name, options)


LAUNCHERS: dict[str, type[Launcher]] = {LocalLauncher.command_name: LocalLauncher,
                                        SlurmLauncher.command_name: SlurmLauncher}

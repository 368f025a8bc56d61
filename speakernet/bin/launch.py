"""Runs JOB=1:N copies of a command, one log per job, locally (run.pl) or as a Slurm array (slurm.pl).

Kaldi's job-runner command line:

    python -m speakernet.bin.launch run.pl [--max-jobs-run M] JOB=1:4 exp/log/foo.JOB.log CMD ARGS...
    python -m speakernet.bin.launch slurm.pl [--partition P] [--time T] [--mem M] [--gpu G] \\
        [--num-threads N] [--max-jobs-run M] [--extra-args "SBATCH ARGS"] JOB=1:4 exp/log/foo.JOB.log CMD ARGS...

``JOB`` (any name: ``NAME=FIRST:LAST``) is replaced by the job number in the log path and in every
argument; without a range there is one job. The command runs as given, without a shell (use
``bash -c '...'`` for pipes). ``tools/run.pl`` and ``tools/slurm.pl`` are wrappers of this.
Exit status: 0 when every job succeeded, else 1 after naming the failed jobs and their logs.
"""

from __future__ import annotations

import argparse
import logging
import sys

from speakernet.bin import run_stage
from speakernet.utils.logging import setup_logging

logger = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> int:
    """Parses ``LAUNCHER [options] [JOB=A:B] LOG CMD...`` and runs the jobs.

    Args:
        argv: Command-line arguments (``sys.argv[1:]`` when ``None``).

    Returns:
        0 when every job succeeded; 1 when one failed or the launch could not start; 2 on a usage error.
    """
    from speakernet.utils.launch import (LAUNCHERS, JobRange, failure_message, launcher_from_options,
                                         launcher_parser, parse_job_range)

    argv = list(sys.argv[1:] if argv is None else argv)
    setup_logging()
    if argv[:1] in (["-h"], ["--help"]):
        sys.stdout.write(__doc__)
        return 0
    name = argv[0].rsplit("/", 1)[-1] if argv else ""
    if name not in LAUNCHERS:
        logger.error("expected a launcher (%s) first, got '%s' (see --help)", ", ".join(LAUNCHERS), name)
        return 2
    parser = launcher_parser(name)
    parser.add_argument("rest", nargs=argparse.REMAINDER)
    try:
        options = parser.parse_args(argv[1:])
        jobs = parse_job_range(options.rest[0]) if options.rest else None
        rest = options.rest[1:] if jobs is not None else options.rest
        if len(rest) < 2:
            raise ValueError(f"{name}: expected [JOB=1:N] LOG COMMAND [ARGS...], got '{' '.join(argv[1:])}'")
        launcher = launcher_from_options(name, options)
    except ValueError as error:
        logger.error("%s (see --help)", error)
        return 2
    jobs = jobs or JobRange("JOB_RANGE_NOT_GIVEN", 1, 1)  # one job, nothing substituted
    log, command = rest[0], rest[1:]

    def launch() -> None:
        run = launcher.start(command, log, jobs)
        statuses = run.wait()
        message = failure_message(statuses, run.problem)
        if message:
            raise RuntimeError(f"{name}: {message}")
        logger.debug("%s: %d jobs done", name, len(statuses))

    return run_stage(launch, {RuntimeError: 1}, interrupted=f"{name}: interrupted; the jobs were stopped")


if __name__ == "__main__":
    sys.exit(main())

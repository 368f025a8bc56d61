#!/usr/bin/env bash
# Kaldi's run.pl: runs JOB=1:N copies of a command on this machine, one log per job.
#
# Usage: run.pl [--max-jobs-run M] [JOB=1:N] LOG_WITH_JOB COMMAND [ARGS...]
#   e.g. run.pl JOB=1:4 exp/log/feats.JOB.log python -m speakernet.bin.make_features --feat-dir f --job JOB
# JOB is replaced by the job number in the log path and the arguments; --partition, --time, --mem, --gpu,
# --num-threads and --extra-args (slurm.pl's) are accepted and ignored. Exits 1 naming the failed jobs and logs.
# Options are parsed by python -m speakernet.bin.launch (Kaldi's order: options, range, log, command).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../path.sh"
python -m speakernet.bin.launch run.pl "$@"

#!/usr/bin/env bash
# Kaldi's slurm.pl: runs JOB=1:N copies of a command as one Slurm job array (sbatch --array --wait),
# one log per job, and waits for them; a task's exit status (or its absence) decides whether it failed.
#
# Usage: slurm.pl [--partition P] [--time T] [--mem M] [--gpu G] [--num-threads N] [--max-jobs-run M]
#                 [--extra-args "SBATCH ARGS"] [JOB=1:N] LOG_WITH_JOB COMMAND [ARGS...]
#   e.g. slurm.pl --partition cpu --time 2:00:00 --mem 4G JOB=1:40 exp/log/x.JOB.log python -m ... --job JOB
# The generated task script, status files and Slurm's own output go to the log dir's q/. Exits 1 naming
# the failed jobs and their logs. Options are parsed by python -m speakernet.bin.launch.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../path.sh"
python -m speakernet.bin.launch slurm.pl "$@"

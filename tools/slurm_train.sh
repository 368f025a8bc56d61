#!/usr/bin/env bash
# Runs a training on N Slurm nodes x P processes: one sbatch job (--nodes N, waited for), in which srun starts
# one task per node, each a torchrun agent joining a c10d rendezvous on the job's first node
# (the first of scontrol show hostnames "$SLURM_JOB_NODELIST"), the job id as rendezvous id.
#
# Usage: slurm_train.sh [--nodes N] [--gpus-per-node G] [--nproc-per-node P] [--partition P] [--time T]
#                       [--mem M] [--cpus-per-task C] [--port PORT] [--extra-args "SBATCH ARGS"]
#                       LOG -m MODULE ARGS...
#   e.g. slurm_train.sh --nodes 2 --gpus-per-node 4 --partition gpu --time 2-00:00:00 --mem 64G \
#          exp/log/train.log -m speakernet.bin.train --conf conf/x.yaml --data-dir data/train --exp-dir exp/x
# A recipe's stage 2 runs through it when cmd.sh sets train_cmd="slurm_train.sh --nodes 2 ..." (or
# sv_stages.sh --train-cmd '...'). P defaults to G (1 without GPUs); --mem is per node. The job's output (every
# node's) goes to LOG, its script to LOG's dir q/; the exit status is the job's, and a failure prints the
# training's error lines from LOG.
# Every node must see the same paths (a shared file system) and the same Python environment.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/../path.sh"

nodes=1 gpus_per_node=0 nproc_per_node="" partition="" time_limit="" mem="" cpus_per_task="" port=29400 extra_args=""
die() { echo "slurm_train.sh: $*" >&2; exit 1; }
while [ $# -gt 0 ]; do
  case "$1" in
    --nodes|--gpus-per-node|--nproc-per-node|--partition|--time|--mem|--cpus-per-task|--port|--extra-args)
      [ $# -ge 2 ] || die "$1 needs a value"
      case "$1" in
        --nodes) nodes=$2 ;; --gpus-per-node) gpus_per_node=$2 ;; --nproc-per-node) nproc_per_node=$2 ;;
        --partition) partition=$2 ;; --time) time_limit=$2 ;; --mem) mem=$2 ;; --cpus-per-task) cpus_per_task=$2 ;;
        --port) port=$2 ;; --extra-args) extra_args=$2 ;;
      esac
      shift 2 ;;
    --*) die "unknown option '$1' (--nodes --gpus-per-node --nproc-per-node --partition --time --mem" \
           "--cpus-per-task --port --extra-args)" ;;
    *) break ;;
  esac
done
[ $# -ge 3 ] && [ "$2" = -m ] || die "usage: slurm_train.sh [options] LOG -m MODULE ARGS... (see the header of $0)"
log_file=$1; shift
nproc_per_node=${nproc_per_node:-$gpus_per_node}
[ "$nproc_per_node" != 0 ] || nproc_per_node=1
for var in nodes nproc_per_node port; do
  case "${!var}" in ''|*[!0-9]*|0) die "--${var//_/-} must be a positive whole number, got '${!var}'" ;; esac
done
case "$gpus_per_node" in ''|*[!0-9]*) die "--gpus-per-node must be a whole number, got '$gpus_per_node'" ;; esac
command -v sbatch >/dev/null || die "sbatch is not on PATH: run this on a Slurm login node"

queue_dir="$(dirname "$log_file")/q"
mkdir -p "$queue_dir"
job_name="speakernet-train-$(basename "$log_file" .log)"
script="$queue_dir/$(basename "$log_file" .log).sh"
# The job script: the same on every cluster; what differs goes into sbatch's options below.
{
  echo '#!/usr/bin/env bash'
  echo 'set -euo pipefail'
  echo "# $(printf '%q ' "$0" "$log_file" "$@")"
  echo 'head_node=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | awk "NR == 1")  # awk reads to the end: no SIGPIPE'
  echo 'python_bin=$(command -v python || command -v python3)'
  echo 'echo "# job $SLURM_JOB_ID: $SLURM_JOB_NUM_NODES node(s) x '"$nproc_per_node"' process(es), rendezvous $head_node:'"$port"'"'
  echo 'srun --nodes="$SLURM_JOB_NUM_NODES" --ntasks-per-node=1 --kill-on-bad-exit=1 \'
  echo '  "$python_bin" -m torch.distributed.run --nnodes="$SLURM_JOB_NUM_NODES" --nproc-per-node='"$nproc_per_node"' \'
  echo '  --rdzv-backend=c10d --rdzv-endpoint="$head_node:'"$port"'" --rdzv-id="$SLURM_JOB_ID" \'
  echo "  $(printf '%q ' "$@")"
} > "$script.tmp"
chmod +x "$script.tmp"
mv "$script.tmp" "$script"

options=(--parsable --wait --job-name="$job_name" --nodes="$nodes" --ntasks-per-node=1 --output="$log_file"
  --chdir="$PWD")
[ -z "$partition" ] || options+=(--partition="$partition")
[ -z "$time_limit" ] || options+=(--time="$time_limit")
[ -z "$mem" ] || options+=(--mem="$mem")
[ "$gpus_per_node" -eq 0 ] || options+=(--gpus-per-node="$gpus_per_node")
[ -z "$cpus_per_task" ] || options+=(--cpus-per-task="$cpus_per_task")
# shellcheck disable=SC2206  # the extra arguments are sbatch's own words
[ -z "$extra_args" ] || options+=($extra_args)

echo "slurm_train.sh: $nodes node(s) x $nproc_per_node process(es); the job's output: $log_file" >&2
# sbatch runs in the background so that an interrupt cancels the job at once.
sbatch "${options[@]}" "$script" > "$queue_dir/$job_name.id" &
submitter=$!
trap 'scancel --name="$job_name" 2>/dev/null || true; kill "$submitter" 2>/dev/null || true; exit 130' INT TERM
status=0
wait "$submitter" || status=$?
trap - INT TERM
job_id=$(head -n 1 "$queue_dir/$job_name.id" 2>/dev/null || true)
if [ "$status" -ne 0 ]; then
  # The training's own error lines, not torchrun's summary of them (the log's end when there are none).
  errors=$(grep -E '^[A-Za-z_.]*(Error|Exception)\b|: error: ' "$log_file" 2>/dev/null | grep -v ChildFailedError |
    head -n 5 || true)
  echo "slurm_train.sh: training job ${job_id:-(not submitted)} failed (exit status $status); from $log_file:" >&2
  if [ -n "$errors" ]; then echo "$errors" >&2; else tail -n 20 "$log_file" >&2 2>/dev/null || true; fi
  exit "$status"
fi
echo "slurm_train.sh: training job $job_id done: $log_file" >&2

# shellcheck shell=bash
# What runs the parallel jobs of this recipe's stages, as in Kaldi's cmd.sh (run.sh sources it after path.sh).
#   run.pl   [--max-jobs-run M]                          the jobs as processes on this machine (one log per job)
#   slurm.pl [--partition P] [--time T] [--mem M] [--gpu G] [--num-threads N] [--max-jobs-run M]
#            [--extra-args "SBATCH ARGS"]                one Slurm job array (sbatch --array --wait), waited for
#   slurm_train.sh [--nodes N] [--gpus-per-node G] [--nproc-per-node P] [--partition P] [--time T] [--mem M]
#            [--cpus-per-task C] [--port PORT] [--extra-args "SBATCH ARGS"]
#                                                        stage 2's training as one Slurm job of N nodes x P processes
# A failed job fails its stage, naming the job and its log. Edit this file for your machine or cluster.
export feats_cmd="run.pl"   # stage 1, features: --nj jobs, one thread each
# On a Slurm cluster, e.g.:
# export feats_cmd="slurm.pl --partition cpu --time 2:00:00 --mem 4G"
# export feats_cmd="slurm.pl --partition cpu --time 4:00:00 --mem 4G --max-jobs-run 50 --extra-args '--account proj'"
export train_cmd=""         # stage 2, training: empty runs it here (run.sh --nproc, or --nnodes on each machine)
# On a Slurm cluster, e.g. 2 nodes x 4 GPUs (leave run.sh's --nproc and --nnodes at 1):
# export train_cmd="slurm_train.sh --nodes 2 --gpus-per-node 4 --partition gpu --time 3-00:00:00 --mem 64G"

#!/usr/bin/env bash
# Mini recipe: the whole speaker-verification pipeline on speakernet's built-in synthetic
# corpus (no downloads), sized to finish in a few minutes on 2 CPU cores.
#
#   0  generate the synthetic corpus (train and test speakers disjoint, test trials)
#   1  fbank + energy VAD          2  train ECAPA-TDNN (small) with AAM-softmax
#   3  embeddings (untrained and trained models)   4  cosine scoring   5  AS-norm
#   6  QMF calibration   7  LDA + PLDA   8  results table (every back-end)   9  HTML report
#
# Usage: ./run.sh [--stage N] [--stop-stage N] [--nj N] [--nproc N] [--conf FILE] ...
set -euo pipefail
recipe_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$recipe_dir/path.sh"
. "$recipe_dir/cmd.sh"  # job launchers (run.pl or slurm.pl), as in Kaldi
. recipe_lib.sh

stage=0                     # first stage to run
stop_stage=9                # last stage to run
nj=2                        # parallel jobs for corpus generation and features
nproc=1                     # training processes (torchrun); 2 = DDP over gloo on CPU
nnodes=1                    # machines of the training: > 1, run --stage 2 --stop-stage 2 on each (README)
rdzv_endpoint=""            # HOST:PORT of the rendezvous with --nnodes > 1 (e.g. the first machine's, port 29400)
rdzv_id=""                  # rendezvous id, the same on every machine (default: speakernet-<exp dir name>)
rdzv_backend=c10d           # torchrun --rdzv-backend: c10d, or static (with --node-rank)
node_rank=""                # this machine's number 0..nnodes-1, with --rdzv-backend static only
conf=conf/ecapa_mini.yaml   # model conf (not called "config", which Kaldi's parse_options.sh reserves)
corpus=corpus               # where the synthetic corpus is written
exp=exp/ecapa_mini          # experiment dir: config, checkpoints, embeddings, scores, results
average_num=0               # > 0: evaluate the mean weights of the last N epochs (WeSpeaker averages 10)
backends="cosine asnorm qmf plda"  # back-ends: cosine asnorm snorm qmf plda (stages 4-7)
top_n=100                   # AS-norm cohort scores per side (100, not 300: the mini cohort has 200 speakers)
adapt_data=""                # in-domain data dir: its mean and AS-norm cohort give extra *-adapt rows
p_targets="0.01 0.05"        # priors of the minDCF/actDCF columns (add 0.001 for Kaldi's third)
corpus_opts=""              # corpus size options, e.g. "--num-train-speakers 50" (see make_synthetic_corpus -h)
feat_dir=""                 # feature archives (default: fbank_<corpus> next to the corpus)
train_overrides=""          # config overrides key.sub=value, space-separated, e.g. "training.epochs=2"
finetune_conf=""            # conf of a fine-tuning stage from the evaluated model (conf/*_lm.yaml: large margin)
finetune_overrides=""       # config overrides of the fine-tuning training
finetune_tag=lm             # name of the fine-tuned model: exp/<tag>, rows trained-<tag> (e.g. triplet)
pretrained=""               # a model dir (import_model, or another exp) to evaluate and fine-tune instead of training
                            # --conf's model; its features need their own data dir when their front-end differs
help_message=$(recipe_help "$recipe_dir/run.sh")
. parse_options.sh
check_stage_args "$@"
check_install
resolve_user_paths conf finetune_conf corpus exp feat_dir adapt_data pretrained
cd "$recipe_dir"
feat_dir=${feat_dir:-$(dirname "$corpus")/fbank_$(basename "$corpus")}

if [ "$stage" -le 0 ] && [ "$stop_stage" -ge 0 ]; then
  log "Stage 0: synthetic corpus -> $corpus"
  # shellcheck disable=SC2086  # options are deliberately word-split
  python -m speakernet.bin.make_synthetic_corpus --out-dir "$corpus" --nj "$nj" $corpus_opts
  python -m speakernet.bin.validate_data_dir "$corpus/data/train"
  python -m speakernet.bin.validate_data_dir --check-trials "$corpus/data/test"
fi

sv_stages.sh --stage "$(( stage > 1 ? stage : 1 ))" --stop-stage "$stop_stage" --nj "$nj" --nproc "$nproc" \
  --conf "$conf" --train-data "$corpus/data/train" --test-data "$corpus/data/test" \
  --trials "$corpus/data/test/trials" --feat-dir "$feat_dir" --exp-dir "$exp" \
  --train-overrides "$train_overrides" --average-num "$average_num" --finetune-conf "$finetune_conf" \
  --finetune-overrides "$finetune_overrides" --finetune-tag "$finetune_tag" --pretrained "$pretrained" \
  --backends "$backends" --top-n "$top_n" --adapt-data "$adapt_data" --p-targets "$p_targets" \
  --nnodes "$nnodes" --rdzv-endpoint "$rdzv_endpoint" --rdzv-id "$rdzv_id" --rdzv-backend "$rdzv_backend" \
  --node-rank "$node_rank"

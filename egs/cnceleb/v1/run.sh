#!/usr/bin/env bash
# CN-Celeb recipe: train on CN-Celeb1 dev (+ CN-Celeb2), evaluate on CN-Celeb1 eval.
#
#   0  data dirs from the official layouts (short training utterances merged per speaker and genre to
#      --min-train-duration, WeSpeaker's way); the sources of augmentation (MUSAN, RIRS_NOISES or simulated
#      rooms) in <data>/sources; with --offline-aug, Kaldi's augmented copies of cnceleb_train and
#      cnceleb_train_combined (clean + copies), the training set from then on
#   1  fbank + VAD   2  training   3  embeddings (untrained + trained)   4  cosine   5  AS-norm   6  QMF
#   7  LDA + PLDA   8  results table   9  HTML report
#
#   ./run.sh --cnceleb1-root /data/CN-Celeb_flac [--cnceleb2-root /data/CN-Celeb2_flac]
#   ./run.sh ... --musan-root /data/musan --rirs-root /data/RIRS_NOISES --conf conf/ecapa_c512_aug.yaml  # online
#   ./run.sh ... --musan-root /data/musan --rir-rooms 200 --offline-aug "reverb noise music babble"    # offline
#
# --enroll names the enrolment forms scored, each an evaluation set of its own (rows ...:CNC-Eval-<form>):
# Concat scores the official concatenated enrolment files (eval/enroll); Avg the plain mean of the
# enroll.map utterances' embeddings (WeSpeaker's published CNC-Eval-Avg).
set -euo pipefail
recipe_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$recipe_dir/path.sh"
. "$recipe_dir/cmd.sh"  # job launchers (run.pl or slurm.pl), as in Kaldi
. recipe_lib.sh

stage=0                     # first stage to run
stop_stage=9                # last stage to run
cnceleb1_root=              # CN-Celeb1 root (data/, dev/, eval/)
cnceleb2_root=              # optional CN-Celeb2 root, added to training
enroll="average concat"     # enrolment forms scored: average (mean of enroll.map utterances), concat (official files)
min_train_duration=5        # seconds: shorter training utterances are merged (per speaker and genre; 0: off)
merged_audio=""             # write merged utterances here as wav (default: ffmpeg pipes; ~30x slower to read)
musan_root=                 # MUSAN root (music/ speech/ noise/) -> <data>/sources/musan_*, for augmentation
rirs_root=                  # RIRS_NOISES root (simulated_rirs/ ...) -> <data>/sources/rirs_*, for augmentation
rir_rooms=0                 # > 0, without RIRS_NOISES: simulate this many small and medium rooms (10 RIRs each)
offline_aug=""              # offline copies of cnceleb_train before features: kinds of reverb noise music babble
aug_per_kind=0              # utterances per augmented copy, drawn at random (0: all)
nj=16                       # parallel feature-extraction jobs
nproc=1                     # training processes (torchrun): GPUs, or CPU processes with gloo
nnodes=1                    # machines of the training: > 1, run --stage 2 --stop-stage 2 on each (README)
rdzv_endpoint=""            # HOST:PORT of the rendezvous with --nnodes > 1 (e.g. the first machine's, port 29400)
rdzv_id=""                  # rendezvous id, the same on every machine (default: speakernet-<exp dir name>)
rdzv_backend=c10d           # torchrun --rdzv-backend: c10d, or static (with --node-rank)
node_rank=""                # this machine's number 0..nnodes-1, with --rdzv-backend static only
conf=conf/ecapa_c512.yaml   # model conf (conf/ecapa_c1024.yaml for the larger model)
data=data                   # where the prepared data dirs go
exp=exp/ecapa_c512          # experiment dir: config, checkpoints, embeddings, scores, results
average_num=10  # > 0: evaluate the mean weights of the last N epochs (WeSpeaker averages 10)
backends="cosine asnorm qmf plda"  # back-ends: cosine asnorm snorm qmf plda (stages 4-7)
top_n=300                   # AS-norm cohort scores per side
adapt_data=""                # in-domain data dir: its mean and AS-norm cohort give extra *-adapt rows
p_targets="0.01 0.05"        # priors of the minDCF/actDCF columns (add 0.001 for Kaldi's third)
feat_dir=""     # feature archives (default: <data>/fbank)
train_overrides=""          # config overrides key.sub=value, space-separated, e.g. "training.epochs=2"
finetune_conf=""            # conf of a fine-tuning stage from the evaluated model (conf/*_lm.yaml: large margin)
finetune_overrides=""       # config overrides of the fine-tuning training
finetune_tag=lm             # name of the fine-tuned model: exp/<tag>, rows trained-<tag> (e.g. triplet)
pretrained=""               # a model dir (import_model, or another exp) to evaluate and fine-tune instead of training
                            # --conf's model; its features need their own data dir when their front-end differs
help_message=$(recipe_help "$recipe_dir/run.sh")
. parse_options.sh
check_stage_args "$@"
check_aug_options
check_install
resolve_user_paths cnceleb1_root cnceleb2_root merged_audio musan_root rirs_root conf finetune_conf data exp feat_dir \
  adapt_data pretrained
cd "$recipe_dir"
feat_dir=${feat_dir:-$data/fbank}

eval_sets=""
[ -n "$enroll" ] || { echo "$0: --enroll names at least one enrolment form (average, concat)" >&2; exit 1; }
for form in $enroll; do
  case "$form" in
    concat) eval_sets+=" CNC-Eval-Concat=$data/eval_test,enroll=$data/eval_enroll,enroll_table=xvector" ;;
    average) eval_sets+=" CNC-Eval-Avg=$data/eval_test,enroll=$data/eval_enroll_map,enroll_table=spk_xvector" ;;
    *) echo "$0: --enroll must be concat or average (or both), got '$form'" >&2; exit 1 ;;
  esac
done

if [ "$stage" -le 0 ] && [ "$stop_stage" -ge 0 ]; then
  log "Stage 0: data dirs from $cnceleb1_root ${cnceleb2_root:+and $cnceleb2_root }-> $data"
  [ -n "$cnceleb1_root" ] || { echo "$0: give --cnceleb1-root" >&2; exit 1; }
  run_unless_fresh "$data/.prepared" "" python -m speakernet.bin.prepare_cnceleb --cnceleb1-root "$cnceleb1_root" \
    ${cnceleb2_root:+--cnceleb2-root "$cnceleb2_root"} --enroll-mode both --min-train-duration "$min_train_duration" \
    ${merged_audio:+--merged-audio-dir "$merged_audio"} --out-dir "$data"
  for part in cnceleb_train eval_enroll eval_enroll_map; do
    python -m speakernet.bin.validate_data_dir "$data/$part"
  done
  python -m speakernet.bin.validate_data_dir --check-trials --enroll-dir "$data/eval_enroll" "$data/eval_test"
  augmentation_stage "$data" cnceleb_train  # MUSAN, RIRs; with --offline-aug, cnceleb_train_combined
fi

training_dirs "$data" cnceleb_train  # with --offline-aug: train on cnceleb_train_combined, back-ends on cnceleb_train

# The conf's augmentation sources, named under the default --data, are under this run's --data.
[ ! -f "$conf" ] || train_overrides="$(source_overrides "$conf" "$data")${train_overrides:+ $train_overrides}"
sv_stages.sh --stage "$(( stage > 1 ? stage : 1 ))" --stop-stage "$stop_stage" --nj "$nj" --nproc "$nproc" \
  --conf "$conf" --train-data "$train_data" --backend-data "$backend_data" --eval-sets "$eval_sets" \
  --feat-dir "$feat_dir" --exp-dir "$exp" --train-overrides "$train_overrides" \
  --average-num "$average_num" --finetune-conf "$finetune_conf" \
  --finetune-overrides "$finetune_overrides" --finetune-tag "$finetune_tag" --pretrained "$pretrained" \
  --backends "$backends" --top-n "$top_n" --adapt-data "$adapt_data" --p-targets "$p_targets" \
  --nnodes "$nnodes" --rdzv-endpoint "$rdzv_endpoint" --rdzv-id "$rdzv_id" --rdzv-backend "$rdzv_backend" \
  --node-rank "$node_rank"

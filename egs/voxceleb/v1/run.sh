#!/usr/bin/env bash
# VoxCeleb recipe: train on VoxCeleb2 dev, evaluate on the cleaned VoxCeleb1 O, E and H lists.
#
#   0  data dirs from the official layouts (vox2 m4a decoded by an ffmpeg pipe in wav.scp); the sources of
#      augmentation (MUSAN, RIRS_NOISES or simulated rooms) in <data>/sources; with --offline-aug, Kaldi's
#      augmented copies of vox2_dev and vox2_dev_combined (clean + copies), the training set from then on
#   1  fbank + VAD   2  training   3  embeddings (untrained + trained)   4  cosine   5  AS-norm
#   6  QMF   7  LDA + PLDA   8  results table   9  HTML report
#
#   ./run.sh --vox1-root /data/VoxCeleb1 --vox2-root /data/VoxCeleb2 [--nproc 8] [--conf conf/ecapa_c1024.yaml]
#   ./run.sh ... --musan-root /data/musan --rirs-root /data/RIRS_NOISES --conf conf/ecapa_c512_aug.yaml  # online
#   ./run.sh ... --musan-root /data/musan --rir-rooms 200 --offline-aug "reverb noise music babble"    # offline
#
# The trial lists (veri_test2.txt, list_test_all2.txt, list_test_hard2.txt) are looked for in
# the VoxCeleb1 root or next to it (--trial-lists-dir overrides). E and H use VoxCeleb1 dev
# speakers, so VoxCeleb1 is not used for training.
set -euo pipefail
recipe_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$recipe_dir/path.sh"
. "$recipe_dir/cmd.sh"  # job launchers (run.pl or slurm.pl), as in Kaldi
. recipe_lib.sh

stage=0                     # first stage to run
stop_stage=9                # last stage to run
vox1_root=                  # VoxCeleb1 root (wav/<id1xxxx>/<video>/<n>.wav)
vox2_root=                  # VoxCeleb2 root (dev/aac/<id0xxxx>/<video>/<n>.m4a)
musan_root=                 # MUSAN root (music/ speech/ noise/) -> <data>/sources/musan_*, for augmentation
rirs_root=                  # RIRS_NOISES root (simulated_rirs/ ...) -> <data>/sources/rirs_*, for augmentation
rir_rooms=0                 # > 0, without RIRS_NOISES: simulate this many small and medium rooms (10 RIRs each)
offline_aug=""              # offline copies of vox2_dev before features: kinds of reverb noise music babble
aug_per_kind=0              # utterances per augmented copy, drawn at random (0: all; Kaldi keeps 1 M of 4 x 1.09 M)
trial_lists_dir=            # where veri_test2.txt, list_test_all2.txt, list_test_hard2.txt are (default: by vox1_root)
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
resolve_user_paths vox1_root vox2_root musan_root rirs_root trial_lists_dir conf finetune_conf data exp feat_dir \
  adapt_data pretrained
cd "$recipe_dir"
feat_dir=${feat_dir:-$data/fbank}

if [ "$stage" -le 0 ] && [ "$stop_stage" -ge 0 ]; then
  log "Stage 0: data dirs from $vox1_root and $vox2_root -> $data"
  [ -n "$vox1_root" ] && [ -n "$vox2_root" ] || { echo "$0: give --vox1-root and --vox2-root" >&2; exit 1; }
  run_or_skip "$data/.prepared" python -m speakernet.bin.prepare_voxceleb --voxceleb1-root "$vox1_root" \
    --voxceleb2-root "$vox2_root" ${trial_lists_dir:+--trial-lists-dir "$trial_lists_dir"} --out-dir "$data"
  for part in vox2_dev vox1_all; do
    python -m speakernet.bin.validate_data_dir "$data/$part"
  done
  augmentation_stage "$data" vox2_dev  # MUSAN, RIRs; with --offline-aug, vox2_dev_combined
fi

training_dirs "$data" vox2_dev  # with --offline-aug: train on vox2_dev_combined, back-ends on vox2_dev

trials=""
for name in O E H; do
  for dir in vox1_test vox1_all; do
    [ -f "$data/$dir/trials_vox1_$name" ] && trials+=" $data/$dir/trials_vox1_$name"
  done
done
# Every list is scored against vox1_all, which holds the O list's test speakers too.
trials=$(echo $trials)
[ "$stage" -gt 0 ] || [ -n "$trials" ] || { echo "$0: no VoxCeleb1 trial list was prepared" >&2; exit 1; }

# The conf's augmentation sources, named under the default --data, are under this run's --data.
[ ! -f "$conf" ] || train_overrides="$(source_overrides "$conf" "$data")${train_overrides:+ $train_overrides}"
sv_stages.sh --stage "$(( stage > 1 ? stage : 1 ))" --stop-stage "$stop_stage" --nj "$nj" --nproc "$nproc" \
  --conf "$conf" --train-data "$train_data" --backend-data "$backend_data" \
  --test-data "$data/vox1_all" --trials "$trials" \
  --feat-dir "$feat_dir" --exp-dir "$exp" --train-overrides "$train_overrides" \
  --average-num "$average_num" --finetune-conf "$finetune_conf" \
  --finetune-overrides "$finetune_overrides" --finetune-tag "$finetune_tag" --pretrained "$pretrained" \
  --backends "$backends" --top-n "$top_n" --adapt-data "$adapt_data" --p-targets "$p_targets" \
  --nnodes "$nnodes" --rdzv-endpoint "$rdzv_endpoint" --rdzv-id "$rdzv_id" --rdzv-backend "$rdzv_backend" \
  --node-rank "$node_rank"

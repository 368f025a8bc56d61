#!/usr/bin/env bash
# Real-speech benchmark on corpora you have on disk: LibriSpeech (cut into 3 s segments),
# Speech Commands, Arabic Speech Commands and Free Spoken Digits, pooled, with SPEAKERS split
# into train and test per corpus (speaker-disjoint), trials within and across corpora.
#
#   ./run.sh --librispeech-root DIR --speech-commands-root DIR --arabic-root DIR [--fsdd-root DIR]
#   ./run.sh ... --pretrained exp/sb_ecapa --finetune-conf conf/ecapa_sb_finetune.yaml --finetune-tag ft \
#       --data data_sb --exp exp/sb_ecapa_eval    # an imported model (import_model), then fine-tuned
#
# Stages: 0 data dirs (train, test, and unlabelled adapt speakers), then tools/sv_stages.sh: 1 fbank + VAD,
# 2 training, 3 embeddings (untrained + trained), 4 cosine, 5 AS-norm, 6 QMF, 7 PLDA, 8 results, 9 report.
# Any root may be left out. Same-speaker recordings of one corpus mostly share a session, so
# per-corpus EERs are optimistic; the pooled list is the headline figure.
set -euo pipefail
recipe_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$recipe_dir/path.sh"
. "$recipe_dir/cmd.sh"  # job launchers (run.pl or slurm.pl), as in Kaldi
. recipe_lib.sh

stage=0                     # first stage to run
stop_stage=9                # last stage to run
librispeech_root=           # LibriSpeech train-clean-100 dir (<spk>/<chapter>/<file>.flac)
speech_commands_root=       # Speech Commands dir (<word>/<hash>_nohash_<n>.flac)
arabic_root=                # Arabic Speech Commands dataset dir (<word>/<spk>_NO_<rep>.flac)
fsdd_root=                  # Free Spoken Digit recordings dir (<digit>_<name>_<idx>.wav)
noise_root=                 # a folder of background-noise files: <data>/sources/noise, for the augmentation confs
rir_rooms=0                 # > 0: simulate this many small and medium rooms (10 RIRs each): <data>/sources/rirs_*
nj=2                        # parallel feature-extraction jobs
nproc=1                     # training processes (torchrun): GPUs, or CPU processes with gloo
nnodes=1                    # machines of the training: > 1, run --stage 2 --stop-stage 2 on each (README)
rdzv_endpoint=""            # HOST:PORT of the rendezvous with --nnodes > 1 (e.g. the first machine's, port 29400)
rdzv_id=""                  # rendezvous id, the same on every machine (default: speakernet-<exp dir name>)
rdzv_backend=c10d           # torchrun --rdzv-backend: c10d, or static (with --node-rank)
node_rank=""                # this machine's number 0..nnodes-1, with --rdzv-backend static only
conf=conf/ecapa_small.yaml  # model conf
data=data                   # where the prepared data dirs go
exp=exp/ecapa_small         # experiment dir: config, checkpoints, embeddings, scores, results
average_num=0  # > 0: evaluate the mean weights of the last N epochs (WeSpeaker averages 10)
backends="cosine asnorm qmf plda"  # back-ends: cosine asnorm snorm qmf plda (stages 4-7)
top_n=300                   # AS-norm cohort scores per side
adapt_data=""                # in-domain data dir: its mean and AS-norm cohort give extra *-adapt rows (default: <data>/adapt)
adapt_fraction=0.3          # fraction of the held-out speakers of each corpus prepared as unlabelled adapt data
p_targets="0.01 0.05"        # priors of the minDCF/actDCF columns (add 0.001 for Kaldi's third)
feat_dir=""     # feature archives (default: <data>/fbank)
train_overrides=""          # config overrides key.sub=value, space-separated, e.g. "training.epochs=2"
finetune_conf=""            # conf of a fine-tuning stage from the evaluated model (conf/*_lm.yaml: large margin)
finetune_overrides=""       # config overrides of the fine-tuning training
finetune_tag=lm             # name of the fine-tuned model: exp/<tag>, rows trained-<tag> (e.g. triplet)
pretrained=""               # a model dir (import_model, or another exp) to evaluate and fine-tune instead of training
                            # --conf's model; its features need their own --data dir (their front-end may differ)
help_message=$(recipe_help "$recipe_dir/run.sh")
. parse_options.sh
check_stage_args "$@"
check_install
resolve_user_paths librispeech_root speech_commands_root arabic_root fsdd_root noise_root conf finetune_conf data exp \
  feat_dir adapt_data pretrained
cd "$recipe_dir"
feat_dir=${feat_dir:-$data/fbank}

if [ "$stage" -le 0 ] && [ "$stop_stage" -ge 0 ]; then
  log "Stage 0: pooled data dirs -> $data"
  run_or_skip "$data/.prepared" python -m speakernet.bin.prepare_pooled \
    ${librispeech_root:+--librispeech-root "$librispeech_root"} \
    ${speech_commands_root:+--speech-commands-root "$speech_commands_root"} \
    ${arabic_root:+--arabic-root "$arabic_root"} ${fsdd_root:+--fsdd-root "$fsdd_root"} \
    --adapt-fraction "$adapt_fraction" --out-dir "$data"
  python -m speakernet.bin.validate_data_dir "$data/train"
  python -m speakernet.bin.validate_data_dir --check-trials "$data/test"
  [ ! -d "$data/adapt" ] || python -m speakernet.bin.validate_data_dir "$data/adapt"
  # Sources of the online augmentation (conf/*_aug.yaml): real noise, simulated room impulse responses.
  [ -z "$noise_root" ] || run_unless_fresh "$data/sources/.noise.done" "" \
    python -m speakernet.bin.prepare_noise_dir --root "$noise_root" --out-dir "$data/sources/noise"
  prepare_aug_sources "$data/sources" "$data/rir_audio" "" "" "$rir_rooms"  # (no MUSAN, no RIRS_NOISES here)
fi

trials=$(for list in "$data"/test/trials "$data"/test/trials_*; do [ ! -f "$list" ] || printf '%s ' "$list"; done)
[ -n "$trials" ] || { echo "$0: no trial list in $data/test (trials, trials_*): run stage 0" >&2; exit 1; }
# The held-out speakers prepared as unlabelled in-domain data give the *-adapt rows.
[ -n "$adapt_data" ] || [ ! -f "$data/adapt/utt2spk" ] || adapt_data=$data/adapt
# The conf's augmentation sources, named under the default --data, are under this run's --data.
[ ! -f "$conf" ] || train_overrides="$(source_overrides "$conf" "$data")${train_overrides:+ $train_overrides}"
sv_stages.sh --stage "$(( stage > 1 ? stage : 1 ))" --stop-stage "$stop_stage" --nj "$nj" --nproc "$nproc" \
  --conf "$conf" --train-data "$data/train" --test-data "$data/test" --trials "$trials" \
  --feat-dir "$feat_dir" --exp-dir "$exp" --train-overrides "$train_overrides" \
  --average-num "$average_num" --finetune-conf "$finetune_conf" \
  --finetune-overrides "$finetune_overrides" --finetune-tag "$finetune_tag" \
  --backends "$backends" --top-n "$top_n" --adapt-data "$adapt_data" --p-targets "$p_targets" \
  --pretrained "$pretrained" \
  --nnodes "$nnodes" --rdzv-endpoint "$rdzv_endpoint" --rdzv-id "$rdzv_id" --rdzv-backend "$rdzv_backend" \
  --node-rank "$node_rank"

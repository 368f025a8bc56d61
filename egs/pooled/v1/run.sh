#!/usr/bin/env bash
# Real-speech benchmark on corpora you have on disk: LibriSpeech (cut into 3 s segments),
# Speech Commands, Arabic Speech Commands and Free Spoken Digits, pooled, with SPEAKERS split
# into train and test per corpus (speaker-disjoint), trials within and across corpora.
#
#   ./run.sh --librispeech-root DIR --speech-commands-root DIR --arabic-root DIR [--fsdd-root DIR]
#
# Stages: 0 data dirs, 1 fbank + VAD, 2 training, 3 embeddings (untrained + trained), 4 scoring.
# Any root may be left out. Same-speaker recordings of one corpus mostly share a session, so
# per-corpus EERs are optimistic; the pooled list is the headline figure.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
. ./path.sh

stage=0
stop_stage=4
librispeech_root=
speech_commands_root=
arabic_root=
fsdd_root=
nj=2
nproc=1
conf=conf/ecapa_small.yaml
data=data
exp=exp/ecapa_small
average_num=0  # > 0: evaluate the mean weights of the last N epochs (WeSpeaker averages 10)
train_overrides=""
help_message=$(awk 'NR > 1 && /^#/ {sub(/^# ?/, ""); print; next} NR > 1 {exit}' "$(basename "$0")")
. parse_options.sh
. recipe_lib.sh

if [ "$stage" -le 0 ] && [ "$stop_stage" -ge 0 ]; then
  log "Stage 0: pooled data dirs -> $data"
  run_or_skip "$data/.prepared" python -m speakernet.bin.prepare_pooled \
    ${librispeech_root:+--librispeech-root "$librispeech_root"} \
    ${speech_commands_root:+--speech-commands-root "$speech_commands_root"} \
    ${arabic_root:+--arabic-root "$arabic_root"} ${fsdd_root:+--fsdd-root "$fsdd_root"} --out-dir "$data"
  python -m speakernet.bin.validate_data_dir "$data/train"
  python -m speakernet.bin.validate_data_dir --check-trials "$data/test"
fi

trials=$(ls "$data"/test/trials "$data"/test/trials_* 2>/dev/null | tr '\n' ' ')
sv_stages.sh --stage "$(( stage > 1 ? stage : 1 ))" --stop-stage "$stop_stage" --nj "$nj" --nproc "$nproc" \
  --conf "$conf" --train-data "$data/train" --test-data "$data/test" --trials "$trials" \
  --feat-dir "$(dirname "$exp")/fbank" --exp-dir "$exp" --train-overrides "$train_overrides" \
  --average-num "$average_num"

#!/usr/bin/env bash
# CN-Celeb recipe: train on CN-Celeb1 dev (+ CN-Celeb2), evaluate on CN-Celeb1 eval.
#
#   0  data dirs from the official layouts   1  fbank + VAD   2  training
#   3  embeddings (untrained + trained)       4  scoring, EER/minDCF
#
#   ./run.sh --cnceleb1-root /data/CN-Celeb_flac [--cnceleb2-root /data/CN-Celeb2_flac] [--enroll average]
#
# --enroll concat scores the official concatenated enrolment files (eval/enroll);
# --enroll average scores the plain mean of the enroll.map utterances' embeddings (WeSpeaker's
# published CNC-Eval-Avg).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
. ./path.sh

stage=0
stop_stage=4
cnceleb1_root=
cnceleb2_root=
enroll=average
nj=16
nproc=1
conf=conf/ecapa_c512.yaml
data=data
exp=exp/ecapa_c512
average_num=10  # > 0: evaluate the mean weights of the last N epochs (WeSpeaker averages 10)
train_overrides=""
help_message=$(awk 'NR > 1 && /^#/ {sub(/^# ?/, ""); print; next} NR > 1 {exit}' "$(basename "$0")")
. parse_options.sh
. recipe_lib.sh

case "$enroll" in
  concat) enroll_data=$data/eval_enroll; enroll_table=xvector ;;
  average) enroll_data=$data/eval_enroll_map; enroll_table=spk_xvector ;;
  *) echo "$0: --enroll must be concat or average, got '$enroll'" >&2; exit 1 ;;
esac

if [ "$stage" -le 0 ] && [ "$stop_stage" -ge 0 ]; then
  log "Stage 0: data dirs from $cnceleb1_root ${cnceleb2_root:+and $cnceleb2_root }-> $data"
  [ -n "$cnceleb1_root" ] || { echo "$0: give --cnceleb1-root" >&2; exit 1; }
  run_or_skip "$data/.prepared" python -m speakernet.bin.prepare_cnceleb --cnceleb1-root "$cnceleb1_root" \
    ${cnceleb2_root:+--cnceleb2-root "$cnceleb2_root"} --enroll-mode both --out-dir "$data"
  for part in cnceleb_train eval_enroll eval_enroll_map; do
    python -m speakernet.bin.validate_data_dir "$data/$part"
  done
  python -m speakernet.bin.validate_data_dir --check-trials --enroll-dir "$enroll_data" "$data/eval_test"
fi

sv_stages.sh --stage "$(( stage > 1 ? stage : 1 ))" --stop-stage "$stop_stage" --nj "$nj" --nproc "$nproc" \
  --conf "$conf" --train-data "$data/cnceleb_train" --enroll-data "$enroll_data" --enroll-table "$enroll_table" \
  --test-data "$data/eval_test" --trials "$data/eval_test/trials" \
  --feat-dir "$(dirname "$exp")/fbank" --exp-dir "$exp" --train-overrides "$train_overrides" \
  --average-num "$average_num"

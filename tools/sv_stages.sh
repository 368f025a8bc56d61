#!/usr/bin/env bash
# The stages every speaker-verification recipe shares, after its own data preparation:
#
#   1  features    fbank + energy VAD for the train, enrol and test data dirs
#   2  training    under torchrun (--nproc processes: GPUs, or CPU processes with gloo);
#                  re-running continues from the latest checkpoint; optional weight averaging
#   3  embeddings  with the untrained model (checkpoint init) and the trained one (latest)
#   4  scoring     cosine scoring with train-mean subtraction, EER / minDCF table for both
#
# Usage: sv_stages.sh [options]   (options below; --foo-bar sets foo_bar)
set -euo pipefail

stage=1
stop_stage=100
nj=2                  # parallel feature-extraction jobs
nproc=1               # training processes (torchrun --nproc_per_node)
conf=                 # recipe YAML (not called "config", which Kaldi's parse_options.sh reserves)
train_data=           # training data dir
test_data=            # evaluation data dir (test side of the trials)
enroll_data=          # enrolment data dir (default: the test data dir)
enroll_table=xvector  # xvector (one utterance per enrol id) or spk_xvector (average of the enrol id's utts)
trials=               # space-separated trial lists, scored against the enrol/test embeddings
feat_dir=             # where the feature archives go
exp_dir=              # training output dir
train_overrides=""    # extra config overrides key.sub=value for training, space-separated (no spaces in values)
average_num=0         # > 0: evaluate the average of the last N epochs' weights instead of the last epoch
checkpoints=""        # models to evaluate (default: init and latest, or init and avgN)
train_mean_crop=200   # frames of the one centred crop per training utterance for the mean (0: whole utterances)
help_message="Usage: $0 --conf C --train-data D --test-data D --trials 'T ...' --feat-dir F --exp-dir E [options]"

. "$(dirname "${BASH_SOURCE[0]}")/recipe_lib.sh"
. parse_options.sh

for var in conf train_data test_data trials feat_dir exp_dir; do
  [ -n "${!var}" ] || { echo "$0: --${var//_/-} is required" >&2; echo "$help_message" >&2; exit 1; }
done
enroll_data=${enroll_data:-$test_data}
if [ -z "$checkpoints" ]; then
  if [ "$average_num" -gt 0 ]; then checkpoints="init avg$average_num"; else checkpoints="init latest"; fi
fi
eval_dirs=$(printf '%s\n' "$train_data" "$enroll_data" "$test_data" | awk '!seen[$0]++')

if [ "$stage" -le 1 ] && [ "$stop_stage" -ge 1 ]; then
  log "Stage 1: features (fbank + VAD) for: $(echo $eval_dirs)"
  for data in $eval_dirs; do
    name=$(basename "$data")
    [ -f "$data/feats.scp" ] || rm -f "$feat_dir/$name/.done"  # e.g. a regenerated data dir
    run_unless_fresh "$feat_dir/$name/.done" "$data/wav.scp $data/segments $data/utt2spk $data/feats.scp" \
      python -m speakernet.bin.make_features --data-dir "$data" --feat-dir "$feat_dir/$name" --nj "$nj"
  done
fi

if [ "$stage" -le 2 ] && [ "$stop_stage" -ge 2 ]; then
  log "Stage 2: training $conf -> $exp_dir on $nproc process(es)"
  if [ ! -f "$exp_dir/.train.done" ]; then
    resume=()
    [ -f "$exp_dir/checkpoints/latest" ] && resume=(--resume latest) && log "  continuing from the latest checkpoint"
    mkdir -p "$exp_dir/log"
    if [ "$nproc" -gt 1 ]; then
      launcher=(python -m torch.distributed.run --standalone --nproc_per_node="$nproc")
    else
      launcher=(python)
    fi
    # shellcheck disable=SC2086  # overrides are deliberately word-split
    run_logged "$exp_dir/log/train.$(date +%Y%m%d-%H%M%S).log" \
      "${launcher[@]}" -m speakernet.bin.train --conf "$conf" --data-dir "$train_data" --exp-dir "$exp_dir" \
      "${resume[@]}" $train_overrides
    touch "$exp_dir/.train.done"
  else
    log "  skip: $exp_dir is trained (remove $exp_dir/.train.done to train further)"
    if [ "$train_data/feats.scp" -nt "$exp_dir/.train.done" ]; then
      log "  WARNING: $train_data/feats.scp is newer than the trained model: the model was trained on earlier" \
        "data and is kept as it is; use a new --exp (or remove $exp_dir) to train on the current data"
    fi
  fi
  if [ "$average_num" -gt 0 ]; then
    run_unless_fresh "$exp_dir/checkpoints/.avg$average_num.done" "$exp_dir/checkpoints/latest" \
      python -m speakernet.bin.average_model --exp-dir "$exp_dir" --num "$average_num"
  fi
fi

if [ "$stage" -le 3 ] && [ "$stop_stage" -ge 3 ]; then
  log "Stage 3: embeddings with checkpoints: $checkpoints"
  for checkpoint in $checkpoints; do
    for data in $eval_dirs; do
      out="$exp_dir/embeddings/$checkpoint/$(basename "$data")"
      model_file="$exp_dir/checkpoints/$checkpoint.pt"
      [ "$checkpoint" = latest ] && model_file="$exp_dir/checkpoints/latest"
      mode=()
      # The training set only serves the mean: one crop per utterance is enough and batches well
      # (WeSpeaker also embeds one 200-frame crop of vox2_dev for it).
      [ "$data" = "$train_data" ] && [ "$train_mean_crop" -gt 0 ] && \
        mode=(--mode multicrop --num-crops 1 --crop-frames "$train_mean_crop" --batch-size 128)
      run_unless_fresh "$out/.done" "$model_file $data/feats.scp" \
        run_logged "$exp_dir/log/extract.$checkpoint.$(basename "$data").log" \
        python -m speakernet.bin.extract --exp-dir "$exp_dir" --checkpoint "$checkpoint" --data-dir "$data" \
          --out-dir "$out" "${mode[@]}"
    done
  done
fi

if [ "$stage" -le 4 ] && [ "$stop_stage" -ge 4 ]; then
  log "Stage 4: cosine scoring (train-mean subtraction) and metrics"
  score_files=(); names=()
  for checkpoint in $checkpoints; do
    embeddings="$exp_dir/embeddings/$checkpoint"
    for trial_list in $trials; do
      scores="$exp_dir/scores/$checkpoint/$(basename "$trial_list").score"
      mkdir -p "$(dirname "$scores")"
      run_logged "$exp_dir/log/score.$checkpoint.$(basename "$trial_list").log" \
        python -m speakernet.bin.score --trials "$trial_list" \
          --enroll-scp "$embeddings/$(basename "$enroll_data")/$enroll_table.scp" \
          --test-scp "$embeddings/$(basename "$test_data")/xvector.scp" \
          --mean-vec "$embeddings/$(basename "$train_data")/mean.vec" --out "$scores"
      case "$checkpoint" in init) model=untrained ;; latest) model=trained ;; *) model=trained-$checkpoint ;; esac
      score_files+=("$scores"); names+=("$model:$(basename "$trial_list")")
    done
  done
  log "results in $exp_dir/results ('untrained' is the model before its first training step):"
  run_logged "$exp_dir/log/compute_metrics.log" \
    python -m speakernet.bin.compute_metrics --scores "${score_files[@]}" --name "${names[@]}" \
      --out "$exp_dir/results" --threshold-out "$exp_dir/threshold"
  # The CLI (speakernet compare) scores like the last row: same mean subtraction, same threshold.
  cp "$exp_dir/embeddings/$checkpoint/$(basename "$train_data")/mean.vec" "$exp_dir/.mean.vec.tmp"
  mv "$exp_dir/.mean.vec.tmp" "$exp_dir/mean.vec"
fi

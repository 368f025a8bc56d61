#!/usr/bin/env bash
# The stages every speaker-verification recipe shares, after its own data preparation:
#
#   1  features    fbank + energy VAD for the train, enrol, test (and adapt) data dirs
#   2  training    under torchrun (--nproc processes: GPUs, or CPU processes with gloo);
#                  re-running continues from the latest checkpoint; optional weight averaging;
#                  with --finetune-conf, a fine-tuning training (large-margin, or a second stage such as
#                  triplet) from the evaluated model into exp_dir/<finetune-tag>, evaluated as one more model
#                  With --pretrained DIR (an imported model: speakernet.bin.import_model, or another exp dir)
#                  nothing is trained from scratch: DIR's model is evaluated (rows 'pretrained', beside its
#                  architecture freshly initialised, 'untrained'), stage 1 uses DIR's front-end, and
#                  --finetune-conf fine-tunes from it into exp_dir/<finetune-tag>
#   3  embeddings  with the untrained model (checkpoint init) and the trained one (latest)
#   4  cosine      cosine scoring with train-mean subtraction (and with the adapt-data mean)
#   5  AS-norm     adaptive S-norm against the training speakers (and the adapt-data cohort)
#   6  QMF         calibration trials from the training speakers, QMF fit, calibrated LLRs
#   7  PLDA        LDA + two-covariance PLDA trained on the training embeddings
#   8  metrics     one results table: a row per (model, back-end, trial list); the CLI's files: mean.vec,
#                  threshold, and cosine_calibration.json (score -> LLR on the calibration trials, for verify)
#   9  report      exp_dir/report.html: results, DET/ROC, histograms, t-SNE, training curves
#
# Back-ends not listed in --backends are skipped (their stages do nothing).
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
checkpoints=""        # models to evaluate (default: init and latest, or init and avgN; then the fine-tuned one)
pretrained=""         # a model dir to evaluate (and fine-tune from) instead of training one: see stage 2
finetune_conf=""      # YAML of a fine-tuning stage from the evaluated model (e.g. conf/*_lm.yaml); empty: none
finetune_tag=lm       # its name: exp_dir/<tag>, embeddings/<tag>, rows trained-<tag>
finetune_overrides="" # extra config overrides of the fine-tuning training, space-separated
train_mean_crop=200   # frames of the one centred crop per training utterance for the mean (0: whole utterances)
backends="cosine asnorm qmf plda"  # back-ends to run: cosine asnorm snorm qmf plda (qmf needs asnorm)
adapt_data=""         # in-domain data dir: its mean (cosine-adapt) and its cohort (asnorm-adapt) as extra rows
adapt_cohort=auto     # cohort of --adapt-data: speaker (per-speaker means), utterance, or auto (utterance if unlabelled)
top_n=300             # AS-norm cohort scores per side
calibration_trials=5000  # QMF calibration trials per duration condition (as many target as non-target)
plda_dim=200          # LDA dimension before PLDA (capped at the embedding dim and speakers - 1)
p_targets="0.01 0.05" # target priors of the minDCF / actDCF columns (add 0.001 for Kaldi's third)
report=true           # write exp_dir/report.html at the end
help_message="Usage: $0 --conf C --train-data D --test-data D --trials 'T ...' --feat-dir F --exp-dir E [options]"

. "$(dirname "${BASH_SOURCE[0]}")/recipe_lib.sh"
. parse_options.sh

required="train_data test_data trials feat_dir exp_dir"
[ -n "$pretrained" ] || required="conf $required"
for var in $required; do
  [ -n "${!var}" ] || { echo "$0: --${var//_/-} is required" >&2; echo "$help_message" >&2; exit 1; }
done
if [ -n "$pretrained" ]; then
  [ -f "$pretrained/config.yaml" ] && [ -f "$pretrained/checkpoints/latest" ] || {
    echo "$0: --pretrained $pretrained is not a model dir (config.yaml, checkpoints/latest): make one with" \
      "python -m speakernet.bin.import_model" >&2; exit 1; }
  [ "$average_num" -eq 0 ] || { echo "$0: --average-num applies to a training, not to --pretrained" >&2; exit 1; }
fi
enroll_data=${enroll_data:-$test_data}
if [ -z "$checkpoints" ]; then
  if [ "$average_num" -gt 0 ]; then checkpoints="init avg$average_num"; else checkpoints="init latest"; fi
  [ -z "$finetune_conf" ] || checkpoints="$checkpoints $finetune_tag"
fi
case "$finetune_tag" in ''|init|latest|avg*|*/*|*[[:space:]]*)
  echo "$0: --finetune-tag must be a plain name other than init, latest, avgN; got '$finetune_tag'" >&2; exit 1 ;;
esac
[ -z "$finetune_conf" ] || [ -f "$finetune_conf" ] || { echo "$0: --finetune-conf $finetune_conf does not exist" >&2; exit 1; }
# The main model's last evaluated checkpoint (the fine-tuned model is evaluated after it) and the
# fine-tuning's source: the report, the CLI threshold and mean are the main model's.
main_checkpoints=$(for c in $checkpoints; do [ -n "$finetune_conf" ] && [ "$c" = "$finetune_tag" ] || echo "$c"; done)
main_last=$(echo $main_checkpoints | awk '{print $NF}')
finetune_dir="$exp_dir/$finetune_tag"
# checkpoint_exp CHECKPOINT: the exp dir and checkpoint name that extraction loads for CHECKPOINT.
checkpoint_exp() {
  if [ -n "$finetune_conf" ] && [ "$1" = "$finetune_tag" ]; then echo "$finetune_dir latest"
  elif [ -n "$pretrained" ]; then echo "$pretrained $1"
  else echo "$exp_dir $1"; fi
}
check_backends "$backends"
uses() { [[ " $backends " == *" $1 "* ]]; }
case "$top_n" in ''|*[!0-9]*|0|1) echo "$0: --top-n must be an integer of at least 2, got '$top_n'" >&2; exit 1 ;; esac
case "$adapt_cohort" in auto|speaker|utterance) ;; *)
  echo "$0: --adapt-cohort must be auto, speaker or utterance, got '$adapt_cohort'" >&2; exit 1 ;;
esac
for var in train_data test_data enroll_data adapt_data; do
  [ -z "${!var}" ] || [ -d "${!var}" ] || { echo "$0: --${var//_/-} ${!var} is not a directory" >&2; exit 1; }
done
# The same dir given twice (e.g. --adapt-data = --test-data, one path relative, one absolute) is one dir.
eval_dirs=$(for data in "$train_data" "$enroll_data" "$test_data" $adapt_data; do
  printf '%s %s\n' "$(cd "$data" && pwd -P)" "$data"; done | awk '!seen[$1]++ {print $2}')
same_dir() { [ "$(cd "$1" && pwd -P)" = "$(cd "$2" && pwd -P)" ]; }
[ -z "$adapt_data" ] || ! same_dir "$adapt_data" "$test_data" || adapt_data=$test_data
[ -z "$adapt_data" ] || ! same_dir "$adapt_data" "$train_data" || {
  echo "$0: --adapt-data is the training dir; its mean and cohort are the default back-ends already" >&2; exit 1; }
# Embeddings live in embeddings/<checkpoint>/<basename>: two different dirs must not share one.
dup=$(for data in $eval_dirs; do basename "$data"; done | sort | uniq -d | head -1)
[ -z "$dup" ] || { echo "$0: two data dirs are both called '$dup'; give them different names" >&2; exit 1; }
train_name=$(basename "$train_data"); test_name=$(basename "$test_data"); enroll_name=$(basename "$enroll_data")
trained_name=trained; [ -z "$pretrained" ] || trained_name=pretrained
model_name() { case "$1" in init) echo untrained ;; latest) echo "$trained_name" ;; *) echo "trained-$1" ;; esac; }

if [ "$stage" -le 1 ] && [ "$stop_stage" -ge 1 ]; then
  log "Stage 1: features (fbank + VAD) for: $(echo $eval_dirs)"
  frontend=(); [ -z "$pretrained" ] || frontend=(--frontend-from "$pretrained")
  for data in $eval_dirs; do
    name=$(basename "$data")
    [ -f "$data/feats.scp" ] || rm -f "$feat_dir/$name/.done"  # e.g. a regenerated data dir
    run_unless_newer "$feat_dir/$name/.done" "$data/wav.scp $data/segments $data/utt2spk $data/feats.scp" \
      python -m speakernet.bin.make_features --data-dir "$data" --feat-dir "$feat_dir/$name" --nj "$nj" \
        ${frontend[@]+"${frontend[@]}"}
  done
fi

# train_into EXP CONF OVERRIDES [ARGS...]: trains (or continues training) into EXP unless it is done.
train_into() {
  local exp=$1 conf_file=$2 overrides=$3; shift 3
  if [ ! -f "$exp/.train.done" ]; then
    local resume=()
    [ -f "$exp/checkpoints/latest" ] && resume=(--resume latest) && log "  continuing from the latest checkpoint of $exp"
    mkdir -p "$exp/log"
    local launcher=(python)
    [ "$nproc" -gt 1 ] && launcher=(python -m torch.distributed.run --standalone --nproc_per_node="$nproc")
    # shellcheck disable=SC2086  # overrides are deliberately word-split
    run_logged "$exp/log/train.$(date +%Y%m%d-%H%M%S).log" \
      "${launcher[@]}" -m speakernet.bin.train --conf "$conf_file" --data-dir "$train_data" --exp-dir "$exp" \
      ${resume[@]+"${resume[@]}"} "$@" $overrides
    touch "$exp/.train.done"
  else
    log "  skip: $exp is trained (remove $exp/.train.done to train further)"
    if [ "$train_data/feats.scp" -nt "$exp/.train.done" ]; then
      log "  WARNING: $train_data/feats.scp is newer than the trained model: the model was trained on earlier" \
        "data and is kept as it is; use a new --exp (or remove $exp) to train on the current data"
    fi
  fi
}

if [ "$stage" -le 2 ] && [ "$stop_stage" -ge 2 ]; then
  if [ -n "$pretrained" ]; then
    log "Stage 2: no training: evaluating the pretrained model of $pretrained"
  else
    log "Stage 2: training $conf -> $exp_dir on $nproc process(es)"
    train_into "$exp_dir" "$conf" "$train_overrides"
  fi
  if [ "$average_num" -gt 0 ]; then
    run_unless_fresh "$exp_dir/checkpoints/.avg$average_num.done" "$exp_dir/checkpoints/latest" \
      python -m speakernet.bin.average_model --exp-dir "$exp_dir" --num "$average_num"
  fi
  if [ -n "$finetune_conf" ]; then
    source_exp=$exp_dir; [ -z "$pretrained" ] || source_exp=$pretrained
    source_checkpoint="$source_exp/checkpoints/$main_last.pt"
    [ "$main_last" = latest ] && source_checkpoint="$source_exp/checkpoints/$(cat "$source_exp/checkpoints/latest")"
    log "Stage 2 (fine-tuning): $finetune_conf from $source_checkpoint -> $finetune_dir"
    train_into "$finetune_dir" "$finetune_conf" "$finetune_overrides" --init "$source_checkpoint"
  fi
fi

if [ "$stage" -le 3 ] && [ "$stop_stage" -ge 3 ]; then
  log "Stage 3: embeddings with checkpoints: $checkpoints"
  calibration_data=
  if uses qmf || uses cosine; then
    # QMF, and the cosine calibration of the CLI (stage 8), learn from calibration trials of the training
    # speakers, embedded whole (for QMF their duration is the quality measure; the CLI embeds its input whole);
    # the trials do not depend on the model, so they are drawn once.
    calibration_data="$exp_dir/calibration/data"
    run_unless_fresh "$exp_dir/calibration/.done" "$train_data/utt2spk $train_data/utt2num_frames" \
      run_logged "$exp_dir/log/calibration_trials.log" \
      python -m speakernet.bin.qmf trials --train-data "$train_data" --exclude-data $enroll_data $test_data \
        --num-per-condition "$calibration_trials" --out-dir "$exp_dir/calibration"
  fi
  # One extraction process runs every (checkpoint, mode) group that is not done, each group with all
  # its dirs (a line of extract --jobs): torch is imported once, each model built once. Each dir keeps
  # its own .done marker, written with the command line that one dir alone would have, so adding a
  # dir does not redo the others.
  jobs_file="$exp_dir/log/extract.jobs"
  mkdir -p "$exp_dir/log"
  : > "$jobs_file"
  markers=(); signatures=(); checkpoints_run=()
  for checkpoint in $checkpoints; do
    read -r source_exp source_name <<< "$(checkpoint_exp "$checkpoint")"
    model_file="$source_exp/checkpoints/$source_name.pt"
    [ "$source_name" = latest ] && model_file="$source_exp/checkpoints/latest"
    for group in train eval; do
      mode=()
      # The training set only serves the mean, the AS-norm cohort and PLDA: one crop per utterance is
      # enough and batches well (WeSpeaker also embeds one 200-frame crop of vox2_dev for them).
      [ "$group" = train ] && [ "$train_mean_crop" -gt 0 ] && \
        mode=(--mode multicrop --num-crops 1 --crop-frames "$train_mean_crop" --batch-size 128)
      options=(--exp-dir "$source_exp" --checkpoint "$source_name" ${mode[@]+"${mode[@]}"})
      command=(python -m speakernet.bin.extract "${options[@]}")
      data_dirs=(); out_dirs=()
      for data in $eval_dirs $calibration_data; do
        if [ "$data" = "$train_data" ] && [ "$train_mean_crop" -gt 0 ]; then this=train; else this=eval; fi
        [ "$this" = "$group" ] || continue
        name=$(basename "$data")
        [ "$data" = "$calibration_data" ] && name=calibration
        out="$exp_dir/embeddings/$checkpoint/$name"
        signature=$(printf '%q ' "${command[@]}" --data-dir "$data" --out-dir "$out")
        is_fresh "$out/.done" "$model_file $data/feats.scp" "$signature" && continue
        data_dirs+=("$data"); out_dirs+=("$out"); markers+=("$out/.done"); signatures+=("$signature")
      done
      [ ${#data_dirs[@]} -gt 0 ] || continue
      printf '%q ' "${options[@]}" --data-dir "${data_dirs[@]}" --out-dir "${out_dirs[@]}" >> "$jobs_file"
      echo >> "$jobs_file"
      [[ " ${checkpoints_run[*]} " == *" $checkpoint "* ]] || checkpoints_run+=("$checkpoint")
    done
  done
  if [ ${#markers[@]} -gt 0 ]; then
    log "  extracting with ${checkpoints_run[*]}: $(wc -l < "$jobs_file") group(s) of dirs in one process"
    run_logged "$exp_dir/log/extract.log" python -m speakernet.bin.extract --jobs "$jobs_file"
    for index in "${!markers[@]}"; do mark_done "${markers[$index]}" "${signatures[$index]}"; done
  fi
fi

# score_stage BACKEND CHECKPOINT TRIALS INPUTS COMMAND...: runs one scoring command into
# scores/CHECKPOINT/BACKEND/TRIALS.score (its path is appended to COMMAND as --out), with a log and
# a .done marker that INPUTS newer than it invalidate.
score_stage() {
  local backend=$1 checkpoint=$2 trial_list=$3 inputs=$4; shift 4
  local name; name=$(basename "$trial_list")
  local out="$exp_dir/scores/$checkpoint/$backend/$name.score"
  mkdir -p "$(dirname "$out")"
  run_unless_fresh "$exp_dir/scores/$checkpoint/$backend/.$name.done" "$trial_list $inputs" \
    run_logged "$exp_dir/log/score.$backend.$checkpoint.$name.log" "$@" --out "$out"
}
embeddings_of() { echo "$exp_dir/embeddings/$1"; }

if [ "$stage" -le 4 ] && [ "$stop_stage" -ge 4 ] && uses cosine; then
  log "Stage 4: cosine scoring (train-mean subtraction${adapt_data:+; and the mean of $adapt_data})"
  for checkpoint in $checkpoints; do
    emb=$(embeddings_of "$checkpoint")
    for trial_list in $trials; do
      score_stage cosine "$checkpoint" "$trial_list" "$emb/$test_name/.done $emb/$train_name/.done" \
        python -m speakernet.bin.score --trials "$trial_list" --enroll-scp "$emb/$enroll_name/$enroll_table.scp" \
          --test-scp "$emb/$test_name/xvector.scp" --mean-vec "$emb/$train_name/mean.vec"
      if [ -n "$adapt_data" ]; then
        score_stage cosine-adapt "$checkpoint" "$trial_list" "$emb/$test_name/.done $emb/$(basename "$adapt_data")/.done" \
          python -m speakernet.bin.score --trials "$trial_list" --enroll-scp "$emb/$enroll_name/$enroll_table.scp" \
            --test-scp "$emb/$test_name/xvector.scp" --mean-vec "$emb/$(basename "$adapt_data")/mean.vec"
      fi
    done
  done
fi

# asnorm_args CHECKPOINT COHORT_DIR: score_norm's embedding, cohort, mean and duration options.
asnorm_args() {
  local emb; emb=$(embeddings_of "$1")
  local cohort=$2 cohort_name; cohort_name=$(basename "$2")
  local labelled=(--cohort-utt2spk "$cohort/utt2spk")
  if [ "$cohort" = "$adapt_data" ]; then
    local kind=$adapt_cohort
    if [ "$kind" = auto ]; then
      kind=speaker
      [ "$(wc -l < "$cohort/utt2spk")" = "$(wc -l < "$cohort/spk2utt")" ] && kind=utterance
    fi
    [ "$kind" = utterance ] && labelled=()
  fi
  echo --enroll-scp "$emb/$enroll_name/$enroll_table.scp" --test-scp "$emb/$test_name/xvector.scp" \
    --cohort-scp "$emb/$cohort_name/xvector.scp" ${labelled[@]+"${labelled[@]}"} \
    --mean-vec "$emb/$cohort_name/mean.vec" --enroll-data "$enroll_data" --test-data "$test_data"
}

if [ "$stage" -le 5 ] && [ "$stop_stage" -ge 5 ] && { uses asnorm || uses snorm; }; then
  log "Stage 5: score normalisation (top $top_n of the training speakers${adapt_data:+, and of $adapt_data})"
  for checkpoint in $checkpoints; do
    emb=$(embeddings_of "$checkpoint")
    for trial_list in $trials; do
      for cohort in "$train_data" $adapt_data; do
        suffix=; [ "$cohort" = "$adapt_data" ] && suffix=-adapt
        inputs="$emb/$test_name/.done $emb/$(basename "$cohort")/.done"
        # shellcheck disable=SC2046  # asnorm_args' words are options
        uses asnorm && score_stage "asnorm$suffix" "$checkpoint" "$trial_list" "$inputs" \
          python -m speakernet.bin.score_norm --trials "$trial_list" --top-n "$top_n" $(asnorm_args "$checkpoint" "$cohort")
        # shellcheck disable=SC2046
        uses snorm && score_stage "snorm$suffix" "$checkpoint" "$trial_list" "$inputs" \
          python -m speakernet.bin.score_norm --trials "$trial_list" --top-n 0 $(asnorm_args "$checkpoint" "$cohort")
      done
    done
  done
fi

if [ "$stage" -le 6 ] && [ "$stop_stage" -ge 6 ] && uses qmf; then
  cal="$exp_dir/calibration"
  [ -f "$cal/trials" ] || { echo "$0: $cal/trials is missing: run stage 3 (embeddings) first" >&2; exit 1; }
  log "Stage 6: QMF calibration on $(wc -l < "$cal/trials") calibration trials of the training speakers"
  for checkpoint in $checkpoints; do
    emb=$(embeddings_of "$checkpoint")
    mean="$emb/$train_name/mean.vec"
    # The calibration trials are normalised exactly like the evaluation trials (the training-speaker
    # cohort leaves out each utterance's own speaker), then the fit learns from their quality measures.
    run_unless_fresh "$cal/.asnorm.$checkpoint.done" "$emb/calibration/.done $emb/$train_name/.done $cal/trials" \
      run_logged "$exp_dir/log/qmf.score.$checkpoint.log" \
      python -m speakernet.bin.score_norm --trials "$cal/trials" --enroll-scp "$emb/calibration/xvector.scp" \
        --test-scp "$emb/calibration/xvector.scp" --cohort-scp "$emb/$train_name/xvector.scp" \
        --cohort-utt2spk "$train_data/utt2spk" --mean-vec "$mean" --enroll-data "$cal/data" \
        --test-data "$cal/data" --top-n "$top_n" --out "$cal/asnorm.$checkpoint.score"
    run_unless_fresh "$cal/.qmf.$checkpoint.done" "$cal/.asnorm.$checkpoint.done" \
      run_logged "$exp_dir/log/qmf.train.$checkpoint.log" \
      python -m speakernet.bin.qmf train --scores "$cal/asnorm.$checkpoint.score" --out "$cal/qmf.$checkpoint.json"
    for trial_list in $trials; do
      asnorm_scores="$exp_dir/scores/$checkpoint/asnorm/$(basename "$trial_list").score"
      score_stage asnorm+qmf "$checkpoint" "$trial_list" "$asnorm_scores $cal/.qmf.$checkpoint.done" \
        python -m speakernet.bin.qmf apply --model "$cal/qmf.$checkpoint.json" --scores "$asnorm_scores"
    done
  done
fi

if [ "$stage" -le 7 ] && [ "$stop_stage" -ge 7 ] && uses plda; then
  log "Stage 7: LDA ($plda_dim) + PLDA trained on the training embeddings"
  for checkpoint in $checkpoints; do
    emb=$(embeddings_of "$checkpoint")
    model="$exp_dir/plda/plda.$checkpoint.npz"
    mkdir -p "$exp_dir/plda"
    run_unless_fresh "$exp_dir/plda/.$checkpoint.done" "$emb/$train_name/.done" \
      run_logged "$exp_dir/log/plda.train.$checkpoint.log" \
      python -m speakernet.bin.train_plda --scp "$emb/$train_name/xvector.scp" --utt2spk "$train_data/utt2spk" \
        --mean-vec "$emb/$train_name/mean.vec" --lda-dim "$plda_dim" --out "$model"
    counts=()
    [ "$enroll_table" = spk_xvector ] && counts=(--enroll-spk2utt "$enroll_data/spk2utt")
    for trial_list in $trials; do
      score_stage plda "$checkpoint" "$trial_list" "$emb/$test_name/.done $exp_dir/plda/.$checkpoint.done" \
        python -m speakernet.bin.score_plda --trials "$trial_list" --enroll-scp "$emb/$enroll_name/$enroll_table.scp" \
          --test-scp "$emb/$test_name/xvector.scp" --model "$model" ${counts[@]+"${counts[@]}"}
    done
  done
fi

if [ "$stage" -le 8 ] && [ "$stop_stage" -ge 8 ]; then
  log "Stage 8: metrics of every back-end"
  score_files=(); names=(); llr=()
  rows_of() {  # rows_of BACKEND: the score files of one back-end, if it ran
    local checkpoint trial_list file
    for checkpoint in $checkpoints; do
      for trial_list in $trials; do
        file="$exp_dir/scores/$checkpoint/$1/$(basename "$trial_list").score"
        # Only finished steps count: a score file whose step failed or was redone is not reported.
        [ -f "$exp_dir/scores/$checkpoint/$1/.$(basename "$trial_list").done" ] || continue
        score_files+=("$file"); names+=("$(model_name "$checkpoint"):$1:$(basename "$trial_list")")
        case "$1" in *qmf*|plda) llr+=("${names[-1]}") ;; esac
      done
    done
  }
  for backend in cosine cosine-adapt asnorm asnorm-adapt snorm snorm-adapt asnorm+qmf plda; do
    case "$backend" in
      *-adapt) if [ -n "$adapt_data" ] && uses "${backend%-adapt}"; then rows_of "$backend"; fi ;;
      asnorm+qmf) if uses qmf; then rows_of "$backend"; fi ;;
      *) if uses "$backend"; then rows_of "$backend"; fi ;;
    esac
  done
  [ ${#score_files[@]} -gt 0 ] || { echo "$0: no score files to evaluate (run stages 4-7 first)" >&2; exit 1; }
  last=$main_last
  threshold=()
  uses cosine && threshold=(--threshold-out "$exp_dir/threshold" \
    --threshold-of "$(model_name "$last"):cosine:$(basename "$(echo $trials | awk '{print $NF}')")")
  log "results in $exp_dir/results ('untrained' is the model before its first training step):"
  # shellcheck disable=SC2086  # p_targets is a list
  run_logged "$exp_dir/log/compute_metrics.log" \
    python -m speakernet.bin.compute_metrics --scores "${score_files[@]}" --name "${names[@]}" \
      ${llr[@]+--llr "${llr[@]}"} --p-target $p_targets --out "$exp_dir/results" ${threshold[@]+"${threshold[@]}"}
  # The CLI (speakernet compare) scores like the trained cosine row: same mean subtraction, same threshold.
  cp "$exp_dir/embeddings/$last/$train_name/mean.vec" "$exp_dir/.mean.vec.tmp"
  mv "$exp_dir/.mean.vec.tmp" "$exp_dir/mean.vec"
  # ... and speakernet verify calibrates those scores: an affine score -> LLR fit on the same model's cosine
  # scores of the calibration trials (training speakers, never an evaluation speaker), with their non-target
  # scores for thresholds at a chosen false-accept rate.
  cal_emb="$exp_dir/embeddings/$last/calibration"
  if uses cosine && [ -f "$cal_emb/.done" ]; then
    read -r source_exp source_name <<< "$(checkpoint_exp "$last")"
    run_unless_fresh "$exp_dir/.cosine_calibration.done" "$cal_emb/.done $exp_dir/embeddings/$last/$train_name/.done" \
      run_logged "$exp_dir/log/calibrate.log" \
      python -m speakernet.bin.calibrate --trials "$exp_dir/calibration/trials" --scp "$cal_emb/xvector.scp" \
        --mean-vec "$exp_dir/embeddings/$last/$train_name/mean.vec" --exp-dir "$source_exp" \
        --checkpoint "$source_name" --out "$exp_dir/cosine_calibration.json"
  fi
fi

if [ "$stage" -le 9 ] && [ "$stop_stage" -ge 9 ] && [ "$report" = true ]; then
  log "Stage 9: report"
  last=$main_last
  run_logged "$exp_dir/log/report.log" \
    python -m speakernet.bin.report --exp-dir "$exp_dir" --data-dir "$test_data" --checkpoint "$last" \
      --out "$exp_dir/report.html"
  log "report: $exp_dir/report.html"
fi

#!/usr/bin/env bash
# Your own data: train on a Kaldi data dir or on a folder-per-speaker tree, evaluate on any number of sets.
#
#   ./run.sh --train-data DIR --eval "dev=DIR1 test=DIR2,trials=FILE"
#   ./run.sh --train-root ROOT --eval "other=ROOT2"   # trees: <root>/<speaker>/**/<utt>.<wav|flac|mp3|m4a|ogg>
#   ./run.sh --train-data DIR --heldout-speakers 40  # no evaluation data: 40 training speakers become set 'heldout'
#
# An evaluation set is NAME=SRC[,trials=FILE][,enroll=SRC2]: SRC is a Kaldi data dir (wav.scp, utt2spk) or a
# tree; its trials are FILE, else SRC/trials, else a seeded list drawn by speakernet.bin.make_trials (target
# pairs of the set's speakers, up to --num-targets, and --num-nontargets non-target pairs). enroll=SRC2 puts the
# enrolment side in a dir or tree of its own (the trials' first column: its utterances, or its speakers, whose
# utterances are then averaged). Stage 0 copies every data dir you give into --data (Kaldi's copy_data_dir: your
# files are never written) or prepares the trees there, then tools/sv_stages.sh runs 1 features, 2 training,
# 3 embeddings, 4 cosine, 5 AS-norm, 6 QMF, 7 PLDA, 8 results, 9 report. The results table has a row per
# (model, back-end, set), named <model>:<back-end>:<set>, the untrained model beside the trained one; a re-run
# with one more set adds its rows and leaves the other sets' files as they are.
set -euo pipefail
recipe_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$recipe_dir/path.sh"
. "$recipe_dir/cmd.sh"  # job launchers (run.pl or slurm.pl), as in Kaldi
. recipe_lib.sh

stage=0                     # first stage to run
stop_stage=9                # last stage to run
train_data=                 # training data: a Kaldi data dir (wav.scp, utt2spk; segments optional) ...
train_root=                 # ... or a tree <root>/<speaker>/**/<utt>.<ext>
eval=""                     # evaluation sets NAME=SRC[,trials=FILE][,enroll=SRC2], space-separated
heldout_speakers=0          # > 0: hold out this many training speakers (seeded) as the evaluation set 'heldout'
num_targets=10000           # target trials of a set without a trial list (all of them when it has fewer; or all)
num_nontargets=""           # its non-target trials (default: as many as targets)
same_gender=false           # non-targets of the same gender only (needs spk2gender in the data dir)
seed=777                    # seed of the held-out speakers and of the trial lists drawn
extensions=wav,flac,mp3,m4a,ogg  # audio files of a tree
nj=2                        # parallel feature-extraction jobs
nproc=1                     # training processes (torchrun): GPUs, or CPU processes with gloo
nnodes=1                    # machines of the training: > 1, run --stage 2 --stop-stage 2 on each (README)
rdzv_endpoint=""            # HOST:PORT of the rendezvous with --nnodes > 1 (e.g. the first machine's, port 29400)
rdzv_id=""                  # rendezvous id, the same on every machine (default: speakernet-<exp dir name>)
rdzv_backend=c10d           # torchrun --rdzv-backend: c10d, or static (with --node-rank)
node_rank=""                # this machine's number 0..nnodes-1, with --rdzv-backend static only
conf=conf/ecapa_small.yaml  # model conf (conf/ has the pooled recipe's: ECAPA, ResNet34, CAM++, x-vector)
data=data                   # where the copies and prepared data dirs go
exp=exp/ecapa_small         # experiment dir: config, checkpoints, embeddings, scores, results
feat_dir=""                 # feature archives (default: <data>/fbank)
train_overrides=""          # config overrides key.sub=value, space-separated, e.g. "training.epochs=2"
train_threads=0             # torch threads per training process (0: the trainer's default)
average_num=0               # > 0: evaluate the mean weights of the last N epochs
extract_mode=""             # evaluation embeddings: full or multicrop (default: the model config's)
extract_vad=""              # true or false: drop unvoiced frames before embedding (default: the model config's)
extract_num_crops=""        # crops per utterance in multicrop mode (default: the config's)
extract_crop_frames=""      # frames per crop in multicrop mode (default: the config's)
extract_batch_size=""       # utterances per extraction batch (default: the config's)
extract_threads=0           # torch threads of embedding extraction (0: torch's default)
backends="cosine asnorm qmf plda"  # back-ends: cosine asnorm snorm qmf plda (stages 4-7)
top_n=300                   # AS-norm cohort scores per side (capped by the training speakers)
p_targets="0.01 0.05"       # priors of the minDCF/actDCF columns (add 0.001 for Kaldi's third)
pretrained=""               # a model dir (import_model, or another exp) to evaluate and fine-tune instead of training
finetune_conf=""            # conf of a fine-tuning stage from the evaluated model (e.g. conf/ecapa_sb_finetune.yaml)
finetune_overrides=""       # config overrides of the fine-tuning training
finetune_tag=lm             # name of the fine-tuned model: exp/<tag>, rows trained-<tag>
help_message=$(recipe_help "$recipe_dir/run.sh")
. parse_options.sh
check_stage_args "$@"
check_install
resolve_user_paths train_data train_root conf finetune_conf data exp feat_dir pretrained

if [ -n "$train_data" ] && [ -n "$train_root" ]; then
  echo "$0: give --train-data (a data dir) or --train-root (a tree), not both" >&2; exit 1
fi
case "$heldout_speakers" in ''|*[!0-9]*) echo "$0: --heldout-speakers must be a whole number" >&2; exit 1 ;; esac
# A wrong conf is found before the data preparation and the features, not at the training.
if [ "$stage" -le 2 ] && [ "$stop_stage" -ge 2 ] && [ -z "$pretrained" ] && [ ! -f "$conf" ] && [ ! -f "$recipe_dir/$conf" ]; then
  echo "$0: --conf $conf does not exist (the recipe's own: $(cd "$recipe_dir/conf" && echo *.yaml))" >&2; exit 1
fi

# The evaluation sets: name -> source, trial list, enrolment source (paths resolved like the other options).
declare -A eval_src=() eval_trials=() eval_enroll=()
eval_names=()
absolute() { case "$1" in /*|'') echo "$1" ;; *) echo "$PWD/$1" ;; esac; }
for spec in $eval; do
  name=${spec%%=*}
  [ "$name" != "$spec" ] && [ -n "$name" ] || { echo "$0: --eval: '$spec' is not NAME=SRC[,trials=FILE][,enroll=SRC2]" >&2; exit 1; }
  case "$name" in train|train_all|fbank|*_enroll|*[!A-Za-z0-9._-]*|[._-]*)
    echo "$0: --eval: set name '$name' must be letters, digits, '.', '_', '-', and not train, train_all, fbank or *_enroll" >&2
    exit 1 ;;
  esac
  [ -z "${eval_src[$name]-}" ] || { echo "$0: --eval: two sets are called '$name'" >&2; exit 1; }
  IFS=, read -r -a fields <<< "${spec#*=}"
  src=${fields[0]-}; trials=; enroll=
  for field in "${fields[@]:1}"; do
    case "$field" in
      trials=*) trials=${field#*=} ;;
      enroll=*) enroll=${field#*=} ;;
      *) echo "$0: --eval: set '$name': unknown field '$field' (trials=FILE, enroll=SRC)" >&2; exit 1 ;;
    esac
  done
  # Relative paths are the user's, from where run.sh is called (resolve_user_paths' rule).
  src=$(absolute "$src"); trials=$(absolute "$trials"); enroll=$(absolute "$enroll")
  for path in "$src" $enroll; do
    [ -d "$path" ] || { echo "$0: --eval: set '$name': $path is not a directory" >&2; exit 1; }
  done
  [ -z "$trials" ] || [ -f "$trials" ] || { echo "$0: --eval: set '$name': trials=$trials does not exist" >&2; exit 1; }
  eval_names+=("$name"); eval_src[$name]=$src; eval_trials[$name]=$trials; eval_enroll[$name]=$enroll
done
if [ "$heldout_speakers" -gt 0 ]; then
  [ -z "${eval_src[heldout]-}" ] || { echo "$0: --heldout-speakers makes the set 'heldout'; rename yours" >&2; exit 1; }
  eval_names+=(heldout)
fi

caller_dir=$PWD  # relative paths inside your wav.scp files are taken from here
cd "$recipe_dir"
feat_dir=${feat_dir:-$data/fbank}

# prepare_dir SRC DST [TRIALS]: DST becomes a copy of the data dir SRC, or the data dir of the tree SRC.
prepare_dir() {
  local src=$1 dst=$2 trials=${3-}
  if [ -f "$src/utt2spk" ] || [ -f "$src/wav.scp" ]; then
    run_unless_fresh "$dst/.prepared" "$src/wav.scp $src/utt2spk $src/segments $src/trials $src/spk2gender $trials" \
      python -m speakernet.bin.copy_data_dir "$src" "$dst" --relative-to "$caller_dir" ${trials:+--trials "$trials"}
  else
    # A tree lists its files nowhere: its listing (names, sizes, times) is part of the step's signature,
    # so an added, removed or replaced file makes the next run prepare it again.
    local command=(python -m speakernet.bin.prepare_folder --root "$src" --out-dir "$dst" --extensions "$extensions")
    local signature
    signature="$(printf '%q ' "${command[@]}") listing $(find -L "$src" -type f -printf '%P\t%s\t%T@\n' | sort | sha256sum)"
    if ! is_fresh "$dst/.prepared" "$trials" "$signature"; then
      "${command[@]}"
      mark_done "$dst/.prepared" "$signature"
    fi
    # (a changed list replaces the copy; an unchanged one keeps its time, so no score is redone)
    if [ -n "$trials" ] && ! cmp -s "$trials" "$dst/trials"; then
      cp "$trials" "$dst/.trials.tmp" && mv "$dst/.trials.tmp" "$dst/trials"
    fi
  fi
}

# draw_trials DIR: DIR/trials, seeded, unless DIR has a trial list of the user's.
draw_trials() {
  local dir=$1
  [ ! -f "$dir/trials" ] || [ -f "$dir/.trials.drawn" ] || return 0
  local args=(--data-dir "$dir" --out "$dir/trials" --seed "$seed")
  if [ "$num_targets" = all ]; then args+=(--num-targets all); else args+=(--max-targets "$num_targets"); fi
  [ -z "$num_nontargets" ] || args+=(--num-nontargets "$num_nontargets")
  [ "$same_gender" = false ] || args+=(--same-gender)
  run_unless_fresh "$dir/.trials.drawn" "$dir/utt2spk" python -m speakernet.bin.make_trials "${args[@]}"
}

if [ "$stage" -le 0 ] && [ "$stop_stage" -ge 0 ]; then
  [ -n "$train_data$train_root" ] || { echo "$0: --train-data DIR or --train-root ROOT is required" >&2; exit 1; }
  [ ${#eval_names[@]} -gt 0 ] || {
    echo "$0: no evaluation set: give --eval NAME=SRC ... or --heldout-speakers N" >&2; exit 1; }
  log "Stage 0: data dirs -> $data (train${eval_names[*]:+; evaluation sets: ${eval_names[*]}})"
  train_dst=$data/train
  [ "$heldout_speakers" -eq 0 ] || train_dst=$data/train_all
  prepare_dir "${train_data:-$train_root}" "$train_dst"
  if [ "$heldout_speakers" -gt 0 ]; then
    run_unless_fresh "$data/.split.done" "$train_dst/.prepared" \
      python -m speakernet.bin.split_train_eval --data-dir "$train_dst" --train-out "$data/train" \
        --eval-out "$data/heldout" --eval-speakers "$heldout_speakers" --seed "$seed"
    draw_trials "$data/heldout"
  fi
  python -m speakernet.bin.validate_data_dir "$data/train"
  for name in "${eval_names[@]}"; do
    if [ -z "${eval_src[$name]-}" ]; then  # the held-out speakers
      python -m speakernet.bin.validate_data_dir --check-trials "$data/$name"; continue
    fi
    prepare_dir "${eval_src[$name]}" "$data/$name" "${eval_trials[$name]}"
    enroll_check=()
    if [ -n "${eval_enroll[$name]}" ]; then
      prepare_dir "${eval_enroll[$name]}" "$data/${name}_enroll"
      enroll_check=(--enroll-dir "$data/${name}_enroll")
      [ -f "$data/$name/trials" ] || { echo "$0: set '$name' has a separate enrolment dir: give its trials=FILE" \
        "(which enrolment ids go with which test utterances is yours to say)" >&2; exit 1; }
    else
      draw_trials "$data/$name"
    fi
    # The trials are checked where the user wrote them (the copy is the same file), so an error names their file.
    origin=${eval_trials[$name]}
    [ -n "$origin" ] || [ -f "$data/$name/.trials.drawn" ] || [ ! -f "${eval_src[$name]}/trials" ] \
      || origin=${eval_src[$name]}/trials
    python -m speakernet.bin.validate_data_dir --check-trials "$data/$name" ${origin:+--trials "$origin"} \
      ${enroll_check[@]+"${enroll_check[@]}"}
  done
fi

sets=()
for name in "${eval_names[@]}"; do
  spec="$name=$data/$name"
  [ -z "${eval_enroll[$name]-}" ] || spec="$spec,enroll=$data/${name}_enroll"
  [ -d "$data/$name" ] || { echo "$0: $data/$name does not exist: run stage 0" >&2; exit 1; }
  sets+=("$spec")
done
# The conf's augmentation sources, named under the default --data, are under this run's --data.
[ ! -f "$conf" ] || train_overrides="$(source_overrides "$conf" "$data")${train_overrides:+ $train_overrides}"
sv_stages.sh --stage "$(( stage > 1 ? stage : 1 ))" --stop-stage "$stop_stage" --nj "$nj" --nproc "$nproc" \
  --conf "$conf" --train-data "$data/train" --eval-sets "${sets[*]}" \
  --feat-dir "$feat_dir" --exp-dir "$exp" --train-overrides "$train_overrides" --train-threads "$train_threads" \
  --average-num "$average_num" --finetune-conf "$finetune_conf" \
  --finetune-overrides "$finetune_overrides" --finetune-tag "$finetune_tag" --pretrained "$pretrained" \
  --extract-mode "$extract_mode" --extract-vad "$extract_vad" --extract-num-crops "$extract_num_crops" \
  --extract-crop-frames "$extract_crop_frames" --extract-batch-size "$extract_batch_size" \
  --extract-threads "$extract_threads" --backends "$backends" --top-n "$top_n" --p-targets "$p_targets" \
  --nnodes "$nnodes" --rdzv-endpoint "$rdzv_endpoint" --rdzv-id "$rdzv_id" --rdzv-backend "$rdzv_backend" \
  --node-rank "$node_rank"

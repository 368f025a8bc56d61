#!/usr/bin/env bash
# The stages every speaker-verification recipe shares, after its own data preparation:
#
#   1  features    fbank + energy VAD for the train, enrol, test (and adapt) data dirs; when the conf trains from
#                  shards (data.source: shards), also the training data's tar shards (feat_dir/<train>.shards)
#   2  training    under torchrun (--nproc processes: GPUs, or CPU processes with gloo); on several machines
#                  either this stage alone run on each with --nnodes N --rdzv-endpoint HOST:PORT (one c10d
#                  rendezvous; the later stages then on one machine), or --train-cmd "slurm_train.sh --nodes N ..."
#                  (a recipe's cmd.sh), which runs the training as one Slurm job of N nodes;
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
# Evaluation sets: --eval-sets 'NAME=TEST_DIR[,enroll=DIR][,trials=FILE][,enroll_table=T] ...' (space-separated;
# trials default to TEST_DIR/trials; the enrol side defaults to TEST_DIR; enroll_table: xvector when the trials'
# enrol ids are utterances, spk_xvector (the mean of an enrol speaker's utterances) when they are speakers of
# the enrol dir, auto by default). Every output is keyed by the set's NAME: scores/<model>/<back-end>/NAME.score,
# results rows <model>:<back-end>:NAME, features and embeddings of TEST_DIR under NAME (and NAME_enroll), so
# adding a set to a re-run adds its rows and leaves the others' files as they are. The older form
# --test-data D [--enroll-data E] --trials 'T ...' makes one set per trial list, named by its file name, with
# D and E keyed by their basenames. Stage 1 writes feats.scp, vad.scp and utt2num_frames into each data dir
# (Kaldi's convention: give copies if yours must stay untouched, as egs/custom/v1 does).
# --backend-data D: stages 3-8 take the training speakers' mean, AS-norm cohort, PLDA data and QMF calibration
# trials from D instead of --train-data (Kaldi's VoxCeleb v2 trains on clean + augmented copies, its back-end
# on the clean set); stage 1 makes D's features too.
# Back-ends not listed in --backends are skipped (their stages do nothing). Each stage asks only for what it
# needs: features want --feat-dir and the dirs; training --conf, --train-data, --exp-dir; stages 4-9 a set.
#
# Usage: sv_stages.sh [options]   (runs from anywhere; --foo-bar sets foo_bar; --help lists the options)
set -euo pipefail
_tools_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$_tools_dir/../path.sh"
. "$_tools_dir/recipe_lib.sh"

stage=1               # first stage to run
stop_stage=100        # last stage to run
nj=2                  # parallel feature-extraction jobs
feats_cmd="${feats_cmd:-run.pl}"  # what runs them: run.pl (here) or "slurm.pl --partition P ..." (a recipe's cmd.sh)
nproc=1               # training processes per machine (torchrun --nproc-per-node)
nnodes=1              # machines of the training (torchrun --nnodes): > 1, run stage 2 alone on each, same options
rdzv_endpoint=""      # HOST:PORT of the rendezvous with --nnodes > 1: a host all of them reach (e.g. the first)
rdzv_id=""            # rendezvous id, the same on every machine (default: speakernet-<exp dir name>)
rdzv_backend=c10d     # torchrun --rdzv-backend: c10d (any machine may start first), or static (needs --node-rank)
node_rank=""          # this machine's number, 0 to nnodes - 1 (--rdzv-backend static only; c10d assigns it)
train_cmd="${train_cmd:-}"  # what runs stage 2's training: empty (here), or "slurm_train.sh --nodes N ..." (cmd.sh)
conf=                 # recipe YAML (not called "config", which Kaldi's parse_options.sh reserves)
train_data=           # training data dir
backend_data=""       # the back-ends' training set: mean, cohort, PLDA, QMF trials (default: --train-data)
eval_sets=""          # evaluation sets NAME=TEST_DIR[,enroll=DIR][,trials=FILE][,enroll_table=T], space-separated
test_data=            # older form of one evaluation dir (test side of --trials)
enroll_data=          # its enrolment dir (default: the test data dir)
enroll_table=xvector  # xvector (one utterance per enrol id) or spk_xvector (average of the enrol id's utts)
trials=               # space-separated trial lists of --test-data, one set each, named by the file name
feat_dir=             # where the feature archives go
exp_dir=              # training output dir
train_overrides=""    # extra config overrides key.sub=value for training, space-separated (no spaces in values)
train_threads=0       # torch threads per training process (0: the trainer's default, see the conf's training.num_threads)
average_num=0         # > 0: evaluate the average of the last N epochs' weights instead of the last epoch
checkpoints=""        # models to evaluate (default: init and latest, or init and avgN; then the fine-tuned one)
pretrained=""         # a model dir to evaluate (and fine-tune from) instead of training one: see stage 2
finetune_conf=""      # YAML of a fine-tuning stage from the evaluated model (e.g. conf/*_lm.yaml); empty: none
finetune_tag=lm       # its name: exp_dir/<tag>, embeddings/<tag>, rows trained-<tag>
finetune_overrides="" # extra config overrides of the fine-tuning training, space-separated
train_mean_crop=200   # frames of the one centred crop per training utterance for the mean (0: whole utterances)
extract_mode=""       # embeddings of the evaluation dirs: full or multicrop (default: the model config's)
extract_vad=""        # true or false: drop unvoiced frames before embedding (default: the model config's)
extract_num_crops=""  # crops per utterance in multicrop mode (default: the model config's)
extract_crop_frames="" # frames per crop in multicrop mode (default: the model config's)
extract_batch_size="" # utterances per batch (default: the model config's)
extract_threads=0     # torch threads of embedding extraction (0: torch's default)
backends="cosine asnorm qmf plda"  # back-ends to run: cosine asnorm snorm qmf plda (qmf needs asnorm)
adapt_data=""         # in-domain data dir: its mean (cosine-adapt) and its cohort (asnorm-adapt) as extra rows
adapt_cohort=auto     # cohort of --adapt-data: speaker (per-speaker means), utterance, or auto (utterance if unlabelled)
top_n=300             # AS-norm cohort scores per side
calibration_trials=5000  # QMF calibration trials per duration condition (as many target as non-target)
plda_dim=200          # LDA dimension before PLDA (capped at the embedding dim and speakers - 1)
p_targets="0.01 0.05" # target priors of the minDCF / actDCF columns (add 0.001 for Kaldi's third)
threshold_set=""      # the set whose trained cosine EER threshold the CLI uses (default: the last --trials, else the first set)
report=true           # write exp_dir/report.html at the end (its embedding plots: of threshold_set's test dir)
help_message=$(recipe_help "${BASH_SOURCE[0]}" "relative paths are taken from where you run it")
. "$_tools_dir/parse_options.sh"
[ $# -eq 0 ] || { echo "$0: unexpected argument '$1' (options are --name value; see --help)" >&2; exit 1; }

# runs_any N...: some stage N is in [stage, stop_stage].
runs_any() { local n; for n in "$@"; do [ "$stage" -le "$n" ] && [ "$stop_stage" -ge "$n" ] && return 0; done; return 1; }
need() {  # need VAR WHY: VAR must be set
  [ -n "${!1}" ] || { echo "$0: --${1//_/-} is required $2 (see --help)" >&2; exit 1; }
}
for var in stage stop_stage; do
  case "${!var}" in ''|*[!0-9]*) echo "$0: --${var//_/-} must be a stage number, got '${!var}'" >&2; exit 1 ;; esac
done
runs_any 1 && need feat_dir "for stage 1 (features)"
if runs_any 2 && [ -z "$pretrained" ]; then
  need conf "for stage 2 (training)"
  [ -f "$conf" ] || { echo "$0: --conf $conf does not exist" >&2; exit 1; }
fi
if runs_any 2 3 4 5 6 7 8 9; then need train_data "for stages 2-9"; need exp_dir "for stages 2-9"; fi
if [ -n "$pretrained" ]; then
  [ -f "$pretrained/config.yaml" ] && [ -f "$pretrained/checkpoints/latest" ] || {
    echo "$0: --pretrained $pretrained is not a model dir (config.yaml, checkpoints/latest): make one with" \
      "python -m speakernet.bin.import_model" >&2; exit 1; }
  [ "$average_num" -eq 0 ] || { echo "$0: --average-num applies to a training, not to --pretrained" >&2; exit 1; }
fi
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
case "$extract_vad" in ''|true|false) ;; *) echo "$0: --extract-vad must be true or false, got '$extract_vad'" >&2; exit 1 ;; esac
case "$extract_mode" in ''|full|multicrop) ;; *)
  echo "$0: --extract-mode must be full or multicrop, got '$extract_mode'" >&2; exit 1 ;;
esac
for var in train_threads extract_threads extract_num_crops extract_crop_frames extract_batch_size; do
  case "${!var}" in *[!0-9]*) echo "$0: --${var//_/-} must be a whole number, got '${!var}'" >&2; exit 1 ;; esac
done
for var in nproc nnodes; do
  case "${!var}" in ''|*[!0-9]*|0) echo "$0: --${var//_/-} must be a positive whole number, got '${!var}'" >&2; exit 1 ;; esac
done
check_rendezvous() {  # the multi-machine options fit together
  if [ -n "$train_cmd" ]; then
    [ "$nnodes" -eq 1 ] && [ "$nproc" -eq 1 ] && [ -z "$rdzv_endpoint$node_rank" ] || {
      echo "$0: --train-cmd '$train_cmd' launches the machines and processes itself (slurm_train.sh --nodes N" \
        "--gpus-per-node G or --nproc-per-node P): leave --nnodes, --nproc, --rdzv-endpoint and --node-rank out" >&2; exit 1; }
    return 0
  fi
  if [ "$nnodes" -eq 1 ]; then
    [ -z "$rdzv_endpoint$rdzv_id$node_rank" ] || {
      echo "$0: --rdzv-endpoint, --rdzv-id and --node-rank join machines: they need --nnodes > 1" \
        "(one machine trains with torchrun --standalone)" >&2; exit 1; }
    return 0
  fi
  [[ "$rdzv_endpoint" =~ ^[A-Za-z0-9._:-]*[A-Za-z0-9.-]:[0-9]+$ ]] || {
    echo "$0: --nnodes $nnodes needs --rdzv-endpoint HOST:PORT, the same on every machine (a host they all reach," \
      "e.g. the first machine's, and a free port such as 29400); got '$rdzv_endpoint'" >&2; exit 1; }
  case "$rdzv_backend" in
    c10d) [ -z "$node_rank" ] || {
      echo "$0: --node-rank is for --rdzv-backend static; the c10d rendezvous numbers the machines itself" >&2; exit 1; } ;;
    static)
      case "$node_rank" in ''|*[!0-9]*) echo "$0: --rdzv-backend static needs --node-rank 0..$((nnodes - 1))," \
        "different on each machine (0 on the one of --rdzv-endpoint); got '$node_rank'" >&2; exit 1 ;; esac
      [ "$node_rank" -lt "$nnodes" ] || {
        echo "$0: --node-rank $node_rank is not below --nnodes $nnodes" >&2; exit 1; } ;;
    *) echo "$0: --rdzv-backend must be c10d or static, got '$rdzv_backend'" >&2; exit 1 ;;
  esac
  # Every machine runs this script; the stages after the training would run on all of them at once.
  [ "$stage" -eq 2 ] && [ "$stop_stage" -eq 2 ] || {
    echo "$0: with --nnodes $nnodes, run stage 2 alone on each machine (--stage 2 --stop-stage 2), then the later" \
      "stages on one (--stage 2 there finds the training done; it averages with --average-num)" >&2; exit 1; }
}
check_rendezvous
for var in train_data backend_data test_data enroll_data adapt_data; do
  [ -z "${!var}" ] || [ -d "${!var}" ] || { echo "$0: --${var//_/-} ${!var} is not a directory" >&2; exit 1; }
done

# Data dirs by key: each distinct dir (by its real path) has one key, under which its features
# (feat_dir/KEY) and embeddings (embeddings/<model>/KEY) live.
declare -A key_of_dir=() dir_of_key=()
dir_keys=()
# register_dir DIR KEY: gives DIR the key KEY unless it has one already; sets $key_given to its key.
register_dir() {
  local real; real=$(cd "$1" && pwd -P)
  if [ -n "${key_of_dir[$real]-}" ]; then key_given=${key_of_dir[$real]}; return; fi
  [ "$2" != calibration ] || { echo "$0: a data dir may not be called 'calibration' (the QMF calibration" \
    "set's embeddings have that name): $1" >&2; exit 1; }
  if [ -n "${dir_of_key[$2]-}" ]; then
    echo "$0: two data dirs would both be called '$2' (${dir_of_key[$2]} and $1): give them different" \
      "names (set names, and the basenames of --train-data, --adapt-data, --test-data, --enroll-data)" >&2
    exit 1
  fi
  key_of_dir[$real]=$2; dir_of_key[$2]=$1; key_given=$2
}
# Evaluation sets by name.
declare -A set_test=() set_enroll=() set_trials=() set_table=() set_test_key=() set_enroll_key=()
set_names=()
# add_set NAME TEST ENROLL TRIALS TABLE TEST_KEY ENROLL_KEY
add_set() {
  case "$1" in ''|calibration|*[!A-Za-z0-9._-]*|[._-]*)
    echo "$0: evaluation set name '$1' must be letters, digits, '.', '_' or '-' (not starting with one of" \
      "the last three) and not 'calibration'" >&2; exit 1 ;;
  esac
  [ -z "${set_test[$1]-}" ] || { echo "$0: two evaluation sets are called '$1'" >&2; exit 1; }
  local dir
  for dir in "$2" "$3"; do [ -d "$dir" ] || { echo "$0: evaluation set '$1': $dir is not a directory" >&2; exit 1; }; done
  case "$5" in auto|xvector|spk_xvector) ;; *)
    echo "$0: evaluation set '$1': enroll_table must be auto, xvector or spk_xvector, got '$5'" >&2; exit 1 ;;
  esac
  set_names+=("$1"); set_test[$1]=$2; set_enroll[$1]=$3; set_trials[$1]=$4; set_table[$1]=$5
  set_test_key[$1]=$6; set_enroll_key[$1]=$7
}

# The training dir, then the sets' dirs, then the adapt dir, in that order of keys.
[ -z "$train_data" ] || { register_dir "$train_data" "$(basename "$train_data")"; train_name=$key_given; dir_keys+=("$train_name"); }
backend_name=
if [ -n "$backend_data" ]; then
  need train_data "with --backend-data"
  register_dir "$backend_data" "$(basename "$backend_data")"; backend_name=$key_given
  [ "$backend_name" = "$train_name" ] || dir_keys+=("$backend_name")
fi
if [ -n "$test_data" ]; then
  [ -n "$trials" ] || { echo "$0: --test-data needs --trials (or use --eval-sets)" >&2; exit 1; }
  enroll_data=${enroll_data:-$test_data}
  register_dir "$test_data" "$(basename "$test_data")"; test_key=$key_given
  register_dir "$enroll_data" "$(basename "$enroll_data")"; enroll_key=$key_given
  for trial_list in $trials; do
    add_set "$(basename "$trial_list")" "$test_data" "$enroll_data" "$trial_list" "$enroll_table" "$test_key" "$enroll_key"
  done
elif [ -n "$trials$enroll_data" ]; then
  echo "$0: --trials and --enroll-data describe the sets of --test-data, which is not given" >&2; exit 1
fi
for spec in $eval_sets; do
  name=${spec%%=*}
  [ "$name" != "$spec" ] || { echo "$0: --eval-sets: '$spec' is not NAME=TEST_DIR[,enroll=DIR][,trials=FILE]" >&2; exit 1; }
  IFS=, read -r -a fields <<< "${spec#*=}"
  test=${fields[0]-}; enroll=; set_trial_list=; table=auto
  [ -n "$test" ] || { echo "$0: --eval-sets: set '$name' has no test dir" >&2; exit 1; }
  for field in "${fields[@]:1}"; do
    case "$field" in
      enroll=*) enroll=${field#*=} ;;
      trials=*) set_trial_list=${field#*=} ;;
      enroll_table=*) table=${field#*=} ;;
      *) echo "$0: --eval-sets: set '$name': unknown field '$field' (enroll=, trials=, enroll_table=)" >&2; exit 1 ;;
    esac
  done
  [ -d "$test" ] || { echo "$0: evaluation set '$name': $test is not a directory" >&2; exit 1; }
  [ -z "${set_test[$name]-}" ] || { echo "$0: two evaluation sets are called '$name'" >&2; exit 1; }
  register_dir "$test" "$name"; test_key=$key_given
  enroll=${enroll:-$test}
  [ -d "$enroll" ] || { echo "$0: evaluation set '$name': enroll=$enroll is not a directory" >&2; exit 1; }
  register_dir "$enroll" "${name}_enroll"; enroll_key=$key_given
  add_set "$name" "$test" "$enroll" "${set_trial_list:-$test/trials}" "$table" "$test_key" "$enroll_key"
done
for name in ${set_names[@]+"${set_names[@]}"}; do
  for key in "${set_enroll_key[$name]}" "${set_test_key[$name]}"; do
    [[ " ${dir_keys[*]-} " == *" $key "* ]] || dir_keys+=("$key")
  done
done
if [ -n "$adapt_data" ]; then
  adapt_real=$(cd "$adapt_data" && pwd -P)
  [ -z "$train_data" ] || [ "$adapt_real" != "$(cd "$train_data" && pwd -P)" ] || {
    echo "$0: --adapt-data is the training dir; its mean and cohort are the default back-ends already" >&2; exit 1; }
  register_dir "$adapt_data" "$(basename "$adapt_data")"; adapt_name=$key_given
  adapt_data=${dir_of_key[$adapt_name]}  # the same dir given twice (once relative) is one dir
  [[ " ${dir_keys[*]-} " == *" $adapt_name "* ]] || dir_keys+=("$adapt_name")
fi
if runs_any 4 5 6 7 8 9 && [ ${#set_names[@]} -eq 0 ]; then
  echo "$0: stages 4-9 score evaluation sets: give --eval-sets (or --test-data with --trials)" >&2; exit 1
fi
if runs_any 1 && [ ${#dir_keys[@]} -eq 0 ]; then
  echo "$0: stage 1 has no data dir to make features for (--train-data, --eval-sets, ...)" >&2; exit 1
fi
if [ -z "$threshold_set" ] && [ ${#set_names[@]} -gt 0 ]; then
  threshold_set=${set_names[0]}
  [ -z "$trials" ] || threshold_set=$(basename "$(echo $trials | awk '{print $NF}')")
fi
[ -z "$threshold_set" ] || [ -n "${set_test[$threshold_set]-}" ] || {
  echo "$0: --threshold-set '$threshold_set' is not an evaluation set (${set_names[*]-})" >&2; exit 1; }
trained_name=trained; [ -z "$pretrained" ] || trained_name=pretrained
model_name() { case "$1" in init) echo untrained ;; latest) echo "$trained_name" ;; *) echo "trained-$1" ;; esac; }

# enrol_table SET: the embedding table the set's trial list enrols with (xvector or spk_xvector).
enrol_table() {
  local table=${set_table[$1]}
  if [ "$table" = auto ]; then
    local first; first=$(awk 'NF {print $1; exit}' "${set_trials[$1]}")
    table=xvector
    if ! awk -v id="$first" '$1 == id {found = 1; exit} END {exit !found}' "${set_enroll[$1]}/utt2spk" && \
      awk -v id="$first" '$1 == id {found = 1; exit} END {exit !found}' "${set_enroll[$1]}/spk2utt"; then
      table=spk_xvector
    fi
  fi
  echo "$table"
}
check_trials() {  # check_trials: every set's trial list exists (stages 4-9 score them)
  local name
  for name in "${set_names[@]}"; do
    [ -f "${set_trials[$name]}" ] || {
      echo "$0: evaluation set '$name': trial list ${set_trials[$name]} does not exist (give trials=FILE, or make one" \
        "with python -m speakernet.bin.make_trials)" >&2; exit 1; }
    # EER and minDCF need both kinds: found out now, not after the training.
    local missing
    missing=$(awk '$3 == "target" {t = 1} $3 == "nontarget" {n = 1} END {if (!t) print "target"; else if (!n) print "nontarget"}' \
      "${set_trials[$name]}")
    [ -z "$missing" ] || { echo "$0: evaluation set '$name': ${set_trials[$name]} has no $missing trial; EER and minDCF" \
      "need both target and nontarget trials" >&2; exit 1; }
  done
}
runs_any 4 5 6 7 8 9 && check_trials

if [ "$stage" -le 1 ] && [ "$stop_stage" -ge 1 ]; then
  log "Stage 1: features (fbank + VAD) for: ${dir_keys[*]}"
  frontend=(); [ -z "$pretrained" ] || frontend=(--frontend-from "$pretrained")
  for key in "${dir_keys[@]}"; do
    data=${dir_of_key[$key]}
    [ -f "$data/feats.scp" ] || rm -f "$feat_dir/$key/.done"  # e.g. a regenerated data dir
    run_unless_newer "$feat_dir/$key/.done" "$data/wav.scp $data/segments $data/utt2spk $data/feats.scp" \
      python -m speakernet.bin.make_features --data-dir "$data" --feat-dir "$feat_dir/$key" --nj "$nj" \
        --cmd "$feats_cmd" ${frontend[@]+"${frontend[@]}"}
  done
  # A conf (with its overrides) that trains from shards: the training data's audio in tar shards too
  # (a conf that does not load is stage 2's to report, with the reason).
  if [ -n "$conf" ] && [ -z "$pretrained" ] && [ -n "$train_data" ] && [ "$(python -c 'import sys
from speakernet.config import load_config
print(load_config(sys.argv[1], sys.argv[2:], check_components=False)["data"]["source"])' "$conf" $train_overrides \
      2>/dev/null)" = shards ]; then
    log "Stage 1: tar shards of $train_data's audio (data.source: shards)"
    [ -f "$train_data/shards.list" ] || rm -f "$feat_dir/$train_name.shards/.done"
    run_unless_newer "$feat_dir/$train_name.shards/.done" \
      "$train_data/wav.scp $train_data/segments $train_data/utt2spk $train_data/shards.list" \
      python -m speakernet.bin.make_shards --data-dir "$train_data" --shard-dir "$feat_dir/$train_name.shards" \
        --nj "$nj" --cmd "$feats_cmd"
  fi
fi

# train_into EXP CONF OVERRIDES [ARGS...]: trains (or continues training) into EXP unless it is done.
train_into() {
  local exp=$1 conf_file=$2 overrides=$3; shift 3
  # What the training is: the conf's content, the overrides (not the thread count: speed only), the data
  # dir and the extra options. A finished or interrupted training under other settings is never taken
  # for this one, nor continued with them.
  local signature
  signature="conf $(sha256sum < "$conf_file" | cut -d' ' -f1) overrides $overrides data $(cd "$train_data" && pwd -P) $*"
  if [ -f "$exp/.train.settings" ] && [ "$(cat "$exp/.train.settings")" != "$signature" ]; then
    echo "$0: $exp was trained (or started) with other settings than now: the conf, --train-overrides or the" \
      "training data changed (was: $(cat "$exp/.train.settings"); now: $signature). Use a new --exp, or remove $exp" >&2
    exit 1
  fi
  if [ ! -f "$exp/.train.done" ]; then
    mkdir -p "$exp"
    mark_done "$exp/.train.settings" "$signature"  # (whole: the other nodes of a multi-node training read it now)
    local resume=()
    [ -f "$exp/checkpoints/latest" ] && resume=(--resume latest) && log "  continuing from the latest checkpoint of $exp"
    mkdir -p "$exp/log"
    local launcher=(python) threads_override=() log_file
    log_file="$exp/log/train.$(date +%Y%m%d-%H%M%S)"
    [ "$train_threads" -eq 0 ] || threads_override=("training.num_threads=$train_threads")
    if [ "$nnodes" -gt 1 ]; then
      # One rendezvous per training: the fine-tuning's id differs from the main training's.
      local id=${rdzv_id:-speakernet-$(basename "$exp_dir")}
      [ "$exp" = "$exp_dir" ] || id="$id-$(basename "$exp")"
      launcher=(python -m torch.distributed.run --nnodes="$nnodes" --nproc-per-node="$nproc"
        --rdzv-backend="$rdzv_backend" --rdzv-endpoint="$rdzv_endpoint" --rdzv-id="$id"
        ${node_rank:+--node-rank="$node_rank"})
      log_file="$log_file.$(hostname).$$"  # every machine logs its own share
    elif [ "$nproc" -gt 1 ]; then
      launcher=(python -m torch.distributed.run --standalone --nproc-per-node="$nproc")
    fi
    # shellcheck disable=SC2206  # overrides are deliberately word-split
    local command=(-m speakernet.bin.train --conf "$conf_file" --data-dir "$train_data" --exp-dir "$exp"
      ${resume[@]+"${resume[@]}"} "$@" $overrides ${threads_override[@]+"${threads_override[@]}"})
    if [ -n "$train_cmd" ]; then
      # The launcher (slurm_train.sh) writes the job's output to the log and fails when the job fails.
      # shellcheck disable=SC2086  # train_cmd is a command line
      $train_cmd "$log_file.log" "${command[@]}"
    else
      run_logged "$log_file.log" "${launcher[@]}" "${command[@]}"
    fi
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
    where="$nproc process(es)"
    [ "$nnodes" -eq 1 ] || where="$nnodes machines x $nproc process(es), rendezvous $rdzv_endpoint"
    [ -z "$train_cmd" ] || where="$train_cmd"
    log "Stage 2: training $conf -> $exp_dir on $where"
    train_into "$exp_dir" "$conf" "$train_overrides"
  fi
  if [ "$average_num" -gt 0 ] && [ "$nnodes" -gt 1 ]; then
    log "  averaging is left to the run of the later stages on one machine (--stage 2 there)"
  elif [ "$average_num" -gt 0 ]; then
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

# From here on, the back-ends' "training set" is --backend-data: the training's own dir (say, the clean set
# with its augmented copies) has served, and is neither embedded nor scored.
if [ -n "$backend_name" ] && [ "$backend_name" != "$train_name" ]; then
  kept=(); for key in "${dir_keys[@]}"; do [ "$key" = "$train_name" ] || kept+=("$key"); done
  dir_keys=("${kept[@]}")
  train_data=$backend_data; train_name=$backend_name
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
      python -m speakernet.bin.qmf trials --train-data "$train_data" --exclude-data $(for key in "${dir_keys[@]}"; do
          [ "$key" = "$train_name" ] || [ "$key" = "${adapt_name-}" ] || printf '%q ' "${dir_of_key[$key]}"; done) \
        --num-per-condition "$calibration_trials" --out-dir "$exp_dir/calibration"
  fi
  # One extraction process runs every (checkpoint, mode) group that is not done, each group with all
  # its dirs (a line of extract --jobs): torch is imported once, each model built once. Each dir keeps
  # its own .done marker, written with the command line that one dir alone would have, so adding a
  # dir does not redo the others. The marker is written as .done.pending, and extract makes it .done
  # as soon as that dir is written, so a killed run keeps the dirs it finished.
  jobs_file="$exp_dir/log/extract.jobs"
  mkdir -p "$exp_dir/log"
  : > "$jobs_file"
  checkpoints_run=()
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
      # The evaluation dirs are embedded as chosen (by default as the model config says).
      [ "$group" = eval ] && mode=(${extract_mode:+--mode "$extract_mode"} ${extract_vad:+--use-vad "$extract_vad"} \
        ${extract_num_crops:+--num-crops "$extract_num_crops"} ${extract_crop_frames:+--crop-frames "$extract_crop_frames"} \
        ${extract_batch_size:+--batch-size "$extract_batch_size"})
      options=(--exp-dir "$source_exp" --checkpoint "$source_name" ${mode[@]+"${mode[@]}"})
      command=(python -m speakernet.bin.extract "${options[@]}")
      data_dirs=(); out_dirs=()
      for key in "${dir_keys[@]}" ${calibration_data:+calibration}; do
        if [ "$key" = "${train_name-}" ] && [ "$train_mean_crop" -gt 0 ]; then this=train; else this=eval; fi
        [ "$this" = "$group" ] || continue
        data=${dir_of_key[$key]-$calibration_data}
        out="$exp_dir/embeddings/$checkpoint/$key"
        signature=$(printf '%q ' "${command[@]}" --data-dir "$data" --out-dir "$out")
        is_fresh "$out/.done" "$model_file $data/feats.scp" "$signature" && continue
        data_dirs+=("$data"); out_dirs+=("$out")
        mark_done "$out/.done.pending" "$signature"
      done
      [ ${#data_dirs[@]} -gt 0 ] || continue
      # Threads change the speed, not the embeddings: they are not part of a dir's signature.
      threads=(); [ "$extract_threads" -eq 0 ] || threads=(--num-threads "$extract_threads")
      printf '%q ' "${options[@]}" ${threads[@]+"${threads[@]}"} --data-dir "${data_dirs[@]}" --out-dir "${out_dirs[@]}" \
        >> "$jobs_file"
      echo >> "$jobs_file"
      [[ " ${checkpoints_run[*]} " == *" $checkpoint "* ]] || checkpoints_run+=("$checkpoint")
    done
  done
  if [ -s "$jobs_file" ]; then
    log "  extracting with ${checkpoints_run[*]}: $(wc -l < "$jobs_file") group(s) of dirs in one process"
    run_logged "$exp_dir/log/extract.log" python -m speakernet.bin.extract --jobs "$jobs_file"
  fi
fi

# score_stage BACKEND CHECKPOINT SET INPUTS COMMAND...: runs one scoring command of evaluation set SET into
# scores/CHECKPOINT/BACKEND/SET.score (its path is appended to COMMAND as --out), with a log and
# a .done marker that INPUTS (and the set's trial list) newer than it invalidate.
score_stage() {
  local backend=$1 checkpoint=$2 name=$3 inputs=$4; shift 4
  local out="$exp_dir/scores/$checkpoint/$backend/$name.score"
  mkdir -p "$(dirname "$out")"
  run_unless_fresh "$exp_dir/scores/$checkpoint/$backend/.$name.done" "${set_trials[$name]} $inputs" \
    run_logged "$exp_dir/log/score.$backend.$checkpoint.$name.log" "$@" --out "$out"
}
embeddings_of() { echo "$exp_dir/embeddings/$1"; }
# set_args CHECKPOINT SET: the trial list and the enrol and test tables of SET.
set_args() {
  local emb; emb=$(embeddings_of "$1")
  echo --trials "${set_trials[$2]}" --enroll-scp "$emb/${set_enroll_key[$2]}/$(enrol_table "$2").scp" \
    --test-scp "$emb/${set_test_key[$2]}/xvector.scp"
}

if [ "$stage" -le 4 ] && [ "$stop_stage" -ge 4 ] && uses cosine; then
  log "Stage 4: cosine scoring (train-mean subtraction${adapt_data:+; and the mean of $adapt_data})"
  for checkpoint in $checkpoints; do
    emb=$(embeddings_of "$checkpoint")
    for name in "${set_names[@]}"; do
      inputs="$emb/${set_test_key[$name]}/.done $emb/${set_enroll_key[$name]}/.done"
      # shellcheck disable=SC2046  # set_args' words are options
      score_stage cosine "$checkpoint" "$name" "$inputs $emb/$train_name/.done" \
        python -m speakernet.bin.score $(set_args "$checkpoint" "$name") --mean-vec "$emb/$train_name/mean.vec"
      if [ -n "$adapt_data" ]; then
        # shellcheck disable=SC2046
        score_stage cosine-adapt "$checkpoint" "$name" "$inputs $emb/$adapt_name/.done" \
          python -m speakernet.bin.score $(set_args "$checkpoint" "$name") --mean-vec "$emb/$adapt_name/mean.vec"
      fi
    done
  done
fi

# asnorm_args CHECKPOINT SET COHORT_KEY: score_norm's embedding, cohort, mean and duration options.
asnorm_args() {
  local emb; emb=$(embeddings_of "$1")
  local cohort_key=$3 cohort=${dir_of_key[$3]}
  local labelled=(--cohort-utt2spk "$cohort/utt2spk")
  if [ "$cohort_key" = "${adapt_name-}" ]; then
    local kind=$adapt_cohort
    if [ "$kind" = auto ]; then
      kind=speaker
      [ "$(wc -l < "$cohort/utt2spk")" = "$(wc -l < "$cohort/spk2utt")" ] && kind=utterance
    fi
    [ "$kind" = utterance ] && labelled=()
  fi
  echo $(set_args "$1" "$2") --cohort-scp "$emb/$cohort_key/xvector.scp" ${labelled[@]+"${labelled[@]}"} \
    --mean-vec "$emb/$cohort_key/mean.vec" --enroll-data "${set_enroll[$2]}" --test-data "${set_test[$2]}"
}

if [ "$stage" -le 5 ] && [ "$stop_stage" -ge 5 ] && { uses asnorm || uses snorm; }; then
  log "Stage 5: score normalisation (top $top_n of the training speakers${adapt_data:+, and of $adapt_data})"
  for checkpoint in $checkpoints; do
    emb=$(embeddings_of "$checkpoint")
    for name in "${set_names[@]}"; do
      for cohort in "$train_name" ${adapt_name-}; do
        suffix=; [ "$cohort" = "${adapt_name-}" ] && suffix=-adapt
        inputs="$emb/${set_test_key[$name]}/.done $emb/${set_enroll_key[$name]}/.done $emb/$cohort/.done"
        # shellcheck disable=SC2046  # asnorm_args' words are options
        uses asnorm && score_stage "asnorm$suffix" "$checkpoint" "$name" "$inputs" \
          python -m speakernet.bin.score_norm --top-n "$top_n" $(asnorm_args "$checkpoint" "$name" "$cohort")
        # shellcheck disable=SC2046
        uses snorm && score_stage "snorm$suffix" "$checkpoint" "$name" "$inputs" \
          python -m speakernet.bin.score_norm --top-n 0 $(asnorm_args "$checkpoint" "$name" "$cohort")
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
    for name in "${set_names[@]}"; do
      asnorm_scores="$exp_dir/scores/$checkpoint/asnorm/$name.score"
      score_stage asnorm+qmf "$checkpoint" "$name" "$asnorm_scores $cal/.qmf.$checkpoint.done" \
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
    for name in "${set_names[@]}"; do
      counts=()
      [ "$(enrol_table "$name")" = spk_xvector ] && counts=(--enroll-spk2utt "${set_enroll[$name]}/spk2utt")
      # shellcheck disable=SC2046  # set_args' words are options
      score_stage plda "$checkpoint" "$name" \
        "$emb/${set_test_key[$name]}/.done $emb/${set_enroll_key[$name]}/.done $exp_dir/plda/.$checkpoint.done" \
        python -m speakernet.bin.score_plda $(set_args "$checkpoint" "$name") --model "$model" \
          ${counts[@]+"${counts[@]}"}
    done
  done
fi

if [ "$stage" -le 8 ] && [ "$stop_stage" -ge 8 ]; then
  log "Stage 8: metrics of every back-end"
  score_files=(); names=(); llr=()
  rows_of() {  # rows_of BACKEND: the score files of one back-end, if it ran
    local checkpoint name file
    for checkpoint in $checkpoints; do
      for name in "${set_names[@]}"; do
        file="$exp_dir/scores/$checkpoint/$1/$name.score"
        # Only finished steps count: a score file whose step failed or was redone is not reported.
        [ -f "$exp_dir/scores/$checkpoint/$1/.$name.done" ] || continue
        score_files+=("$file"); names+=("$(model_name "$checkpoint"):$1:$name")
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
    --threshold-of "$(model_name "$last"):cosine:$threshold_set")
  log "results in $exp_dir/results ('untrained' is the model before its first training step):"
  # shellcheck disable=SC2086  # p_targets is a list
  run_logged "$exp_dir/log/compute_metrics.log" \
    python -m speakernet.bin.compute_metrics --scores "${score_files[@]}" --name "${names[@]}" \
      ${llr[@]+--llr "${llr[@]}"} --p-target $p_targets --out "$exp_dir/results" ${threshold[@]+"${threshold[@]}"}
  # The CLI (speakernet compare) scores like the trained cosine row: same mean subtraction, same threshold;
  # for a pretrained model, exp_dir/model_dir names it, so that `speakernet verify --exp-dir exp_dir` finds it.
  if [ -n "$pretrained" ]; then
    (cd "$pretrained" && pwd -P) > "$exp_dir/.model_dir.tmp" && mv "$exp_dir/.model_dir.tmp" "$exp_dir/model_dir"
  fi
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
    python -m speakernet.bin.report --exp-dir "$exp_dir" --data-dir "${set_test[$threshold_set]}" \
      --embeddings-name "${set_test_key[$threshold_set]}" --checkpoint "$last" --out "$exp_dir/report.html"
  log "report: $exp_dir/report.html"
fi

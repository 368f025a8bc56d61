# Shell helpers shared by every recipe stage script (source it; do not run it).

# log MESSAGE...: a timestamped line on stderr.
log() {
  echo "$(date '+%Y-%m-%d %H:%M:%S') $*" >&2
}

# run_or_skip MARKER COMMAND...: runs COMMAND unless MARKER exists, then creates MARKER.
# The marker is written only after COMMAND succeeds, so an interrupted stage re-runs.
run_or_skip() {
  run_unless_fresh "$1" "" "${@:2}"
}

# run_unless_fresh MARKER "INPUT..." COMMAND...: like run_or_skip, but also re-runs COMMAND
# when any existing INPUT file is newer than MARKER (e.g. a regenerated data dir), or when the
# command line differs from the one that made MARKER (an option such as --top-n changed), so a
# changed input or option is never answered with a stale output. The marker holds that command line.
run_unless_fresh() {
  local marker=$1 inputs=$2; shift 2
  _run_unless_newer "$marker" "$inputs" "$(printf '%q ' "$@")" "$@"
}

# run_unless_newer MARKER "INPUT..." COMMAND...: run_unless_fresh for commands whose options do not
# change their output (e.g. the number of parallel jobs): only newer inputs make it re-run.
run_unless_newer() {
  local marker=$1 inputs=$2; shift 2
  _run_unless_newer "$marker" "$inputs" "" "$@"
}

_run_unless_newer() {
  local marker=$1 inputs=$2 signature=$3; shift 3
  is_fresh "$marker" "$inputs" "$signature" && return 0
  "$@"
  mark_done "$marker" "$signature"
}

# is_fresh MARKER "INPUT..." SIGNATURE: true (logging a skip) when MARKER exists, no existing INPUT
# is newer and MARKER holds SIGNATURE (when one is given); else removes a stale MARKER, logs why,
# and is false. For steps that run several outputs in one command (mark_done each afterwards).
is_fresh() {
  local marker=$1 inputs=$2 signature=$3 input
  [ -f "$marker" ] || return 1
  local stale=""
  for input in $inputs; do
    if [ -e "$input" ] && [ "$input" -nt "$marker" ]; then stale="$input is newer than $marker"; break; fi
  done
  if [ -z "$stale" ] && [ -n "$signature" ] && [ "$(cat "$marker")" != "$signature" ]; then
    stale="its command line changed since $marker was written"
  fi
  if [ -z "$stale" ]; then
    log "  skip: $(dirname "$marker") is complete (remove $marker to redo it)"
    return 0
  fi
  log "  redo: $stale"
  rm -f "$marker"
  return 1
}

# mark_done MARKER SIGNATURE: records a finished step (after its command succeeded). Written whole, then
# renamed: a reader at the same moment (the other node of a multi-node training) never sees half of it.
mark_done() {
  mkdir -p "$(dirname "$1")"
  printf '%s' "$2" > "$1.$$.tmp" && mv -f "$1.$$.tmp" "$1"
}

# run_logged LOG COMMAND...: runs COMMAND with its output shown on stderr and kept in LOG
# (Kaldi's per-step logs); fails when COMMAND fails.
run_logged() {
  local log_file=$1; shift
  mkdir -p "$(dirname "$log_file")"
  echo "# $*" > "$log_file"
  "$@" 2>&1 | tee -a "$log_file" >&2
}

# recipe_help SCRIPT [PATHS_NOTE]: the script's header comment, then its options with their defaults,
# read from the `name=default  # comment` lines above its help_message line. PATHS_NOTE says how
# relative paths are resolved (default: a recipe's rule, see resolve_user_paths).
recipe_help() {
  awk 'NR > 1 && /^#/ {sub(/^# ?/, ""); print; next} NR > 1 {exit}' "$1"
  echo
  echo "Options (--name value; ${2:-a relative path you give is taken from where you run the script,
the defaults are inside the recipe directory}):"
  awk '/^help_message=/ {exit}
       /^[a-z][a-z0-9_]*=/ && $0 !~ /^recipe_dir=/ {
         line = $0; comment = ""; i = index(line, "#")
         if (i > 0) { comment = substr(line, i + 1); line = substr(line, 1, i - 1) }
         eq = index(line, "="); name = substr(line, 1, eq - 1); value = substr(line, eq + 1)
         gsub(/[ \t]+$/, "", value); gsub(/^ +/, "", comment); gsub(/_/, "-", name)
         if (value == "" || value == "\"\"") value = "(none)"
         printf "  --%-22s %-26s %s\n", name, value, comment
       }' "$1"
}

# resolve_user_paths VAR...: a relative path the user gave on the command line is relative to
# the directory run.sh was called from; defaults stay relative to the recipe directory. One
# exception, for convenience: a --conf (or --finetune-conf) that does not exist there but does in the recipe
# directory (e.g. --conf conf/ecapa_c512.yaml run from anywhere) is the recipe's own conf.
# Call it after parse_options.sh (which lists the options given) and before changing into the
# recipe directory ($recipe_dir).
resolve_user_paths() {
  local var value
  for var in "$@"; do
    value=${!var}
    if [ -n "$value" ] && [[ "${options_given-}" == *" $var "* ]] && [ "${value#/}" = "$value" ]; then
      if { [ "$var" = conf ] || [ "$var" = finetune_conf ]; } && [ ! -e "$value" ] && [ -f "${recipe_dir:?}/$value" ]; then
        continue
      fi
      printf -v "$var" '%s/%s' "$PWD" "$value"
    fi
  done
}

# check_stage_args "$@": stage numbers are integers, in order, no stray arguments remain, and the
# back-ends named in --backends exist.
check_stage_args() {
  if [ $# -gt 0 ]; then
    echo "$0: unexpected argument '$1' (options are --name value; see --help)" >&2
    exit 1
  fi
  local var
  for var in stage stop_stage; do
    case "${!var}" in
      ''|*[!0-9]*) echo "$0: --${var//_/-} must be a stage number, got '${!var}'" >&2; exit 1 ;;
    esac
  done
  if [ "$stage" -gt "$stop_stage" ]; then
    echo "$0: --stage $stage is after --stop-stage $stop_stage: nothing to do" >&2
    exit 1
  fi
  # Back-end names are checked before a long stage 0, not only when sv_stages.sh starts.
  check_backends "${backends-}"
}

# check_backends "NAME ...": every name is a back-end of sv_stages.sh, and qmf comes with asnorm.
check_backends() {
  local backend
  for backend in $1; do
    case "$backend" in
      cosine|asnorm|snorm|qmf|plda) ;;
      *) echo "$0: unknown back-end '$backend' in --backends (choose from: cosine asnorm snorm qmf plda)" >&2
         exit 1 ;;
    esac
  done
  if [[ " $1 " == *" qmf "* && " $1 " != *" asnorm "* ]]; then
    echo "$0: --backends: qmf calibrates AS-norm scores, so it needs asnorm too" >&2
    exit 1
  fi
}

# check_install: fails early, with the fix, when the active Python lacks speakernet's dependencies
# (e.g. a new shell where the venv that tools/install.sh filled is not activated). It looks the
# packages up without importing them: importing torch alone costs seconds at every run.sh.
check_install() {
  local missing
  if ! missing=$(python -c 'import importlib.util, sys
names = "numpy scipy torch kaldiio kaldi_native_fbank soundfile yaml speakernet".split()
print(" ".join(name for name in names if importlib.util.find_spec(name) is None))' 2>/dev/null) || [ -n "$missing" ]; then
    echo "$0: $(command -v python || echo python) cannot import speakernet's dependencies${missing:+ ($missing)};" \
      "run tools/install.sh in this Python environment (or activate the one you installed into)" >&2
    exit 1
  fi
}

# require_ffmpeg_for DIR...: fails, with the fix, when a DIR's wav.scp decodes through ffmpeg pipes
# (VoxCeleb2's m4a, CN-Celeb's merged utterances) and ffmpeg is not on PATH.
require_ffmpeg_for() {
  local dir
  command -v ffmpeg >/dev/null && return 0
  for dir in "$@"; do
    if [ -f "$dir/wav.scp" ] && grep -q ' ffmpeg ' "$dir/wav.scp"; then
      echo "$0: $dir/wav.scp decodes its audio with ffmpeg, which is not on PATH (apt-get install ffmpeg)" >&2
      exit 1
    fi
  done
}

# check_aug_options: the recipe's augmentation options (rir_rooms, rirs_root, offline_aug, aug_per_kind) are
# valid: checked before a long stage 0, not when the copies are due.
check_aug_options() {
  local kind
  case "$rir_rooms" in ''|*[!0-9]*) echo "$0: --rir-rooms must be a whole number, got '$rir_rooms'" >&2; exit 1 ;; esac
  case "$aug_per_kind" in ''|*[!0-9]*)
    echo "$0: --aug-per-kind must be a whole number, got '$aug_per_kind'" >&2; exit 1 ;;
  esac
  if [ -n "$rirs_root" ] && [ "$rir_rooms" -gt 0 ]; then
    echo "$0: give --rirs-root (RIRS_NOISES) or --rir-rooms (simulated rooms), not both" >&2; exit 1
  fi
  for kind in $offline_aug; do
    case "$kind" in reverb|noise|music|babble) ;; *)
      echo "$0: --offline-aug: unknown kind '$kind' (choose from: reverb noise music babble)" >&2; exit 1 ;;
    esac
  done
}

# prepare_aug_sources SOURCES RIR_AUDIO MUSAN_ROOT RIRS_ROOT RIR_ROOMS (see check_aug_options): the source data
# dirs of the augmentation, in SOURCES: musan_music, musan_speech, musan_noise from MUSAN_ROOT; rirs_<room type>
# (rirs_real, noise_isotropic) from RIRS_ROOT (RIRS_NOISES), or instead, with RIR_ROOMS > 0, that many
# simulated small and medium rooms of 10 RIRs each (their audio under RIR_AUDIO). Empty roots and 0
# rooms skip their part.
prepare_aug_sources() {
  local sources=$1 rir_audio=$2 musan_root=$3 rirs_root=$4 rir_rooms=$5
  [ -z "$musan_root" ] || run_unless_fresh "$sources/.musan.done" "" \
    python -m speakernet.bin.prepare_musan --root "$musan_root" --out-dir "$sources"
  [ -z "$rirs_root" ] || run_unless_fresh "$sources/.rirs.done" "" \
    python -m speakernet.bin.prepare_rirs --root "$rirs_root" --out-dir "$sources"
  [ "$rir_rooms" -eq 0 ] || run_unless_fresh "$sources/.rirs.done" "" \
    python -m speakernet.bin.simulate_rirs --out-dir "$rir_audio" --data-dir "$sources" \
      --num-rooms "$rir_rooms" --rirs-per-room 10
}

# offline_augment TRAIN SOURCES "KIND..." PER_KIND NJ (see check_aug_options): Kaldi VoxCeleb v2's offline
# augmentation of the data dir TRAIN: one augmented copy TRAIN_<kind> per kind (reverb: small and medium
# simulated rooms; noise, music, babble: MUSAN's noise, music, speech; the sources in SOURCES, see
# prepare_aug_sources), of PER_KIND random utterances (0: all), then TRAIN_combined = TRAIN + the copies.
# Each step is skipped when done with the same inputs and options.
offline_augment() {
  local train=$1 sources=$2 kinds=$3 per_kind=$4 nj=$5 kind seed=0 dir copies=() kind_sources subset=()
  [ "$per_kind" -eq 0 ] || subset=(--subset "$per_kind")
  for kind in $kinds; do
    case "$kind" in
      reverb) kind_sources="$sources/rirs_smallroom $sources/rirs_mediumroom" ;;
      noise) kind_sources="$sources/musan_noise" ;;
      music) kind_sources="$sources/musan_music" ;;
      babble) kind_sources="$sources/musan_speech" ;;
      *) echo "$0: offline_augment: unknown kind '$kind'" >&2; exit 1 ;;
    esac
    for dir in $kind_sources; do
      [ -f "$dir/wav.scp" ] || { echo "$0: --offline-aug $kind needs the source dir $dir: give stage 0" \
        "--musan-root (noise, music, babble) and --rirs-root or --rir-rooms (reverb)" >&2; exit 1; }
    done
    seed=$((seed + 1))  # each kind draws its own subset and sources
    # shellcheck disable=SC2086  # kind_sources is a list of dirs
    run_unless_fresh "$(dirname "$train")/.aug.$(basename "$train").$kind.done" "$train/wav.scp $train/utt2spk" \
      python -m speakernet.bin.augment_data_dir --data-dir "$train" --out-dir "${train}_$kind" --kind "$kind" \
        --sources $kind_sources --seed "$seed" --nj "$nj" ${subset[@]+"${subset[@]}"}
    copies+=("${train}_$kind")
  done
  run_unless_fresh "$(dirname "$train")/.aug.$(basename "$train").combined.done" \
    "$train/wav.scp $(printf '%s/wav.scp ' "${copies[@]}")" \
    python -m speakernet.bin.combine_data "${train}_combined" "$train" "${copies[@]}"
}

# augmentation_stage DATA TRAIN: the augmentation part of a recipe's stage 0, from its options musan_root,
# rirs_root, rir_rooms, offline_aug, aug_per_kind and nj: the sources in DATA/sources (simulated RIRs' audio
# in DATA/rir_audio) and, with --offline-aug, the copies of DATA/TRAIN and DATA/TRAIN_combined.
augmentation_stage() {
  prepare_aug_sources "$1/sources" "$1/rir_audio" "$musan_root" "$rirs_root" "$rir_rooms"
  if [ -n "$offline_aug" ]; then
    require_ffmpeg_for "$1/$2"
    offline_augment "$1/$2" "$1/sources" "$offline_aug" "$aug_per_kind" "$nj"
    python -m speakernet.bin.validate_data_dir "$1/$2_combined"
  fi
}

# training_dirs DATA TRAIN: sets train_data and backend_data for sv_stages.sh: with offline augmentation
# the model trains on DATA/TRAIN_combined (clean + copies) and the back-ends use the clean DATA/TRAIN.
training_dirs() {
  train_data=$1/$2; backend_data=
  [ -z "$offline_aug" ] || { train_data=$1/$2_combined; backend_data=$1/$2; }
  [ "$stop_stage" -lt 1 ] || require_ffmpeg_for "$train_data"
}

# source_overrides CONF DATA: the training overrides that move CONF's augmentation source dirs, which recipe
# confs name under the default --data (data/sources/...), to DATA's (nothing when DATA is that default).
source_overrides() {
  python -c 'import sys
from speakernet.bin import run_stage
from speakernet.config import relocated_source_overrides
sys.exit(run_stage(lambda: print(" ".join(relocated_source_overrides(sys.argv[1], sys.argv[2])))))' "$1" "$2"
}

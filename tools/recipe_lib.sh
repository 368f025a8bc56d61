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

# mark_done MARKER SIGNATURE: records a finished step (after its command succeeded).
mark_done() {
  mkdir -p "$(dirname "$1")"
  printf '%s' "$2" > "$1"
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

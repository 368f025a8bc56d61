# Shell helpers shared by every recipe stage script (source it; do not run it).

# log MESSAGE...: a timestamped line on stderr.
log() {
  echo "$(date '+%Y-%m-%d %H:%M:%S') $*" >&2
}

# done_marker_ok MARKER: true when a stage already finished (its .done marker exists).
done_marker_ok() {
  [ -f "$1" ]
}

# run_or_skip MARKER COMMAND...: runs COMMAND unless MARKER exists, then creates MARKER.
# The marker is written only after COMMAND succeeds, so an interrupted stage re-runs.
run_or_skip() {
  run_unless_fresh "$1" "" "${@:2}"
}

# run_unless_fresh MARKER "INPUT..." COMMAND...: like run_or_skip, but also re-runs COMMAND
# when any existing INPUT file is newer than MARKER (e.g. a regenerated data dir), so a
# changed input is never answered with a stale output.
run_unless_fresh() {
  local marker=$1 inputs=$2 input; shift 2
  if [ -f "$marker" ]; then
    local stale=""
    for input in $inputs; do
      if [ -e "$input" ] && [ "$input" -nt "$marker" ]; then stale=$input; break; fi
    done
    if [ -z "$stale" ]; then
      log "  skip: $(dirname "$marker") is complete (remove $marker to redo it)"
      return 0
    fi
    log "  redo: $stale is newer than $marker"
    rm -f "$marker"
  fi
  "$@"
  mkdir -p "$(dirname "$marker")"
  touch "$marker"
}

# run_logged LOG COMMAND...: runs COMMAND with its output shown on stderr and kept in LOG
# (Kaldi's per-step logs); fails when COMMAND fails.
run_logged() {
  local log_file=$1; shift
  mkdir -p "$(dirname "$log_file")"
  echo "# $*" > "$log_file"
  "$@" 2>&1 | tee -a "$log_file" >&2
}

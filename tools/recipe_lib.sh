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
  local marker=$1; shift
  if [ -f "$marker" ]; then
    log "  skip: $(dirname "$marker") is complete (remove $marker to redo it)"
    return 0
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

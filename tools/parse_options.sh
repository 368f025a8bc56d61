#!/usr/bin/env bash
# Kaldi-style option parsing for shell scripts (written for speakernet; same semantics as Kaldi's
# utils/parse_options.sh, except that --config is an ordinary option here).
#
# Define every option's default, optionally a help message, then source this file:
#
#   nj=4
#   use_gpu=false
#   help_message="Usage: $0 [--nj N] [--use-gpu true|false] <data-dir>"
#   . tools/parse_options.sh
#   [ $# -eq 1 ] || { echo "$help_message" >&2; exit 1; }
#
# Rules:
#   --foo-bar VALUE and --foo-bar=VALUE set the shell variable foo_bar, which must already be
#     defined (so a typo is an error, not a silently ignored option); the value is kept whole.
#   If the variable currently holds true or false, the new value must be true or false too.
#   --help (or -h) prints $help_message to stdout (so it can be paged) and exits 0.
#   Parsing stops at the first argument that does not start with "--", or after "--".
#   An unknown option, a missing value or a bad boolean prints an error naming the option to
#   stderr and exits 1.
# The remaining positional arguments are left in "$@" of the sourcing script, and the variables
# set on the command line are listed in $options_given (space-separated, e.g. " nj conf ").

options_given=" "
while [ $# -gt 0 ]; do
  case "$1" in
    --help|-h)
      if [ -n "${help_message:-}" ]; then
        printf '%s\n' "$help_message"
      else
        echo "$0: no help message is defined" >&2
      fi
      exit 0
      ;;
    --)
      shift
      break
      ;;
    --?*)
      ;;
    *)
      break
      ;;
  esac

  if [[ "$1" == *=* ]]; then
    _po_option="${1%%=*}"
    _po_value="${1#*=}"
    _po_shift=1
  else
    _po_option="$1"
    if [ $# -lt 2 ]; then
      echo "$0: option $_po_option needs a value" >&2
      exit 1
    fi
    _po_value="$2"
    _po_shift=2
  fi

  _po_variable="${_po_option#--}"
  _po_variable="${_po_variable//-/_}"
  # The name check comes first: an indirect expansion of a non-identifier is a bash error.
  if ! [[ "$_po_variable" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || [ -z "${!_po_variable+defined}" ]; then
    echo "$0: unknown option $_po_option (no variable '$_po_variable' is defined; see --help)" >&2
    exit 1
  fi
  case "${!_po_variable}" in
    true|false)
      case "$_po_value" in
        true|false) ;;
        *)
          echo "$0: option $_po_option takes true or false, got '$_po_value'" >&2
          exit 1
          ;;
      esac
      ;;
  esac
  printf -v "$_po_variable" '%s' "$_po_value"
  options_given+="$_po_variable "
  shift "$_po_shift"
done
unset _po_option _po_value _po_shift _po_variable

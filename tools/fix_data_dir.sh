#!/usr/bin/env bash
# Makes a Kaldi data directory consistent in place (old files go to <data-dir>/.backup/).
# Usage: tools/fix_data_dir.sh <data-dir>
# A thin wrapper: every argument goes to `python -m speakernet.bin.fix_data_dir` (see its --help).
# $PYTHON selects the interpreter (default: python).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PYTHONPATH="${root}${PYTHONPATH:+:${PYTHONPATH}}"
exec "${PYTHON:-python}" -m speakernet.bin.fix_data_dir "$@"

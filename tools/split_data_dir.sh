#!/usr/bin/env bash
# Splits a Kaldi data directory into <data-dir>/split<nj>/{1..nj}/.
# Usage: tools/split_data_dir.sh [--by-speaker] <data-dir> <nj>
# A thin wrapper: every argument goes to `python -m speakernet.bin.split_data_dir` (see its --help).
# $PYTHON selects the interpreter (default: python).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PYTHONPATH="${root}${PYTHONPATH:+:${PYTHONPATH}}"
exec "${PYTHON:-python}" -m speakernet.bin.split_data_dir "$@"

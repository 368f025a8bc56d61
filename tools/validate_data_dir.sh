#!/usr/bin/env bash
# Checks a Kaldi data directory against the data-dir contract; exits 1 listing the problems.
# Usage: tools/validate_data_dir.sh [--need-feats] [--need-vad] [--need-segments] [--check-files-exist] [--check-trials] <data-dir>
# A thin wrapper: every argument goes to `python -m speakernet.bin.validate_data_dir` (see its --help).
# $PYTHON selects the interpreter (default: python).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PYTHONPATH="${root}${PYTHONPATH:+:${PYTHONPATH}}"
exec "${PYTHON:-python}" -m speakernet.bin.validate_data_dir "$@"

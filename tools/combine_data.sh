#!/usr/bin/env bash
# Combines Kaldi data directories (utterance ids must be unique across them).
# Usage: tools/combine_data.sh <dst> <src1> [<src2> ...]
# A thin wrapper: every argument goes to `python -m speakernet.bin.combine_data` (see its --help).
# $PYTHON selects the interpreter (default: python).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PYTHONPATH="${root}${PYTHONPATH:+:${PYTHONPATH}}"
exec "${PYTHON:-python}" -m speakernet.bin.combine_data "$@"

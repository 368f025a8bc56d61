#!/usr/bin/env bash
# Writes a subset of a Kaldi data directory.
# Usage: tools/subset_data_dir.sh [--utt-list F] [--spk-list F] [--num-utts N | --per-spk N] [--first] [--seed S] <src> <dst>
# A thin wrapper: every argument goes to `python -m speakernet.bin.subset_data_dir` (see its --help).
# $PYTHON selects the interpreter (default: python).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PYTHONPATH="${root}${PYTHONPATH:+:${PYTHONPATH}}"
exec "${PYTHON:-python}" -m speakernet.bin.subset_data_dir "$@"

# Sourced by every recipe: puts the toolkit's tools/ on PATH and fixes the locale for sorting.
SPEAKERNET_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export SPEAKERNET_ROOT
export PATH="${SPEAKERNET_ROOT}/tools:${PATH}"
# Run from a checkout even when the package is not installed.
export PYTHONPATH="${SPEAKERNET_ROOT}${PYTHONPATH:+:${PYTHONPATH}}"
export PYTHONUNBUFFERED=1
# Kaldi data dirs are sorted in C-locale byte order.
export LC_ALL=C
# Recipes call `python`; on systems that only ship `python3`, use that.
if ! command -v python >/dev/null 2>&1 && command -v python3 >/dev/null 2>&1; then
  python() { python3 "$@"; }
  export -f python
fi

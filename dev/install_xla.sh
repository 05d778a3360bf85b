#!/usr/bin/env bash
# Creates the XLA environment: a virtualenv with torch 2.9.0, torchvision 0.24.0 and
# torch-xla 2.9.0 (torch_xla's release on PyPI, which requires exactly that torch), then
# installs panoptic2 into it with dev/install.sh, which builds panoptic2._C against that torch.
#
#   bash dev/install_xla.sh
#   PJRT_DEVICE=CPU "$XLA_VENV/bin/python" tools/train_net.py --config-file CFG MODEL.DEVICE xla
#
# On a TPU VM run with PJRT_DEVICE=TPU (libtpu comes with torch-xla's `tpu` extra:
# XLA_EXTRAS=tpu). Without a TPU, PJRT_DEVICE=CPU runs the same programs on XLA:CPU, and
# CPU_NUM_DEVICES=N gives N virtual devices (SPMD tests).
#
# panoptic2._C is built in place (panoptic2/_C*.so), where the main environment's build also
# lives: both use the same Python, hence the same file name. After this script the tree's
# extension is the torch 2.9 build; use a separate clone (or git worktree) for the XLA
# environment, or run dev/install.sh again to switch back.
#
# Environment:
#   XLA_VENV     the virtualenv to create or update (default ~/.cache/panoptic2/xla-venv)
#   PYTHON       the interpreter that creates it (default: python3, else python)
#   XLA_EXTRAS   extras of torch-xla, e.g. "tpu" (default: none)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
TORCH_VERSION=2.9.0
TORCHVISION_VERSION=0.24.0
TORCH_XLA_VERSION=2.9.0
XLA_VENV="${XLA_VENV:-${HOME}/.cache/panoptic2/xla-venv}"
BASE_PYTHON="${PYTHON:-$(command -v python3 || command -v python || true)}"
if [ -z "${BASE_PYTHON}" ]; then
  echo "dev/install_xla.sh: no python found (set PYTHON=/path/to/python)" >&2
  exit 1
fi

echo "dev/install_xla.sh: virtualenv ${XLA_VENV} from ${BASE_PYTHON}"
if [ ! -x "${XLA_VENV}/bin/python" ]; then
  mkdir -p "$(dirname "${XLA_VENV}")"
  "${BASE_PYTHON}" -m venv "${XLA_VENV}"
fi
VENV_PYTHON="${XLA_VENV}/bin/python"
xla_requirement="torch-xla${XLA_EXTRAS:+[${XLA_EXTRAS}]}==${TORCH_XLA_VERSION}"
# One resolver run for the three: torch-xla pins torch, and torchvision must match it.
"${VENV_PYTHON}" -m pip install --disable-pip-version-check \
  "torch==${TORCH_VERSION}" "torchvision==${TORCHVISION_VERSION}" "${xla_requirement}"

PYTHON="${VENV_PYTHON}" bash dev/install.sh

PJRT_DEVICE=CPU "${VENV_PYTHON}" -c "
import torch, torch_xla
import torch_xla.runtime as xr
print('torch', torch.__version__, '| torch_xla', torch_xla.__version__, '|', xr.device_type(),
      'devices:', xr.global_runtime_device_count())
"
echo "dev/install_xla.sh: panoptic2/_C is now built against torch ${TORCH_VERSION}; run" \
  "dev/install.sh to rebuild it for the main environment"

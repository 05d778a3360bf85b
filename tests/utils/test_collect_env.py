"""Tests for panoptic2/utils/collect_env.py."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
import torchvision

import panoptic2
from panoptic2.ops import extension
from panoptic2.utils import collect_env

# Row label -> import name, as the report must show them.
LIBRARY_ROWS = {
    "fvcore": "fvcore",
    "iopath": "iopath",
    "omegaconf": "omegaconf",
    "pycocotools": "pycocotools",
    "cityscapesscripts": "cityscapesscripts",
    "cv2": "cv2",
    "PIL": "PIL",
    "tabulate": "tabulate",
    "tensorboard": "tensorboard",
}


def _rows(report: str) -> dict[str, str]:
    """Parses the tabulate table back into {label: value} (columns are 2+ spaces apart)."""
    rows = {}
    for line in report.splitlines():
        if not line.strip() or set(line) <= {"-", " "}:
            continue
        label, sep, value = re.split(r"(\s{2,})", line.strip(), maxsplit=1)
        assert sep, f"unparsable row {line!r}"
        rows[label] = value
    return rows


def _installed_version(module: str) -> str:
    """Reference version: whatever distribution the metadata says provides ``module``."""
    dists = importlib.metadata.packages_distributions()[module]
    return importlib.metadata.version(dists[0])


@pytest.fixture(scope="module")
def report() -> dict[str, str]:
    return _rows(collect_env.collect_env_info())


def test_library_rows_show_installed_versions(report: dict[str, str]) -> None:
    # omegaconf is reported but optional (the config is built on fvcore's CfgNode).
    distributions = importlib.metadata.packages_distributions()
    for label, module in LIBRARY_ROWS.items():
        expected = _installed_version(module) if module in distributions else "not installed"
        assert report[label] == expected, label
    assert report["numpy"] == np.__version__


def test_core_rows(report: dict[str, str]) -> None:
    assert report["sys.platform"] == sys.platform
    assert report["Python"].startswith(sys.version.split()[0])
    assert report["PyTorch"] == f"{torch.__version__} @ {os.path.dirname(torch.__file__)}"
    tv_dir = os.path.dirname(torchvision.__file__)
    assert report["torchvision"] == f"{torchvision.__version__} @ {tv_dir}"
    assert report["CUDA available"] == str(torch.cuda.is_available())
    assert report["torch CUDA version"] == str(torch.version.cuda)
    if not torch.cuda.is_available():
        assert report["GPU"] == "none"
    else:
        gpu_rows = [k for k in report if k.startswith("GPU ")]
        listed = sorted(int(i) for k in gpu_rows for i in k[4:].split(","))
        assert listed == list(range(torch.cuda.device_count()))
    assert report["panoptic2"].endswith(os.path.dirname(panoptic2.__file__))
    assert report["panoptic2._C"] == extension.extension_status()
    assert report["panoptic2._C CUDA kernels"] == ("yes" if extension.has_cuda_kernels() else "no")


def test_missing_modules_are_reported_not_crashed(monkeypatch: pytest.MonkeyPatch) -> None:
    # A None entry in sys.modules makes `import name` raise ModuleNotFoundError.
    for name in ("pycocotools", "tensorboard", "cv2"):
        monkeypatch.setitem(sys.modules, name, None)

    def broken() -> bool:
        raise RuntimeError("driver exploded")

    monkeypatch.setattr(torch.cuda, "is_available", broken)
    rows = _rows(collect_env.collect_env_info())
    assert rows["pycocotools"] == rows["tensorboard"] == rows["cv2"] == "not installed"
    assert rows["CUDA available"] == "error: RuntimeError: driver exploded"
    # Rows after the failures are still produced, with real values.
    assert rows["tabulate"] == _installed_version("tabulate")


def test_library_version_fallbacks() -> None:
    assert collect_env.library_version("no_such_module_xyz", ("no-such-dist",)) == "not installed"
    # Module importable but no distribution metadata: falls back to __version__.
    assert collect_env.library_version("torch", ("no-such-dist",)) == torch.__version__


def test_main_module_prints_the_report() -> None:
    root = os.path.dirname(os.path.dirname(panoptic2.__file__))
    proc = subprocess.run(
        [sys.executable, "-m", "panoptic2.utils.collect_env"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    rows = _rows(proc.stdout)
    assert rows["fvcore"] == _installed_version("fvcore")
    assert rows["PyTorch"].startswith(torch.__version__)


def test_report_names_torch_xla_without_importing_it() -> None:
    """Importing torch_xla starts an XLA runtime: the report of a CPU or CUDA run must not."""
    code = (
        "import sys\n"
        "from panoptic2.utils.collect_env import collect_env_info\n"
        "print(collect_env_info())\n"
        "print('imported torch_xla:', 'torch_xla' in sys.modules)\n"
    )
    root = os.path.dirname(os.path.dirname(panoptic2.__file__))
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert "imported torch_xla: False" in proc.stdout
    rows = _rows(proc.stdout.rsplit("imported torch_xla", 1)[0])
    if importlib.util.find_spec("torch_xla") is None:
        assert "torch_xla" not in rows
    else:
        assert rows["torch_xla"] == importlib.metadata.version("torch_xla")
        assert "XLA devices" not in rows

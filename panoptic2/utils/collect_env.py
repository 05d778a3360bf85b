"""Environment report for bug reports and CI logs: ``python -m panoptic2.utils.collect_env``.

Every row is computed independently and a failing row shows its error instead of aborting the
report: the report is most needed exactly when the environment is broken.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
from collections import defaultdict
from collections.abc import Callable

from tabulate import tabulate

__all__ = ["collect_env_info", "library_version"]

NOT_INSTALLED = "not installed"

# (row label, import name, distribution names to ask importlib.metadata, in order).
# The distribution, not ``__version__``, is the source of truth: several of these modules
# (cityscapesscripts, pycocotools) have no ``__version__``.
LIBRARIES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("fvcore", "fvcore", ("fvcore",)),
    ("iopath", "iopath", ("iopath",)),
    ("omegaconf", "omegaconf", ("omegaconf",)),
    ("pycocotools", "pycocotools", ("pycocotools",)),
    ("cityscapesscripts", "cityscapesscripts", ("cityscapesScripts",)),
    (
        "cv2",
        "cv2",
        (
            "opencv-python-headless",
            "opencv-python",
            "opencv-contrib-python-headless",
            "opencv-contrib-python",
        ),
    ),
    ("PIL", "PIL", ("Pillow", "pillow-simd")),
    ("tabulate", "tabulate", ("tabulate",)),
    ("tensorboard", "tensorboard", ("tensorboard",)),
)


def _safe(fn: Callable[[], object]) -> str:
    """Runs one row's probe; any exception becomes the row's text instead of a crash."""
    try:
        return str(fn())
    except Exception as e:  # a report must never crash
        return f"error: {type(e).__name__}: {e}"


def library_version(module: str, distributions: tuple[str, ...] = ()) -> str:
    """Version of an importable library, or ``"not installed"``.

    Args:
        module: Import name, e.g. ``"cv2"``.
        distributions: Distribution names that may provide it, e.g. ``("opencv-python",)``;
            the first installed one gives the version.

    Returns:
        The installed distribution's version, else the module's ``__version__``, else
        ``"unknown"``; ``"not installed"`` when the import fails.
    """
    try:
        mod = importlib.import_module(module)
    except Exception:  # a broken install counts as missing here
        return NOT_INSTALLED
    for dist in distributions:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return str(getattr(mod, "__version__", "unknown"))


def _module_with_path(module: str, distribution: str) -> str:
    try:
        mod = importlib.import_module(module)
    except Exception as e:
        return f"{NOT_INSTALLED} ({type(e).__name__}: {e})"
    version = getattr(mod, "__version__", None)
    if version is None:
        try:
            version = importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            version = "unknown"
    return f"{version} @ {os.path.dirname(str(mod.__file__))}"


def _nvcc_version(cuda_home: str | None) -> str:
    """``nvcc --version`` of the toolkit at ``cuda_home`` (or on PATH), shortened."""
    nvcc = os.path.join(cuda_home, "bin", "nvcc") if cuda_home else None
    if nvcc is None or not os.path.isfile(nvcc):
        nvcc = shutil.which("nvcc")
    if nvcc is None:
        return "nvcc not found"
    out = subprocess.run([nvcc, "--version"], capture_output=True, text=True, timeout=60)
    match = re.search(r"release [^\n]*", out.stdout)
    return f"{match.group(0) if match else out.stdout.strip()[-80:]} ({nvcc})"


def _cuda_home_row() -> str:
    from torch.utils import cpp_extension

    home = cpp_extension.CUDA_HOME
    if not home:
        return "not found"
    # Torch guesses CUDA_HOME from the nvcc on PATH; a wrapper script there gives a root
    # without headers, which breaks extension builds. Say so here.
    valid = os.path.isfile(os.path.join(home, "include", "cuda_runtime.h"))
    return home if valid else f"{home} (no include/cuda_runtime.h: set CUDA_HOME to the toolkit)"


def _gpu_rows(torch_mod) -> list[tuple[str, str]]:
    """One row per distinct GPU model, listing the device indices that have it."""
    groups: dict[str, list[str]] = defaultdict(list)
    for i in range(torch_mod.cuda.device_count()):
        major, minor = torch_mod.cuda.get_device_capability(i)
        groups[f"{torch_mod.cuda.get_device_name(i)} (arch={major}.{minor})"].append(str(i))
    return [(f"GPU {','.join(ids)}", name) for name, ids in groups.items()]


def _panoptic2_rows() -> list[tuple[str, str]]:
    try:
        import panoptic2
        from panoptic2.ops import extension
    except Exception as e:
        return [("panoptic2", f"failed to import: {type(e).__name__}: {e}")]

    def version() -> str:
        ver = getattr(panoptic2, "__version__", None)
        if ver is None:
            try:
                ver = importlib.metadata.version("panoptic2")
            except importlib.metadata.PackageNotFoundError:
                ver = "unknown (not installed as a distribution)"
        return f"{ver} @ {os.path.dirname(str(panoptic2.__file__))}"

    def _segment_maps_status() -> str:
        from panoptic2.ops import segments

        return segments.kernels_status()

    def cuda() -> str:
        value = extension.cuda_version()
        return "none" if value is None else extension.format_cuda_version(value)

    return [
        ("panoptic2", _safe(version)),
        ("panoptic2._C", _safe(extension.extension_status)),
        ("panoptic2._segment_maps", _safe(_segment_maps_status)),
        (
            "panoptic2._C CUDA kernels",
            _safe(lambda: "yes" if extension.has_cuda_kernels() else "no"),
        ),
        ("panoptic2._C compiler", _safe(lambda: extension.compiler_version() or "n/a")),
        ("panoptic2._C CUDA version", _safe(cuda)),
    ]


def _torch_rows() -> list[tuple[str, str]]:
    try:
        import torch
    except Exception as e:
        return [("PyTorch", f"{NOT_INSTALLED} ({type(e).__name__}: {e})")]

    rows = [
        ("PyTorch", _safe(lambda: _module_with_path("torch", "torch"))),
        ("PyTorch debug build", _safe(lambda: torch.version.debug)),
        ("torchvision", _safe(lambda: _module_with_path("torchvision", "torchvision"))),
        ("CUDA available", _safe(torch.cuda.is_available)),
    ]
    if getattr(torch.version, "hip", None):
        rows.append(("torch ROCm/HIP version", str(torch.version.hip)))
    else:
        rows.append(("torch CUDA version", str(torch.version.cuda)))
    rows += [
        ("CUDA_HOME", _safe(_cuda_home_row)),
        ("nvcc", _safe(lambda: _nvcc_version(_cuda_home()))),
        ("TORCH_CUDA_ARCH_LIST", os.environ.get("TORCH_CUDA_ARCH_LIST", "not set")),
    ]
    try:
        gpus = _gpu_rows(torch) if torch.cuda.is_available() else []
    except Exception as e:
        gpus = [("GPUs", f"error: {type(e).__name__}: {e}")]
    rows += gpus or [("GPU", "none")]
    rows.append(("cuDNN", _safe(lambda: torch.backends.cudnn.version() or "not available")))
    return rows


def _xla_rows() -> list[tuple[str, str]]:
    """torch_xla's version, read from its package metadata without importing it (the import
    starts an XLA runtime); its devices too when this process has imported it already."""
    from panoptic2.utils.xla import xla_installed_version

    version = xla_installed_version()
    if version is None:
        return []
    rows = [("torch_xla", version)]
    if "torch_xla" in sys.modules:

        def devices() -> str:
            import torch_xla.runtime as xr

            spmd = ", SPMD" if xr.is_spmd() else ""
            return f"{xr.device_type()} x{xr.global_runtime_device_count()}{spmd}"

        rows.append(("XLA devices", _safe(devices)))
    return rows


def _cuda_home() -> str | None:
    from torch.utils import cpp_extension

    return cpp_extension.CUDA_HOME


def collect_env_info() -> str:
    """Collects versions and build facts of everything panoptic2 depends on.

    Returns:
        A table (one ``name | value`` row per fact) ready to print.
    """
    rows: list[tuple[str, str]] = [
        ("sys.platform", sys.platform),
        ("Python", sys.version.replace("\n", " ")),
        ("numpy", library_version("numpy", ("numpy",))),
    ]
    rows += _panoptic2_rows()
    rows += _torch_rows()
    rows += _xla_rows()
    rows += [(label, library_version(mod, dists)) for label, mod, dists in LIBRARIES]
    return tabulate(rows, tablefmt="simple")


def main() -> None:
    print(collect_env_info())


if __name__ == "__main__":
    main()

"""Tests for panoptic2/ops/extension.py and the build facts of the compiled ``panoptic2._C``."""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator

import pytest
import torch

import panoptic2
from panoptic2.ops import extension

PACKAGE_DIR = os.path.dirname(panoptic2.__file__)
# find_spec only locates the library; loading it stays the business of the code under test.
IS_BUILT = importlib.util.find_spec("panoptic2._C") is not None
# CI sets this so that a missing build fails instead of skipping.
REQUIRE_EXT = os.environ.get("PANOPTIC2_REQUIRE_EXT", "0") == "1"

needs_build = pytest.mark.skipif(
    not IS_BUILT and not REQUIRE_EXT,
    reason="panoptic2._C is not built (python setup.py build_ext --inplace)",
)


@pytest.fixture
def fresh_extension(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[logging.LogRecord]]:
    """Forgets any earlier load attempt and captures the extension logger's records.

    A handler on the logger itself (not caplog) keeps this independent of whether some other
    test configured the ``panoptic2`` logger not to propagate.
    """
    monkeypatch.setattr(extension, "_result", None)
    monkeypatch.setattr(extension, "_warned", False)
    records: list[logging.LogRecord] = []

    class _ListHandler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = _ListHandler(level=logging.DEBUG)
    log = logging.getLogger("panoptic2.ops.extension")
    log.addHandler(handler)
    monkeypatch.setattr(log, "level", logging.DEBUG)
    yield records
    log.removeHandler(handler)


def _nvcc_release() -> tuple[int, int] | None:
    """(major, minor) of the CUDA toolkit's nvcc, found the way setup.py looks for it."""
    candidates = [
        os.path.join(os.environ[var], "bin", "nvcc")
        for var in ("CUDA_HOME", "CUDA_PATH")
        if os.environ.get(var)
    ]
    candidates += [shutil.which("nvcc"), "/usr/local/cuda/bin/nvcc"]
    for nvcc in filter(None, candidates):
        if not os.path.isfile(nvcc):
            continue
        out = subprocess.run([nvcc, "--version"], capture_output=True, text=True).stdout
        match = re.search(r"release (\d+)\.(\d+)", out)
        if match:
            return int(match.group(1)), int(match.group(2))
    return None


def _binary() -> bytes:
    """Bytes of the shared library this interpreter loads as ``panoptic2._C``."""
    spec = importlib.util.find_spec("panoptic2._C")
    assert spec is not None and spec.origin, "panoptic2._C is not built"
    with open(spec.origin, "rb") as f:
        return f.read()


# --------------------------------------------------------------------------------------------
# The built extension.
# --------------------------------------------------------------------------------------------


@needs_build
def test_extension_loads_and_registers_schemas() -> None:
    extension.require_ops()  # raises with the load error if the build is broken
    assert extension.has_ops()
    assert "panoptic2.ops._fake" in sys.modules, "a successful load registers the fake kernels"
    status = extension.extension_status()
    assert status.startswith("OK (") and importlib.util.find_spec("panoptic2._C").origin in status
    schemas = {
        name: str(getattr(torch.ops.panoptic2, name).default._schema)
        for name in ("cuda_version", "compiler_version", "has_cuda_kernels", "parallel_cpu_kernels")
    }
    assert schemas == {
        "cuda_version": "panoptic2::cuda_version() -> int",
        "compiler_version": "panoptic2::compiler_version() -> str",
        "has_cuda_kernels": "panoptic2::has_cuda_kernels() -> bool",
        "parallel_cpu_kernels": "panoptic2::parallel_cpu_kernels() -> bool",
    }


@needs_build
def test_compiler_version_matches_binary() -> None:
    """The op's answer agrees with the compiler signature the linker left in the binary."""
    version = extension.compiler_version()
    assert version == torch.ops.panoptic2.compiler_version()
    match = re.fullmatch(r"(GCC|clang) (\d+)\.(\d+)", version or "")
    if match is None:
        pytest.skip(f"no ELF .comment check for compiler {version!r}")
    family, major, minor = match.groups()
    pattern = rb"GCC: \([^)]*\) (\d+)\.(\d+)" if family == "GCC" else rb"clang version (\d+)\.(\d+)"
    found = {(int(a), int(b)) for a, b in re.findall(pattern, _binary())}
    assert (int(major), int(minor)) in found, f"{version} not among {found}"


@needs_build
def test_cpu_kernels_are_parallel_where_torch_uses_openmp() -> None:
    """With an OpenMP torch, at::parallel_for is compiled into _C itself: without -fopenmp the
    CPU kernels would silently run on one thread (setup.py passes it on Linux)."""
    linked = re.search(rb"libgomp\.so", _binary()) is not None
    assert extension.parallel_cpu_kernels() == bool(torch.ops.panoptic2.parallel_cpu_kernels())
    if torch.backends.openmp.is_available():
        assert extension.parallel_cpu_kernels() == linked
    if torch.backends.openmp.is_available() and sys.platform.startswith("linux"):
        assert extension.parallel_cpu_kernels(), "rebuild _C: setup.py compiles it with -fopenmp"
        assert "CPU kernels: parallel" in extension.extension_status()


@needs_build
def test_cuda_queries_are_consistent_with_the_build() -> None:
    raw = int(torch.ops.panoptic2.cuda_version())
    kernels = extension.has_cuda_kernels()
    assert kernels == bool(torch.ops.panoptic2.has_cuda_kernels())
    # The binary links the CUDA runtime exactly when the CUDA kernels were compiled in.
    linked = re.search(rb"libcudart\.so\.(\d+)", _binary())
    assert kernels == (linked is not None)
    if not kernels:
        assert raw == -1 and extension.cuda_version() is None
        return
    assert extension.cuda_version() == raw > 0
    major, minor = raw // 1000, (raw % 1000) // 10
    assert int(linked.group(1)) == major
    assert "CUDA kernels: CUDA " + f"{major}.{minor}" in extension.extension_status()
    if os.environ.get("FORCE_CUDA", "0") != "1":
        # setup.py only builds the kernels when torch's CUDA major matches the toolkit's.
        assert torch.version.cuda is not None
        assert int(torch.version.cuda.split(".")[0]) == major
    nvcc = _nvcc_release()
    if nvcc is None:
        pytest.skip("nvcc not found: cannot compare the CUDA version with the toolkit")
    assert (major, minor) == nvcc, "cuda_version() differs from the toolkit's nvcc --version"


@needs_build
def test_cuda_kernels_built_when_toolkit_matches_torch() -> None:
    """Checks setup.py's decision: a CUDA torch plus a matching nvcc means CUDA kernels."""
    nvcc = _nvcc_release()
    if torch.version.cuda is None or nvcc is None:
        pytest.skip("needs a CUDA build of torch and an nvcc")
    if nvcc[0] != int(torch.version.cuda.split(".")[0]):
        assert not extension.has_cuda_kernels() or os.environ.get("FORCE_CUDA") == "1"
    else:
        assert extension.has_cuda_kernels(), (
            f"nvcc {nvcc[0]}.{nvcc[1]} matches torch's CUDA {torch.version.cuda} but _C has no "
            "CUDA kernels: rebuild with `python setup.py build_ext --inplace`"
        )


def test_import_does_not_load_extension() -> None:
    """``import panoptic2`` and ``import panoptic2.ops`` must not touch ``_C``: it is loaded on
    first use only, and the fake kernels are registered with it, once."""
    code = (
        "import sys, panoptic2, panoptic2.ops, panoptic2.ops.extension as e\n"
        "import panoptic2.modeling.postprocessing, panoptic2.data.panoptic_label\n"
        "import panoptic2.evaluation.panoptic_quality\n"
        "assert 'panoptic2._C' not in sys.modules, 'loaded at import'\n"
        "assert 'panoptic2.ops._fake' not in sys.modules, 'fake kernels imported at import'\n"
        "assert e._result is None\n"
        "ok = e.has_ops()\n"
        "assert e._result is not None\n"
        "assert ('panoptic2.ops._fake' in sys.modules) == ok\n"
    )
    root = os.path.dirname(PACKAGE_DIR)
    proc = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_import_without_built_extension_works() -> None:
    """A missing ``_C`` makes the ops fall back instead of failing at import or at use."""
    code = (
        "import sys\n"
        "sys.modules['panoptic2._C'] = None\n"
        "import numpy as np, torch, panoptic2.ops as ops\n"
        "assert not ops.extension.has_ops() and not ops.uses_kernels(torch.device('cpu'))\n"
        "ins = ops.group_pixels(torch.zeros(1, 2, dtype=torch.long), torch.zeros(2, 2, 3),\n"
        "                       torch.ones(2, 3, dtype=torch.bool))\n"
        "assert ins.tolist() == [[1, 1, 1], [1, 1, 1]]\n"
        "gt = np.array([[1] * 6 + [2] * 4]); values = ops.count_segment_pairs(gt, gt)\n"
        "assert [v.tolist() for v in values] == [[1, 2], [1, 2], [6, 4]]\n"
        "assert 'panoptic2.ops._fake' not in sys.modules\n"
    )
    root = os.path.dirname(PACKAGE_DIR)
    proc = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "panoptic2._C not available" in proc.stderr


# --------------------------------------------------------------------------------------------
# A missing or broken extension.
# --------------------------------------------------------------------------------------------

MISMATCH = "/x/panoptic2/_C.so: undefined symbol: _ZN3c1017RegisterOperatorsD1Ev"  # torch mismatch


def test_missing_extension_warns_once_and_falls_back(
    fresh_extension: list[logging.LogRecord], monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []

    def broken_import() -> str:
        calls.append(1)
        raise ImportError(MISMATCH)

    monkeypatch.setattr(extension, "_import_extension", broken_import)
    assert [extension.has_ops() for _ in range(3)] == [False, False, False]
    assert extension.cuda_version() is None
    assert extension.compiler_version() is None
    assert extension.has_cuda_kernels() is False
    assert extension.parallel_cpu_kernels() is False
    assert not extension.has_ops()
    assert len(calls) == 1, "the extension must be imported once per process"

    warnings = [r for r in fresh_extension if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    message = warnings[0].getMessage()
    assert message.startswith("panoptic2._C not available (ImportError: ")
    assert "using pure-PyTorch fallbacks" in message
    assert "undefined symbol" in message and "python setup.py build_ext --inplace" in message

    status = extension.extension_status()
    assert status.startswith("not available: ImportError: ")
    assert "undefined symbol" in status and torch.__version__ in status
    assert "python setup.py build_ext --inplace" in status and "\n" not in status


def test_require_ops_raises_with_hint(
    fresh_extension: list[logging.LogRecord], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_import() -> str:
        raise OSError("bad ELF")

    monkeypatch.setattr(extension, "_import_extension", broken_import)
    with pytest.raises(RuntimeError, match=r"not available \(OSError: bad ELF\)") as info:
        extension.require_ops()
    assert "python setup.py build_ext --inplace" in str(info.value)
    assert not fresh_extension, "require_ops raises instead of warning"


def test_unbuilt_extension_is_reported_as_not_built(
    fresh_extension: list[logging.LogRecord], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A None entry makes the real import machinery raise ModuleNotFoundError for _C.
    monkeypatch.setitem(sys.modules, "panoptic2._C", None)
    assert extension.has_ops() is False
    status = extension.extension_status()
    assert "ModuleNotFoundError" in status and "(the extension is not built)" in status
    assert len(fresh_extension) == 1


@needs_build
def test_stale_build_without_ops_is_rejected(
    fresh_extension: list[logging.LogRecord], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A library that imports but does not register the ops counts as unavailable."""
    import panoptic2._C  # noqa: F401 - registers the real ops first

    class _NoOps:
        def __getattr__(self, name: str) -> object:
            raise AttributeError(f"no op {name}")

    monkeypatch.setattr(torch.ops, "panoptic2", _NoOps())
    assert not extension.has_ops()
    assert "does not register torch.ops.panoptic2" in extension.extension_status()


@needs_build
@pytest.mark.parametrize(
    "absent", [("merge_semantic_and_instance",), ("compiler_version", "group_pixels")]
)
def test_stale_build_lacking_some_ops_is_rejected_naming_them(
    fresh_extension: list[logging.LogRecord], monkeypatch: pytest.MonkeyPatch, absent: tuple
) -> None:
    """One check for all ops: a build lacking any op the Python side uses is unavailable."""
    import panoptic2._C  # noqa: F401 - registers the real ops first

    real = torch.ops.panoptic2

    class _SomeOps:
        def __getattr__(self, name: str) -> object:
            if name in absent:
                raise AttributeError(f"no op {name}")
            return getattr(real, name)

    monkeypatch.setattr(torch.ops, "panoptic2", _SomeOps())
    assert not extension.has_ops()
    assert not extension.has_cuda_kernels() and extension.cuda_version() is None
    status = extension.extension_status()
    assert status.startswith("not available: ImportError: ")
    assert f"does not register torch.ops.panoptic2.{{{', '.join(absent)}}}" in status
    for name in set(extension.REQUIRED_OPS) - set(absent):
        assert name not in status
    warnings = [r for r in fresh_extension if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and ", ".join(absent) in warnings[0].getMessage()
    with pytest.raises(RuntimeError, match=absent[0]):
        extension.require_ops()


@needs_build
def test_required_ops_are_all_registered() -> None:
    extension.require_ops()
    assert extension._missing_ops() == []
    assert set(extension.REQUIRED_OPS) >= {
        "group_pixels",
        "merge_semantic_and_instance",
    }


def test_format_cuda_version() -> None:
    assert extension.format_cuda_version(13000) == "13.0"
    assert extension.format_cuda_version(12060) == "12.6"
    assert extension.format_cuda_version(11080) == "11.8"

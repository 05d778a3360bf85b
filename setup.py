"""Builds the compiled extensions ``panoptic2._C`` and ``panoptic2._segment_maps``.

Package metadata (name, version, dependencies) lives in ``pyproject.toml``; this file only
describes the C++/CUDA extension, because that needs the installed torch to configure.

Usage:
    bash dev/install.sh                      # the supported install (editable, with dev extras)
    python setup.py build_ext --inplace      # rebuild both next to the sources

Environment variables:
    FORCE_CUDA=1            build the CUDA kernels even if torch or the toolkit look unusable.
    CUDA_HOME / CUDA_PATH   the CUDA toolkit to use (otherwise found from ``nvcc``).
    TORCH_CUDA_ARCH_LIST    GPU architectures; defaults to "8.0;9.0" when no GPU is visible.
    MAX_JOBS                parallel compile jobs for ninja; defaults to the usable core count.

Build isolation must be off (``pip install --no-build-isolation``): an isolated build would
download a second torch, and the extension must be built against the torch it runs with.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import sys

from setuptools import Extension, find_packages, setup

try:
    import torch
except ImportError as e:  # pragma: no cover - depends on the build environment
    sys.exit(
        f"setup.py: building panoptic2 needs torch installed first ({e}). "
        "Run `bash dev/install.sh`, or install torch and then "
        '`python -m pip install --no-build-isolation -e ".[dev]"`.'
    )

ROOT = os.path.dirname(os.path.abspath(__file__))
CSRC = os.path.join("panoptic2", "csrc")  # relative: setuptools wants relative source paths
DEFAULT_ARCH_LIST = "8.0;9.0"


def _log(msg: str) -> None:
    print(f"[panoptic2 setup] {msg}", flush=True)


def _is_cuda_home(path: str | None) -> bool:
    """Whether ``path`` is a CUDA toolkit root with a compiler and the runtime headers."""
    return bool(path) and (
        os.path.isfile(os.path.join(path, "bin", "nvcc"))
        and os.path.isfile(os.path.join(path, "include", "cuda_runtime.h"))
    )


def _nvcc_real_home(nvcc: str) -> str | None:
    """Asks ``nvcc`` where it really lives; catches wrapper scripts (e.g. /usr/local/bin/nvcc)."""
    try:
        out = subprocess.run(
            [nvcc, "--dryrun", "--version"], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"^#\$ _HERE_=(.+)$", out.stdout + out.stderr, re.MULTILINE)
    return os.path.dirname(match.group(1).strip()) if match else None


def find_cuda_home() -> str | None:
    """Finds the CUDA toolkit root.

    Torch's own guess (``dirname(dirname(which nvcc))``) is wrong when ``nvcc`` on PATH is a
    wrapper or symlink outside the toolkit, so each candidate is checked for headers.

    Returns:
        The toolkit root, or None when no usable toolkit was found.
    """
    explicit = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
    if explicit:
        # An explicit choice is respected even if it looks wrong; torch reports the details.
        return explicit
    candidates: list[str | None] = []
    nvcc = shutil.which("nvcc")
    if nvcc:
        candidates += [
            os.path.dirname(os.path.dirname(nvcc)),
            os.path.dirname(os.path.dirname(os.path.realpath(nvcc))),
            _nvcc_real_home(nvcc),
        ]
    candidates.append("/usr/local/cuda")
    candidates += sorted(glob.glob("/usr/local/cuda-*"), reverse=True)
    return next((c for c in candidates if _is_cuda_home(c)), None)


def nvcc_version(cuda_home: str) -> tuple[int, int] | None:
    """Returns (major, minor) of ``cuda_home``'s nvcc, or None if it cannot be run."""
    try:
        out = subprocess.run(
            [os.path.join(cuda_home, "bin", "nvcc"), "--version"],
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"release (\d+)\.(\d+)", out)
    return (int(match.group(1)), int(match.group(2))) if match else None


def _want_cuda(cuda_home: str | None) -> bool:
    """Decides whether to compile ``csrc/cuda/*.cu``, printing why when it does not."""
    if os.environ.get("FORCE_CUDA", "0") == "1":
        if cuda_home is None:
            sys.exit("setup.py: FORCE_CUDA=1 but no CUDA toolkit found; set CUDA_HOME.")
        _log(f"FORCE_CUDA=1: building CUDA kernels with the toolkit at {cuda_home}")
        return True
    if torch.version.cuda is None:
        _log(f"torch {torch.__version__} is not a CUDA build: building CPU-only _C")
        return False
    if cuda_home is None:
        _log("no CUDA toolkit (nvcc) found: building CPU-only _C (set CUDA_HOME to fix)")
        return False
    found = nvcc_version(cuda_home)
    torch_major = int(torch.version.cuda.split(".")[0])
    if found is None or found[0] != torch_major:
        shown = "unknown" if found is None else f"{found[0]}.{found[1]}"
        _log(
            f"WARNING: nvcc at {cuda_home} is CUDA {shown} but torch {torch.__version__} was "
            f"built with CUDA {torch.version.cuda}; the majors must match. Building CPU-only "
            "_C (set FORCE_CUDA=1 to try anyway, or point CUDA_HOME at a matching toolkit)."
        )
        return False
    return True


def _configure_env() -> bool:
    """Sets CUDA_HOME, TORCH_CUDA_ARCH_LIST and MAX_JOBS before torch's build helpers read them.

    Returns:
        Whether the CUDA kernels will be built.
    """
    cuda_home = find_cuda_home()
    if cuda_home and not os.environ.get("CUDA_HOME"):
        os.environ["CUDA_HOME"] = cuda_home
    with_cuda = _want_cuda(cuda_home)
    if with_cuda and not os.environ.get("TORCH_CUDA_ARCH_LIST") and not torch.cuda.is_available():
        # Torch derives the arch list from visible GPUs; without one it would guess, so pick
        # the archs we support explicitly. This also lets GPU-less CI compile the kernels.
        os.environ["TORCH_CUDA_ARCH_LIST"] = DEFAULT_ARCH_LIST
        _log(f"no GPU visible: TORCH_CUDA_ARCH_LIST defaults to {DEFAULT_ARCH_LIST!r}")
    if not os.environ.get("MAX_JOBS"):
        try:
            cores = len(os.sched_getaffinity(0))
        except AttributeError:  # not on Linux
            cores = os.cpu_count() or 1
        os.environ["MAX_JOBS"] = str(max(cores, 1))
    return with_cuda


def _sources(pattern: str) -> list[str]:
    return sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, CSRC, pattern)))


def _openmp_flags() -> list[str]:
    """Compiler and linker flags for OpenMP, where torch's ATen parallelises with it.

    ``at::parallel_for`` is a header template: with an OpenMP ATen, the loops of our CPU
    kernels only run on several threads when this extension is itself compiled with OpenMP.
    The linked ``libgomp.so.1`` resolves to the one torch has already loaded. Apple's clang
    has no ``-fopenmp``; there the kernels stay single-threaded (and exact).
    """
    if not torch.backends.openmp.is_available() or sys.platform == "darwin":
        return []
    return ["/openmp"] if os.name == "nt" else ["-fopenmp"]


def get_extensions() -> list:
    """Returns ``panoptic2._C``, configured for the installed torch, and ``_segment_maps``."""
    with_cuda = _configure_env()
    # Imported only now: cpp_extension reads CUDA_HOME when it is first imported.
    from torch.utils import cpp_extension

    if with_cuda and os.environ["CUDA_HOME"] != cpp_extension.CUDA_HOME:
        cpp_extension.CUDA_HOME = os.environ["CUDA_HOME"]  # it was imported before we ran

    sources = _sources("*.cpp") + _sources(os.path.join("cpu", "*.cpp"))
    define_macros: list[tuple[str, str | None]] = []
    openmp = _openmp_flags()
    extra_compile_args: dict[str, list[str]] = {"cxx": ["-O3", *openmp]}
    extension = cpp_extension.CppExtension
    if with_cuda:
        sources += _sources(os.path.join("cuda", "*.cu"))
        define_macros.append(("WITH_CUDA", None))
        extra_compile_args["nvcc"] = ["-O3"]
        extension = cpp_extension.CUDAExtension
    _log(
        f"torch {torch.__version__} (CUDA {torch.version.cuda}), CUDA_HOME="
        f"{os.environ.get('CUDA_HOME')}, with_cuda={with_cuda}, "
        f"TORCH_CUDA_ARCH_LIST={os.environ.get('TORCH_CUDA_ARCH_LIST')}, "
        f"MAX_JOBS={os.environ['MAX_JOBS']}, sources={len(sources)}, openmp={openmp or 'no'}"
    )
    return [
        extension(
            "panoptic2._C",
            sources,
            include_dirs=[os.path.join(ROOT, CSRC)],
            define_macros=define_macros,
            extra_compile_args=extra_compile_args,
            extra_link_args=openmp if os.name != "nt" else [],
        ),
        segment_maps_extension(),
    ]


def segment_maps_extension() -> Extension:
    """Returns ``panoptic2._segment_maps``: the PNG-decoding and PQ pixel-pair kernels as a
    plain CPython module that links neither torch nor NumPy, so the PQ tool and the PNG
    reader run without importing torch (see ``panoptic2/ops/segments.py``)."""
    return Extension(
        "panoptic2._segment_maps",
        _sources(os.path.join("segment_maps", "*.cpp")),
        extra_compile_args=["-O3", "-std=c++17"] if os.name != "nt" else ["/O2"],
        language="c++",
    )


EXT_MODULES = get_extensions()  # first: it configures the env before cpp_extension is imported
from torch.utils.cpp_extension import BuildExtension  # noqa: E402

setup(
    # Only panoptic2 is a package; tests/, tools/, projects/ are not installed with it.
    packages=find_packages(include=["panoptic2", "panoptic2.*"]),
    ext_modules=EXT_MODULES,
    cmdclass={"build_ext": BuildExtension},
)

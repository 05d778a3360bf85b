"""Random number generators and determinism switches of the process.

:func:`get_rng_states` / :func:`set_rng_states` capture and restore the global RNGs of
python ``random``, numpy and torch (CPU and, when present, every CUDA device) so a resumed
run draws the same numbers. The states are plain tensors, ints, strs and lists so a
checkpoint holding them loads with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import logging
import os
import random
from datetime import datetime
from typing import Any

import numpy as np
import torch

__all__ = ["get_rng_states", "seed_all_rng", "set_deterministic", "set_rng_states"]

logger = logging.getLogger(__name__)

# cuBLAS needs this workspace setting for deterministic results (CUDA >= 10.2).
_CUBLAS_VAR = "CUBLAS_WORKSPACE_CONFIG"
_cublas_var_set_by_us = False


def seed_all_rng(seed: int | None = None) -> int:
    """Seeds python ``random``, numpy and torch (all devices).

    Args:
        seed: a non-negative int; None draws one from the pid, the time and the OS
            entropy source and logs it so the run can be repeated.

    Returns:
        the seed used.

    Raises:
        ValueError: if ``seed`` is negative or not an int.
    """
    if seed is None:
        seed = (
            os.getpid()
            + int(datetime.now().strftime("%S%f"))
            + int.from_bytes(os.urandom(2), "big")
        )
        logger.info("Using a generated random seed %d", seed)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}.")
    seed = int(seed)
    random.seed(seed)
    # numpy's legacy seeding only accepts 32-bit seeds.
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return seed


def set_deterministic(enabled: bool) -> None:
    """Turns deterministic algorithms on or off in torch, cuDNN and cuBLAS.

    With ``enabled``, torch warns (instead of failing) when an op has no deterministic
    implementation, cuDNN autotuning is disabled, and ``CUBLAS_WORKSPACE_CONFIG`` is set
    (when not already set; it only takes effect if cuBLAS is not initialised yet, so call
    this early).

    Args:
        enabled: True to request determinism, False to restore the defaults.
    """
    global _cublas_var_set_by_us
    torch.use_deterministic_algorithms(bool(enabled), warn_only=True)
    torch.backends.cudnn.deterministic = bool(enabled)
    if enabled:
        torch.backends.cudnn.benchmark = False
        if _CUBLAS_VAR not in os.environ:
            os.environ[_CUBLAS_VAR] = ":4096:8"
            _cublas_var_set_by_us = True
    elif _cublas_var_set_by_us:
        os.environ.pop(_CUBLAS_VAR, None)
        _cublas_var_set_by_us = False


def get_rng_states() -> dict[str, Any]:
    """Captures the state of every global RNG.

    Returns:
        dict with keys ``"python"``, ``"numpy"``, ``"torch"`` and, when CUDA is
        available, ``"cuda"`` (one uint8 tensor per device). Floats are stored as float64
        tensors so the dict holds only tensors, ints, strs, lists and dicts.
    """
    version, internal, gauss_next = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state(legacy=True)
    states: dict[str, Any] = {
        "python": {
            "version": int(version),
            "state": [int(v) for v in internal],
            # Empty when random.gauss() has no cached value (None in the tuple).
            "gauss_next": torch.tensor(
                [] if gauss_next is None else [gauss_next], dtype=torch.float64
            ),
        },
        "numpy": {
            "name": str(np_name),
            # uint32 keys: int64 holds them exactly and is supported by every torch.
            "keys": torch.from_numpy(np_keys.astype(np.int64)),
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "cached_gaussian": torch.tensor(float(np_gauss), dtype=torch.float64),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        states["cuda"] = [s.cpu() for s in torch.cuda.get_rng_state_all()]
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    """Restores RNG states captured by :func:`get_rng_states`.

    A ``"cuda"`` entry is restored only when CUDA is available; if the number of devices
    differs, the states of the common devices are restored and a warning is logged.

    Args:
        states: the dict returned by :func:`get_rng_states` (possibly after a
            ``torch.save`` / ``torch.load`` round trip).

    Raises:
        KeyError: if ``"python"``, ``"numpy"`` or ``"torch"`` (or a field) is missing.
    """
    missing = [k for k in ("python", "numpy", "torch") if k not in states]
    if missing:
        raise KeyError(f"RNG states miss the entries {missing}; got keys {sorted(states)}.")
    try:
        py = states["python"]
        gauss = py["gauss_next"]
        gauss_next = float(gauss[0]) if len(gauss) else None
        py_state = (int(py["version"]), tuple(int(v) for v in py["state"]), gauss_next)
        npy = states["numpy"]
        keys = npy["keys"]
        keys = keys.numpy() if isinstance(keys, torch.Tensor) else np.asarray(keys)
        np_state = (
            str(npy["name"]),
            keys.astype(np.uint32),
            int(npy["pos"]),
            int(npy["has_gauss"]),
            float(npy["cached_gaussian"]),
        )
    except KeyError as e:
        raise KeyError(f"RNG states are malformed: missing field {e}.") from e
    random.setstate(py_state)
    np.random.set_state(np_state)
    torch.set_rng_state(states["torch"].cpu())
    if "cuda" in states and torch.cuda.is_available():
        cuda_states = list(states["cuda"])
        count = torch.cuda.device_count()
        if len(cuda_states) != count:
            logger.warning(
                "RNG states hold %d CUDA devices but %d are visible; restoring the first %d.",
                len(cuda_states),
                count,
                min(count, len(cuda_states)),
            )
        for device, state in enumerate(cuda_states[:count]):
            torch.cuda.set_rng_state(state.cpu(), device)

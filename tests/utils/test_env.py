"""Tests of panoptic2.utils.env: seeding, determinism switches, RNG state round trips."""

import logging
import os
import random

import numpy as np
import pytest
import torch

from panoptic2.utils.env import get_rng_states, seed_all_rng, set_deterministic, set_rng_states


def _draw():
    return (
        [random.random() for _ in range(3)] + [random.gauss(0.0, 1.0)],
        np.random.rand(3).tolist() + np.random.randn(3).tolist(),
        torch.rand(3).tolist() + torch.randn(3).tolist(),
    )


def test_seed_all_rng_reproduces_all_libraries():
    assert seed_all_rng(123) == 123
    first = _draw()
    seed_all_rng(123)
    assert _draw() == first
    seed_all_rng(124)
    assert _draw() != first
    # Seeds beyond 32 bits work (numpy gets them modulo 2**32).
    assert seed_all_rng(2**40 + 5) == 2**40 + 5
    with pytest.raises(ValueError, match="non-negative"):
        seed_all_rng(-1)


def test_seed_all_rng_draws_and_logs_a_seed(caplog):
    env_logger = logging.getLogger("panoptic2.utils.env")
    env_logger.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.INFO, logger="panoptic2.utils.env"):
            seed = seed_all_rng()
    finally:
        env_logger.removeHandler(caplog.handler)
    assert isinstance(seed, int) and seed >= 0
    assert str(seed) in caplog.text
    first = _draw()
    seed_all_rng(seed)
    assert _draw() == first


def _only_safe_types(obj):
    if isinstance(obj, dict):
        return all(isinstance(k, str) and _only_safe_types(v) for k, v in obj.items())
    if isinstance(obj, list):
        return all(_only_safe_types(v) for v in obj)
    return isinstance(obj, (torch.Tensor, int, str))


@pytest.mark.parametrize("cached_gaussians", [False, True])
def test_rng_states_round_trip_through_weights_only_load(tmp_path, cached_gaussians):
    seed_all_rng(7)
    if cached_gaussians:
        # python and numpy draw normals in pairs and cache the second one: the states
        # must carry that cached value too.
        while random.getstate()[2] is None:
            random.gauss(0.0, 1.0)
        while np.random.get_state()[3] == 0:
            np.random.randn(1)
    states = get_rng_states()
    assert _only_safe_types(states)
    assert states["numpy"]["has_gauss"] == int(cached_gaussians)
    assert len(states["python"]["gauss_next"]) == int(cached_gaussians)
    path = tmp_path / "rng.pth"
    torch.save({"rng": states}, path)
    loaded = torch.load(path, weights_only=True)["rng"]

    expected = _draw()
    seed_all_rng(999)  # move every generator elsewhere
    set_rng_states(loaded)
    assert _draw() == expected
    if torch.cuda.is_available():
        assert len(states["cuda"]) == torch.cuda.device_count()


def test_set_rng_states_rejects_incomplete_states():
    states = get_rng_states()
    del states["numpy"]
    with pytest.raises(KeyError, match="numpy"):
        set_rng_states(states)
    states = get_rng_states()
    del states["python"]["state"]
    with pytest.raises(KeyError, match="state"):
        set_rng_states(states)


def test_set_deterministic(monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    old = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
    )
    try:
        set_deterministic(True)
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.is_deterministic_algorithms_warn_only_enabled()
        assert torch.backends.cudnn.deterministic
        assert not torch.backends.cudnn.benchmark
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
        set_deterministic(False)
        assert not torch.are_deterministic_algorithms_enabled()
        assert not torch.backends.cudnn.deterministic
        assert "CUBLAS_WORKSPACE_CONFIG" not in os.environ
    finally:
        torch.use_deterministic_algorithms(old[0], warn_only=old[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = old[2:]

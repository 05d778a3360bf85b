"""Tests of tools/benchmark.py: each task runs a few iterations on the shapes configs."""

from __future__ import annotations

import importlib.util
import json
import os
import time

import pytest

from panoptic2.engine import SimpleTrainer
from panoptic2.modeling.meta_arch.panoptic_deeplab import PanopticDeepLab

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOOL = os.path.join(REPO, "tools", "benchmark.py")
DEEPLAB = os.path.join(REPO, "configs", "shapes", "panoptic_deeplab_R18_os32.yaml")
FPN = os.path.join(REPO, "configs", "shapes", "panoptic_fpn_R18_1x.yaml")
# Small and single-threaded: seconds per task on a shared 2-core machine.
FAST = ["--num-iter", "2", "--warmup", "1", "--threads", "1"]
OVERRIDES = ["DATALOADER.NUM_WORKERS", "0", "SOLVER.IMS_PER_BATCH", "2"]


def _load_tool():
    spec = importlib.util.spec_from_file_location("benchmark_tool", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(capsys, *argv: str) -> dict:
    result = _load_tool().main(list(argv))
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed == result
    return result


def _check_rates(result: dict, iterations: int, per_batch: float) -> None:
    assert result["iterations"] == iterations
    assert result["images_per_batch"] == per_batch
    median = result["median_s_per_iter"]
    assert 0 < result["min_s_per_iter"] <= median <= result["max_s_per_iter"]
    assert result["iters_per_s"] == pytest.approx(1 / median)


def _counting(monkeypatch, cls, name: str) -> list:
    calls: list = []
    original = getattr(cls, name)

    def counted(self, *args, **kwargs):
        calls.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(cls, name, counted)
    return calls


def test_data(capsys, tmp_path):
    out = tmp_path / "data.json"
    result = _run(
        capsys, "--config-file", DEEPLAB, "--task", "data", *FAST, "--json", str(out), *OVERRIDES
    )
    _check_rates(result, 2, 2.0)
    # The loader's rate is its images over its total time: batch size / mean batch time.
    assert result["images_per_s"] == pytest.approx(2 / result["mean_s_per_iter"])
    assert result["threads"] == 1
    assert json.loads(out.read_text()) == result


def test_train_times_the_trainer_step(capsys, monkeypatch):
    steps = _counting(monkeypatch, SimpleTrainer, "run_step")
    result = _run(capsys, "--config-file", DEEPLAB, "--task", "train", *FAST, *OVERRIDES)
    assert len(steps) == 3  # warm-up + timed
    _check_rates(result, 2, 2.0)
    assert result["images_per_s"] == pytest.approx(2 / result["median_s_per_iter"])
    assert result["cached_batches"] == 3


def test_train_measures_the_step_duration(capsys, monkeypatch):
    """A step of known length: the median must be that length (plus little overhead)."""

    def step(self) -> None:
        next(self._data_loader_iter)
        time.sleep(0.2)

    monkeypatch.setattr(SimpleTrainer, "run_step", step)
    result = _run(capsys, "--config-file", DEEPLAB, "--task", "train", *FAST, *OVERRIDES)
    assert 0.2 <= result["median_s_per_iter"] < 0.6
    assert result["images_per_s"] == pytest.approx(2 / result["median_s_per_iter"])


def test_eval_runs_model_and_reports_postprocess_share(capsys, monkeypatch):
    forwards = _counting(monkeypatch, PanopticDeepLab, "forward")
    result = _run(capsys, "--config-file", DEEPLAB, "--task", "eval", *FAST, *OVERRIDES)
    assert len(forwards) == 3
    _check_rates(result, 2, 1.0)  # the test loader gives one image per batch
    assert result["images_per_s"] == pytest.approx(1 / result["median_s_per_iter"])
    assert 0 < result["postprocess_share"] < 1


def test_postprocess_runs_the_network_once_per_batch(capsys, monkeypatch):
    networks = _counting(monkeypatch, PanopticDeepLab, "predict_maps")
    posts = _counting(monkeypatch, PanopticDeepLab, "postprocess")
    result = _run(
        capsys,
        "--config-file", DEEPLAB, "--task", "postprocess", *FAST, "--cache-batches", "2",
        *OVERRIDES,
    )  # fmt: skip
    assert len(networks) == 2  # the cached batches, before timing
    assert len(posts) == 3  # warm-up + timed, on the stored outputs
    _check_rates(result, 2, 1.0)


def test_postprocess_needs_a_separable_model():
    with pytest.raises(ValueError, match="PanopticFPN has none"):
        _load_tool().main(["--config-file", FPN, "--task", "postprocess", *FAST, *OVERRIDES])


@pytest.mark.slow
def test_panoptic_fpn_train_and_eval(capsys):
    train = _run(capsys, "--config-file", FPN, "--task", "train", *FAST, *OVERRIDES)
    _check_rates(train, 2, 2.0)
    evaluation = _run(capsys, "--config-file", FPN, "--task", "eval", *FAST, *OVERRIDES)
    _check_rates(evaluation, 2, 1.0)
    assert "postprocess_share" not in evaluation  # Panoptic FPN does not report it

"""inference_on_dataset: eval mode, no grad, every batch processed, mode restored."""

import logging

import pytest
import torch
from torch import nn

from panoptic2.evaluation import DatasetEvaluator, inference_on_dataset


class _Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.ones(1))
        self.modes = []

    def forward(self, inputs):
        self.modes.append((self.training, torch.is_grad_enabled()))
        return [{"y": float(d["x"] * self.w)} for d in inputs]


class _Sum(DatasetEvaluator):
    def reset(self):
        self.total = 0.0
        self.count = 0

    def process(self, inputs, outputs):
        self.total += sum(o["y"] for o in outputs)
        self.count += len(inputs)

    def evaluate(self):
        return {"sum": {"total": self.total, "count": self.count}}


def test_inference_runs_every_batch_in_eval_mode_without_grad():
    model = _Model()
    model.train()
    loader = [[{"x": 1.0}, {"x": 2.0}], [{"x": 3.0}]]
    results = inference_on_dataset(model, loader, _Sum())
    assert results == {"sum": {"total": 6.0, "count": 3}}
    assert model.modes == [(False, False), (False, False)]
    assert model.training  # restored


class _Clock:
    """A fake ``time`` module: the test decides how long each phase takes."""

    def __init__(self):
        self.now = 100.0

    def perf_counter(self):
        return self.now


class _Loader:
    def __init__(self, clock, batches, data_s):
        self.clock, self.batches, self.data_s = clock, batches, data_s

    def __len__(self):
        return len(self.batches)

    def __iter__(self):
        for batch in self.batches:
            self.clock.now += self.data_s * len(batch)
            yield batch


class _TimedModel(nn.Module):
    """Forward takes 3 s per image, of which post-processing (when reported) is 1 s."""

    def __init__(self, clock, report):
        super().__init__()
        self.clock, self.report = clock, report

    def forward(self, inputs):
        self.clock.now += 3.0 * len(inputs)
        if self.report:
            self.last_postprocess_time = 1.0 * len(inputs)
        return [{"y": d["x"]} for d in inputs]


class _SlowSum(_Sum):
    def __init__(self, clock):
        self.clock = clock

    def process(self, inputs, outputs):
        self.clock.now += 0.25 * len(inputs)
        super().process(inputs, outputs)


def _final_line(caplog):
    lines = [r.getMessage() for r in caplog.records if "Total inference time" in r.getMessage()]
    assert len(lines) == 1
    return lines[0]


@pytest.mark.parametrize("report", [True, False])
def test_timing_split_per_image(monkeypatch, caplog, report):
    from panoptic2.evaluation import inference as inference_module

    clock = _Clock()
    monkeypatch.setattr(inference_module, "time", clock)
    batches = [[{"x": 1.0}, {"x": 2.0}], [{"x": 3.0}], [{"x": 4.0}, {"x": 5.0}]]
    caplog.set_level(logging.INFO, logger=inference_module.__name__)
    results = inference_on_dataset(
        _TimedModel(clock, report), _Loader(clock, batches, 0.5), _SlowSum(clock), warmup_iters=0
    )
    assert results == {"sum": {"total": 15.0, "count": 5}}  # every batch reached the evaluator
    line = _final_line(caplog)
    assert "5 timed images" in line
    assert "data loading 0.5000 s" in line
    assert "evaluator 0.2500 s" in line
    if report:
        assert "network 2.0000 s, post-processing 1.0000 s" in line
    else:
        assert "network 3.0000 s, post-processing n/a" in line


def test_warmup_iterations_are_not_timed(monkeypatch, caplog):
    from panoptic2.evaluation import inference as inference_module

    clock = _Clock()
    monkeypatch.setattr(inference_module, "time", clock)
    batches = [[{"x": float(i)}] for i in range(4)]
    caplog.set_level(logging.INFO, logger=inference_module.__name__)
    inference_on_dataset(
        _TimedModel(clock, True), _Loader(clock, batches, 0.5), _SlowSum(clock), warmup_iters=2
    )
    assert "2 timed images" in _final_line(caplog)

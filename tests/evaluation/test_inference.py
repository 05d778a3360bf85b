"""inference_on_dataset: eval mode, no grad, every batch processed, mode restored."""

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

"""A toy plugin: a dataset, a model and an evaluator small enough to train in seconds.

Importing this module registers them, so it is used as a plugin
(``--plugin panoptic2.testing.toy`` or ``PLUGINS: [panoptic2.testing.toy]``); the framework
never imports it itself. The task: classify 8-d Gaussian points by which of 4 fixed
directions they align with most; a small MLP learns it in a few hundred SGD steps. It
exercises the whole engine (registries, catalogs, loaders, hooks, checkpoints, launch)
without any real data.
"""

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from panoptic2.config import CfgNode, add_config_extension, configurable
from panoptic2.data import DatasetCatalog, MetadataCatalog
from panoptic2.evaluation import EVALUATOR_REGISTRY, DatasetEvaluator
from panoptic2.modeling import META_ARCH_REGISTRY

NUM_CLASSES = 4
DIM = 8


def add_toy_config(cfg: CfgNode) -> None:
    """Declares the TOY.* keys of the toy model."""
    cfg.TOY = CfgNode()
    cfg.TOY.HIDDEN = 32
    cfg.TOY.DROPOUT = 0.0


add_config_extension(add_toy_config)


def make_toy_dicts(num: int, seed: int) -> list[dict]:
    """Points with labels from a fixed teacher (same teacher for every split)."""
    teacher = np.random.default_rng(0).normal(size=(DIM, NUM_CLASSES))
    points = np.random.default_rng(seed).normal(size=(num, DIM))
    labels = (points @ teacher).argmax(axis=1)
    return [
        {"image_id": i, "x": points[i].astype(np.float32).tolist(), "y": int(labels[i])}
        for i in range(num)
    ]


for _name, _num, _seed in (("toy_train", 256, 1), ("toy_val", 64, 2)):
    if _name not in DatasetCatalog.list():
        DatasetCatalog.register(_name, lambda n=_num, s=_seed: make_toy_dicts(n, s))
    MetadataCatalog.get(_name).set(evaluators=["ToyAccuracy"], num_classes=NUM_CLASSES)


@META_ARCH_REGISTRY.register()
class ToyClassifier(nn.Module):
    """An MLP; training returns ``{"loss_cls"}``, inference ``[{"pred": int}]``."""

    @configurable
    def __init__(self, *, hidden: int, dropout: float):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(DIM, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, NUM_CLASSES)
        )

    @classmethod
    def from_config(cls, cfg):
        return {"hidden": cfg.TOY.HIDDEN, "dropout": cfg.TOY.DROPOUT}

    def forward(self, batched_inputs):
        device = self.net[0].weight.device
        x = torch.tensor([d["x"] for d in batched_inputs], device=device)
        logits = self.net(x)
        if self.training:
            y = torch.tensor([d["y"] for d in batched_inputs], device=device)
            return {"loss_cls": F.cross_entropy(logits, y)}
        return [{"pred": int(p)} for p in logits.argmax(dim=1)]


@EVALUATOR_REGISTRY.register()
class ToyAccuracy(DatasetEvaluator):
    """Classification accuracy (0-100), gathered over ranks."""

    def __init__(self, cfg, dataset_name, output_dir):
        self.correct = self.total = 0

    def reset(self):
        self.correct = self.total = 0

    def process(self, inputs, outputs):
        for inp, out in zip(inputs, outputs):
            self.correct += int(inp["y"] == out["pred"])
            self.total += 1

    def state(self):
        return self.correct, self.total

    def compute_metrics(self, counts):
        correct = sum(c for c, _ in counts)
        total = sum(t for _, t in counts)
        return {"toy": {"accuracy": 100.0 * correct / total, "num_images": total}}

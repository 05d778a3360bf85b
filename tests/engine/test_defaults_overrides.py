"""DefaultTrainer subclasses written against Detectron2's class-method signatures:
``build_train_loader(cls, cfg)`` and ``build_evaluator(cls, cfg, dataset_name,
output_folder=None)`` work, and resuming stays exact through an overriding loader."""

import logging
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from panoptic2.config import load_config
from panoptic2.data import build_dataset_mapper, build_train_loader, get_dataset_dicts
from panoptic2.engine import DefaultTrainer
from panoptic2.testing.toy import ToyAccuracy

TOY_CONFIG = str(Path(__file__).resolve().parents[2] / "configs" / "toy" / "mlp.yaml")


def _toy_cfg(output_dir, **extra):
    opts = {
        "OUTPUT_DIR": str(output_dir),
        "SOLVER.MAX_ITER": 20,
        "SOLVER.CHECKPOINT_PERIOD": 10,
        "TEST.BEST_CHECKPOINT_METRIC": "",
        "MODEL.DEVICE": "cpu",
        **extra,
    }
    return load_config(TOY_CONFIG, [t for kv in opts.items() for t in map(str, kv)])


class RecordingTrainer(DefaultTrainer):
    """A Detectron2-style override: its own mapper, panoptic2's builder, no resume logic."""

    seen: list[int] = []

    @classmethod
    def build_train_loader(cls, cfg):
        base = build_dataset_mapper(cfg, True)  # None for the toy data: dicts as they are

        def mapper(record):
            cls.seen.append(record["image_id"])
            return record if base is None else base(record)

        return build_train_loader(cfg, mapper=mapper)


class PlainLoaderTrainer(DefaultTrainer):
    """An override that builds a torch DataLoader itself: it cannot start at an iteration."""

    @classmethod
    def build_train_loader(cls, cfg):
        dicts = get_dataset_dicts(cfg.DATASETS.TRAIN)

        def forever():
            while True:
                yield from DataLoader(dicts, batch_size=cfg.SOLVER.IMS_PER_BATCH, collate_fn=list)

        return forever()


def _weights(path):
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


def test_detectron2_signature_train_loader_trains_and_resumes_exactly(tmp_path):
    RecordingTrainer.seen = []
    straight = RecordingTrainer(_toy_cfg(tmp_path / "straight"))
    straight.resume_or_load(resume=False)
    straight.train()
    batch = straight.cfg.SOLVER.IMS_PER_BATCH
    seen_straight = list(RecordingTrainer.seen)
    assert len(seen_straight) == 20 * batch  # the override's mapper fed every iteration

    # Resume from the straight run's iteration-9 checkpoint in another directory.
    RecordingTrainer.seen = []
    resumed = RecordingTrainer(_toy_cfg(tmp_path / "resumed"))
    resumed.resume_or_load(resume=str(tmp_path / "straight" / "model_0000009.pth"))
    assert resumed.start_iter == 10
    resumed.train()
    # The override got no start_iter, yet its loader continued the stream where it stopped.
    assert RecordingTrainer.seen == seen_straight[10 * batch :]
    final_straight = _weights(tmp_path / "straight" / "model_final.pth")
    final_resumed = _weights(tmp_path / "resumed" / "model_final.pth")
    for key, value in final_straight.items():
        assert torch.equal(final_resumed[key], value), key


def test_override_that_cannot_resume_is_reported(tmp_path, caplog):
    first = PlainLoaderTrainer(_toy_cfg(tmp_path / "a", **{"SOLVER.MAX_ITER": 10}))
    first.resume_or_load(resume=False)
    first.train()

    second = PlainLoaderTrainer(_toy_cfg(tmp_path / "b", **{"SOLVER.MAX_ITER": 12}))
    second.resume_or_load(resume=str(tmp_path / "a" / "model_final.pth"))
    with caplog.at_level(logging.WARNING, logger="panoptic2.engine.defaults"):
        second.train()
    assert "PlainLoaderTrainer.build_train_loader did not build its loader" in caplog.text
    assert "resumed iteration 10" in caplog.text


class NamedAccuracy(ToyAccuracy):
    """The toy evaluator under another metric name, remembering where it may write."""

    def __init__(self, cfg, dataset_name, output_dir):
        super().__init__(cfg, dataset_name, output_dir)
        self.output_dir = output_dir

    def compute_metrics(self, counts):
        return {"custom": super().compute_metrics(counts)["toy"]}


class EvaluatorTrainer(DefaultTrainer):
    folders: list = []

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        cls.folders.append(output_folder)
        return NamedAccuracy(cfg, dataset_name, output_folder)


def test_detectron2_signature_build_evaluator_evaluates(tmp_path):
    cfg = _toy_cfg(tmp_path)
    trainer = EvaluatorTrainer(cfg)
    trainer.resume_or_load(resume=False)
    EvaluatorTrainer.folders = []
    results = trainer.train()  # evaluates once at the end (EVAL_PERIOD > MAX_ITER)
    assert EvaluatorTrainer.folders == [None]
    assert set(results) == {"custom"}
    assert results["custom"]["num_images"] == 64
    # The same number as the registered evaluator gives.
    reference = DefaultTrainer.test(cfg, trainer.model)
    assert results["custom"]["accuracy"] == pytest.approx(reference["toy"]["accuracy"])


def test_default_build_evaluator_output_folder(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(
        "panoptic2.engine.defaults.build_evaluator",
        lambda cfg, name, output_dir: calls.append((name, output_dir)),
    )
    cfg = _toy_cfg(tmp_path)
    DefaultTrainer.build_evaluator(cfg, "toy_val")
    DefaultTrainer.build_evaluator(cfg, "toy_val", str(tmp_path / "x"))  # positional, as D2
    DefaultTrainer.build_evaluator(cfg, "toy_val", output_folder=str(tmp_path / "y"))
    assert calls == [
        ("toy_val", str(tmp_path / "inference" / "toy_val")),
        ("toy_val", str(tmp_path / "x")),
        ("toy_val", str(tmp_path / "y")),
    ]

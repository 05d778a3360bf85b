"""panoptic2.data.loader_position: a trainer-set start reaches build_train_loader callers
that pass no start_iter/seed (Detectron2-style build_train_loader(cls, cfg) overrides)."""

import pytest

from panoptic2.config import get_cfg
from panoptic2.data import DatasetCatalog, TrainingSampler, build_train_loader
from panoptic2.data.loader_position import (
    current_train_loader_position,
    train_loader_position,
)

from .test_build import make_dicts, random_mapper, take_batches


def _loader(**kwargs):
    return build_train_loader(
        dataset=make_dicts(7), mapper=random_mapper, total_batch_size=2, **kwargs
    )


def test_position_supplies_start_and_seed():
    # Reference: the straight stream of seed 11, whose first 3 batches a resume skips.
    straight = take_batches(_loader(seed=11, start_iter=0), 7)
    with train_loader_position(3, 11) as position:
        assert current_train_loader_position() is position
        resumed = take_batches(_loader(), 4)
    assert current_train_loader_position() is None
    assert position.start_applied
    assert resumed == straight[3:]


def test_explicit_arguments_win_over_the_position():
    with train_loader_position(3, 11) as position:
        explicit = take_batches(_loader(seed=5, start_iter=0), 2)
    assert not position.start_applied  # the caller chose its own start
    assert explicit == take_batches(_loader(seed=5, start_iter=0), 2)
    assert explicit != take_batches(_loader(seed=11, start_iter=0), 2)


def test_sampler_object_keeps_its_own_start():
    sampler = TrainingSampler(7, seed=4)
    expected = take_batches(_loader(sampler=TrainingSampler(7, seed=4)), 3)
    with train_loader_position(3, 11) as position:
        got = take_batches(_loader(sampler=sampler), 3)
    assert not position.start_applied
    assert got == expected


def test_position_seed_wins_over_config_seed():
    DatasetCatalog.register("_test_position", lambda: make_dicts(7))
    try:
        cfg = get_cfg()
        cfg.DATASETS.TRAIN = ["_test_position"]
        cfg.SOLVER.IMS_PER_BATCH = 2
        cfg.DATALOADER.NUM_WORKERS = 0
        cfg.SEED = 21  # a resumed run keeps the checkpoint's data seed, not this one
        with train_loader_position(2, 11):
            from_cfg = take_batches(build_train_loader(cfg, mapper=random_mapper), 3)
    finally:
        DatasetCatalog.remove("_test_position")
    assert from_cfg == take_batches(_loader(seed=11, start_iter=0), 5)[2:]


def test_negative_start_is_refused():
    with pytest.raises(ValueError, match="start_iter must be >= 0, got -1"):
        train_loader_position(-1, 0).__enter__()

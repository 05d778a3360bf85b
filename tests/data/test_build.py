import itertools
import multiprocessing as mp
import random

import numpy as np
import pytest
import torch

from panoptic2.config import get_cfg
from panoptic2.data import (
    DATA_MAPPER_REGISTRY,
    DatasetCatalog,
    InferenceSampler,
    TrainingSampler,
    build_dataset_mapper,
    build_test_loader,
    build_train_loader,
    get_dataset_dicts,
)

# Test-local mappers are inherited by forked workers; spawned workers would need them
# importable, which depends on pytest's import mode.
FORK = "fork" if "fork" in mp.get_all_start_methods() else None


def make_dicts(n, offset=0):
    return [{"image_id": offset + i, "height": 10, "width": 20 if i % 3 else 5} for i in range(n)]


def random_mapper(d):
    """A mapper whose output depends on every global RNG a real augmentation might use."""
    return (d["image_id"], random.random(), float(np.random.rand()), float(torch.rand(())))


def take_batches(loader, n):
    return list(itertools.islice(iter(loader), n))


@pytest.fixture
def registered():
    names = {"_test_build_a": make_dicts(5), "_test_build_b": make_dicts(3, offset=100)}
    for name, dicts in names.items():
        DatasetCatalog.register(name, lambda dicts=dicts: [dict(d) for d in dicts])
    DatasetCatalog.register("_test_build_empty", list)
    yield names
    for name in [*names, "_test_build_empty"]:
        DatasetCatalog.remove(name)


# -------------------------------------------------------------------------- dataset dicts


def test_get_dataset_dicts_concatenates_and_validates(registered):
    got = get_dataset_dicts(["_test_build_a", "_test_build_b"])
    assert [d["image_id"] for d in got] == [0, 1, 2, 3, 4, 100, 101, 102]
    # Each dict names the dataset it came from (models read that dataset's metadata).
    assert [d["dataset_name"] for d in got] == ["_test_build_a"] * 5 + ["_test_build_b"] * 3
    with pytest.raises(TypeError, match=r"got the string '_test_build_a'.*\['_test_build_a'\]"):
        get_dataset_dicts("_test_build_a")
    with pytest.raises(ValueError, match="'_test_build_empty' is empty"):
        get_dataset_dicts(["_test_build_a", "_test_build_empty"])
    with pytest.raises(ValueError, match="no dataset names"):
        get_dataset_dicts([])
    with pytest.raises(KeyError, match="Did you mean '_test_build_a'"):
        get_dataset_dicts(["_test_build_aa"])


def test_get_dataset_dicts_filter_empty():
    dicts = [
        {"image_id": 0, "segments_info": [{"iscrowd": 1}]},
        {"image_id": 1, "segments_info": [{"iscrowd": 1}, {"iscrowd": 0}]},
        {"image_id": 2, "annotations": []},
        {"image_id": 3, "annotations": [{"iscrowd": 0}]},
        {"image_id": 4, "sem_seg_file_name": "x.png"},
    ]
    DatasetCatalog.register("_test_build_filter", lambda: dicts)
    try:
        kept = get_dataset_dicts(["_test_build_filter"], filter_empty=True)
        assert [d["image_id"] for d in kept] == [1, 3, 4]
        assert len(get_dataset_dicts(["_test_build_filter"])) == 5
    finally:
        DatasetCatalog.remove("_test_build_filter")


def test_get_dataset_dicts_rejects_non_dict_items():
    DatasetCatalog.register("_test_build_bad", lambda: [{"a": 1}, "oops"])
    try:
        with pytest.raises(TypeError, match="'_test_build_bad': item 1 is a str"):
            get_dataset_dicts(["_test_build_bad"])
    finally:
        DatasetCatalog.remove("_test_build_bad")


# ----------------------------------------------------------------------------- mappers


def test_build_dataset_mapper_from_registry():
    cfg = get_cfg()
    assert cfg.INPUT.DATASET_MAPPER_NAME == ""
    assert build_dataset_mapper(cfg, True) is None

    @DATA_MAPPER_REGISTRY.register()
    def _TestBuildMapper(cfg, is_train, dataset_name):
        return ("mapper", cfg.INPUT.FORMAT, is_train, dataset_name)

    try:
        cfg.INPUT.DATASET_MAPPER_NAME = "_TestBuildMapper"
        assert build_dataset_mapper(cfg, False) == ("mapper", "RGB", False, None)
        assert build_dataset_mapper(cfg, False, "val") == ("mapper", "RGB", False, "val")
        cfg.INPUT.DATASET_MAPPER_NAME = "NoSuchMapper"
        with pytest.raises(KeyError, match="NoSuchMapper"):
            build_dataset_mapper(cfg, True)
    finally:
        DATA_MAPPER_REGISTRY.remove("_TestBuildMapper")


# ------------------------------------------------------------------------- train loader


def train_loader(num_workers=0, **kwargs):
    kwargs.setdefault("dataset", make_dicts(7))
    kwargs.setdefault("mapper", random_mapper)
    kwargs.setdefault("total_batch_size", 4)
    kwargs.setdefault("seed", 13)
    return build_train_loader(num_workers=num_workers, multiprocessing_context=FORK, **kwargs)


def test_train_loader_batches_are_stream_slices():
    batches = take_batches(train_loader(mapper=None), 5)
    stream = list(itertools.islice(TrainingSampler(7, seed=13), 20))
    assert [[d["image_id"] for d in b] for b in batches] == [
        stream[i : i + 4] for i in range(0, 20, 4)
    ]
    assert batches[0][0] == make_dicts(7)[stream[0]]  # mapper=None passes dicts through


def test_train_loader_independent_of_num_workers():
    expected = take_batches(train_loader(num_workers=0), 6)
    got = take_batches(train_loader(num_workers=2, prefetch_factor=3), 6)
    assert got == expected
    ids = [s[0] for b in expected for s in b]
    assert len(set(ids)) == 7  # sanity: the stream covers the dataset
    # Two visits of the same image at different positions get different augmentations.
    by_id = {}
    for b in expected:
        for s in b:
            by_id.setdefault(s[0], []).append(s[1:])
    assert any(len(v) > 1 and v[0] != v[1] for v in by_id.values())


def test_train_loader_resume_reproduces_stream():
    full = take_batches(train_loader(), 8)
    for num_workers in (0, 2):
        assert take_batches(train_loader(num_workers, start_iter=5), 3) == full[5:]


def test_train_loader_ranks_union_equals_single_rank_batch():
    single = take_batches(train_loader(total_batch_size=4), 5)
    shards = [
        take_batches(
            train_loader(
                total_batch_size=4, sampler=TrainingSampler(7, seed=13, rank=r, world_size=2)
            ),
            5,
        )
        for r in range(2)
    ]
    for i in range(5):
        assert len(shards[0][i]) == len(shards[1][i]) == 2
        assert sorted(shards[0][i] + shards[1][i]) == sorted(single[i])


def test_train_loader_leaves_main_process_rng_untouched():
    def draws():
        return random.random(), float(np.random.rand()), float(torch.rand(()))

    random.seed(5), np.random.seed(5), torch.manual_seed(5)
    expected = draws()
    random.seed(5), np.random.seed(5), torch.manual_seed(5)
    take_batches(train_loader(), 3)
    assert draws() == expected


def test_train_loader_errors():
    with pytest.raises(ValueError, match=r"Total batch size \(5\).*processes \(2\)"):
        train_loader(total_batch_size=5, sampler=TrainingSampler(7, seed=0, rank=0, world_size=2))
    with pytest.raises(KeyError, match="'NoSampler'.*RepeatFactorTrainingSampler.*TrainingSampler"):
        train_loader(sampler="NoSampler")
    with pytest.raises(ValueError, match="REPEAT_THRESHOLD"):
        train_loader(sampler="RepeatFactorTrainingSampler")
    with pytest.raises(ValueError, match="start_iter must be 0"):
        train_loader(sampler=TrainingSampler(7, seed=0), start_iter=2)
    with pytest.raises(ValueError, match="empty"):
        train_loader(dataset=[])

    def none_mapper(d):
        return None

    with pytest.raises(ValueError, match="returned None"):
        take_batches(train_loader(mapper=none_mapper), 1)


def test_train_loader_repeat_factor_sampler_by_name():
    dicts = [
        {"image_id": 0, "segments_info": [{"category_id": 1}]},
        {"image_id": 1, "segments_info": [{"category_id": 1}, {"category_id": 2}]},
    ]
    # f(1) = 1, f(2) = 0.5; t = 2 -> r(1) = sqrt(2), r(2) = 2: image 1 is repeated twice as often.
    batches = take_batches(
        train_loader(
            dataset=dicts, mapper=None, sampler="RepeatFactorTrainingSampler", repeat_threshold=2.0
        ),
        50,
    )
    ids = [d["image_id"] for b in batches for d in b]
    assert 0.5 < ids.count(0) / ids.count(1) < 0.9  # expected ratio sqrt(2) / 2 = 0.71


def test_train_loader_aspect_ratio_grouping():
    dicts = make_dicts(12)  # width > height except for ids 0, 3, 6, 9
    kwargs = {"dataset": dicts, "mapper": None, "aspect_ratio_grouping": True}
    batches = take_batches(train_loader(**kwargs), 10)
    for batch in batches:
        assert len(batch) == 4
        assert len({d["width"] > d["height"] for d in batch}) == 1
    assert take_batches(train_loader(num_workers=2, **kwargs), 10) == batches
    with pytest.raises(KeyError, match="'width' and 'height'.*item 0"):
        train_loader(dataset=[{"image_id": 0}], aspect_ratio_grouping=True)


def test_train_loader_from_config(registered):
    cfg = get_cfg()
    cfg.DATASETS.TRAIN = ["_test_build_a", "_test_build_b"]
    cfg.SOLVER.IMS_PER_BATCH = 2
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.SEED = 21
    explicit = take_batches(
        build_train_loader(
            dataset=get_dataset_dicts(cfg.DATASETS.TRAIN),
            mapper=random_mapper,
            total_batch_size=2,
            seed=21,
            start_iter=3,
        ),
        4,
    )
    from_cfg = take_batches(build_train_loader(cfg, mapper=random_mapper, start_iter=3), 4)
    assert from_cfg == explicit
    assert all(len(b) == 2 for b in from_cfg)


def test_train_loader_spawn_workers():
    expected = take_batches(train_loader(mapper=None), 3)
    loader = build_train_loader(
        dataset=make_dicts(7),
        mapper=None,
        total_batch_size=4,
        seed=13,
        num_workers=1,
        multiprocessing_context="spawn",
    )
    assert take_batches(loader, 3) == expected


# -------------------------------------------------------------------------- test loader


def test_test_loader_from_config_in_order(registered):
    cfg = get_cfg()
    cfg.DATALOADER.NUM_WORKERS = 0
    loader = build_test_loader(cfg, "_test_build_b")
    batches = list(loader)
    assert batches == [[{**d, "dataset_name": "_test_build_b"}] for d in make_dicts(3, offset=100)]
    both = build_test_loader(
        cfg, ["_test_build_a", "_test_build_b"], mapper=lambda d: d["image_id"]
    )
    assert [b[0] for b in both] == [0, 1, 2, 3, 4, 100, 101, 102]


def test_test_loader_two_workers_two_ranks_each_image_once():
    dicts = make_dicts(11)
    seen = []
    for rank in range(2):
        loader = build_test_loader(
            dataset=dicts,
            mapper=lambda d: d["image_id"],
            sampler=InferenceSampler(len(dicts), rank=rank, world_size=2),
            batch_size=2,
            num_workers=2,
            multiprocessing_context=FORK,
        )
        batches = list(loader)
        assert [len(b) for b in batches] == ([2, 2, 2] if rank == 0 else [2, 2, 1])
        seen.extend(x for b in batches for x in b)
    assert sorted(seen) == list(range(11)) and len(seen) == 11

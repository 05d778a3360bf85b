"""Tests of panoptic2/data/records/dataset.py: map-style, streaming and registered records."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from torch.utils import data

from panoptic2.data import DatasetCatalog, MetadataCatalog
from panoptic2.data.records import (
    RecordDataset,
    RecordStream,
    convert_coco_dataset,
    load_record_dict,
    register_records,
    write_sharded_records,
)

from .fixtures import COCO_CONTIGUOUS, COCO_THING_IDS, make_coco_fixture, reference_panoptic


def _payload(item: int) -> bytes:
    return f"rec{item}".encode()


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("shards"))
    return write_sharded_records(out, "train", list(range(11)), _payload, 4)


def test_record_dataset_raw(shards):
    ds = RecordDataset(shards, decode=False)
    assert len(ds) == 11
    assert [ds[i] for i in range(11)] == [_payload(i) for i in range(11)]
    assert ds[-1] == _payload(10)
    with pytest.raises(IndexError):
        ds[11]


def _stream_items(shards, rank, world, num_workers):
    stream = RecordStream(shards, decode=False, rank=rank, world_size=world)
    if num_workers == 0:
        return list(stream)
    loader = data.DataLoader(stream, batch_size=None, num_workers=num_workers)
    return list(loader)


@pytest.mark.parametrize("num_files", [4, 2])  # >= readers: whole files; < readers: records
def test_stream_splits_across_ranks_and_workers(shards, num_files):
    files = shards[:num_files]
    expected = [r for p in files for r in RecordDataset(p, decode=False)]
    per_reader = [_stream_items(files, rank, 2, 2) for rank in range(2)]
    got = [r for items in per_reader for r in items]
    assert sorted(got) == sorted(expected)  # no loss, no overlap
    assert len(set(got)) == len(got)
    assert all(per_reader)


def test_stream_single_reader_reads_all_in_order(shards):
    assert _stream_items(shards, 0, 1, 0) == [_payload(i) for i in range(11)]


def test_registered_records_decode_like_the_pngs(tmp_path):
    root = make_coco_fixture(str(tmp_path / "coco"), num_train=1, num_val=3)
    convert_coco_dataset(
        root, str(tmp_path / "rec"), splits=["val"], num_shards=2, label_format="png16"
    )
    name = "records_test_coco_val"
    register_records(
        name, str(tmp_path / "rec" / "val-*.tfrecord"), {"label_divisor": 256, "ignore_label": 0}
    )
    try:
        dicts = DatasetCatalog.get(name)
        assert MetadataCatalog.get(name).label_divisor == 256
        assert [d["image_id"] for d in dicts] == ["000000000002", "000000000003", "000000000004"]
        with open(os.path.join(root, "annotations", "panoptic_val2017.json")) as f:
            anns = {a["file_name"][:-4]: a for a in json.load(f)["annotations"]}
        for d in dicts:
            loaded = load_record_dict(d)
            assert "image" not in d  # the input dict is not modified
            assert loaded["image"].shape == (12, 10, 3) and loaded["image"].dtype == np.uint8
            png = os.path.join(root, "annotations", "panoptic_val2017", d["image_id"] + ".png")
            ref = reference_panoptic(
                png, anns[d["image_id"]]["segments_info"], COCO_CONTIGUOUS, COCO_THING_IDS, 256, 0
            )
            np.testing.assert_array_equal(loaded["panoptic_label"], ref)
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)

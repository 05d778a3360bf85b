"""Tests of panoptic2/data/label_space.py: construction, derived views, serialisation."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from panoptic2.config import get_cfg
from panoptic2.data import MetadataCatalog
from panoptic2.data.datasets.coco_panoptic import get_panoptic_fpn_stuff_metadata
from panoptic2.data.datasets.metadata import (
    get_cityscapes_metadata,
    get_coco_panoptic_metadata,
    get_voc_metadata,
    load_coco_panoptic_categories,
)
from panoptic2.data.label_space import (
    LabelSpace,
    label_space_from_config,
    label_space_of_datasets,
)

CATEGORIES = [  # dataset ids out of order, things and stuff interleaved
    {"id": 17, "name": "sky", "isthing": 0, "color": [0, 0, 200]},
    {"id": 3, "name": "car", "isthing": 1, "color": [200, 0, 0]},
    {"id": 40, "name": "road", "isthing": 0},
    {"id": 9, "name": "person", "isthing": 1, "color": [0, 200, 0]},
]


def test_from_categories_is_deeplab2s_coco_label_space():
    space = LabelSpace.from_categories(CATEGORIES)
    # Void 0, then things by dataset id (car 3, person 9), then stuff (sky 17, road 40).
    assert space.classes == ("void", "car", "person", "sky", "road")
    assert space.thing_ids == (1, 2) and space.stuff_ids == (3, 4)
    assert space.thing_dataset_id_to_contiguous_id == {3: 1, 9: 2}
    assert space.stuff_dataset_id_to_contiguous_id == {17: 3, 40: 4}
    assert space.contiguous_id_to_dataset_id == {1: 3, 2: 9, 3: 17, 4: 40}
    assert space.ignore_label == 0 and space.label_divisor == 256 and space.num_classes == 5
    assert space.colors[:4] == ((0, 0, 0), (200, 0, 0), (0, 200, 0), (0, 0, 200))
    assert space.thing_classes == ["car", "person"] and space.stuff_classes == ["sky", "road"]
    coco = LabelSpace.from_categories(load_coco_panoptic_categories())
    assert coco.num_classes == 134 and coco.thing_ids == tuple(range(1, 81))
    assert coco.stuff_ids == tuple(range(81, 134))


@pytest.mark.parametrize(
    "metadata",
    [
        lambda: get_coco_panoptic_metadata(load_coco_panoptic_categories()),
        get_cityscapes_metadata,
        get_voc_metadata,
    ],
    ids=["coco", "cityscapes", "voc"],
)
def test_metadata_round_trip(metadata):
    meta = metadata()
    space = LabelSpace.from_metadata(meta)
    assert {k: meta[k] for k in space.as_metadata()} == space.as_metadata()
    assert LabelSpace.from_metadata(space.as_metadata()) == space


def test_cityscapes_and_voc_spaces():
    cityscapes = LabelSpace.from_metadata(get_cityscapes_metadata())
    assert cityscapes.num_classes == 19 and cityscapes.ignore_label == 255
    assert cityscapes.thing_ids == tuple(range(11, 19)) and cityscapes.stuff_ids == tuple(range(11))
    assert cityscapes.classes[11] == "person" and cityscapes.label_divisor == 1000
    voc = LabelSpace.from_metadata(get_voc_metadata())
    assert voc.thing_ids == () and voc.stuff_ids == tuple(range(21)) and voc.label_divisor == 1


def test_detectron2_style_instance_metadata():
    """Only thing names and the thing id map, as Detectron2's register_coco_instances sets."""
    space = LabelSpace.from_metadata(
        {"thing_classes": ["x", "y"], "thing_dataset_id_to_contiguous_id": {7: 0, 9: 1}}
    )
    assert space.classes == ("x", "y") and space.thing_ids == (0, 1) and space.stuff_ids == ()
    assert space.label_divisor == 1000 and space.ignore_label == 255


def test_panoptic_fpn_mapping_has_one_definition():
    space = LabelSpace.from_categories(CATEGORIES)
    lut = space.panoptic_fpn_lut()
    # void (ignore 0) -> 255, things -> 0, stuff in contiguous order -> 1..S
    assert lut.tolist() == [255, 0, 0, 1, 2]
    assert space.panoptic_fpn_stuff_ids == (3, 4)
    assert space.panoptic_fpn_classes == ("things", "sky", "road")
    # The separated PNGs' metadata is that same mapping, in dataset ids.
    meta = get_panoptic_fpn_stuff_metadata(CATEGORIES)
    assert meta["sem_seg_dataset_id_to_contiguous_id"] == {3: 0, 9: 0, 17: 1, 40: 2}
    assert meta["sem_seg_classes"] == ["things", "sky", "road"]
    assert meta["sem_seg_num_classes"] == 3 and meta["sem_seg_ignore_label"] == 255
    # An ignore label beyond the classes still indexes the table.
    cityscapes = LabelSpace.from_metadata(get_cityscapes_metadata())
    lut = cityscapes.panoptic_fpn_lut()
    assert len(lut) == 256 and lut[255] == 255 and lut[11] == 0 and lut[0] == 1


def test_serialises_to_plain_types_for_weights_only_checkpoints():
    space = LabelSpace.from_categories(CATEGORIES)
    data = space.to_dict()
    assert LabelSpace.from_dict(data) == space
    buffer = io.BytesIO()
    torch.save({"label_space": data}, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=True)["label_space"]
    assert LabelSpace.from_dict(loaded) == space
    with pytest.raises(ValueError, match="keys"):
        LabelSpace.from_dict({**data, "extra": 1})
    assert hash(space) == hash(LabelSpace.from_dict(loaded))


@pytest.mark.parametrize(
    "change, message",
    [
        ({"thing_ids": [1, 3], "stuff_ids": [3, 4]}, "both thing and stuff"),
        ({"ignore_label": 1}, "ignore_label 1 is a thing or stuff class"),
        ({"thing_ids": [2, 1]}, "not increasing"),
        ({"stuff_ids": [3, 9]}, "outside 0..4"),
        ({"colors": [(0, 0, 0)] * 4}, "4 colours for 5 classes"),
        ({"thing_dataset_ids": [3]}, "1 thing_dataset_ids for 2 thing ids"),
        ({"stuff_dataset_ids": [3, 17]}, "a dataset id maps to two classes"),
        ({"label_divisor": 1}, "no room for thing instances"),
    ],
)
def test_inconsistent_label_spaces_are_refused(change, message):
    fields = LabelSpace.from_categories(CATEGORIES).to_dict()
    fields.update(change)
    with pytest.raises(ValueError, match=message):
        LabelSpace(**fields)


@pytest.fixture
def registered():
    names = []

    def make(name, **fields):
        MetadataCatalog.get(name).set(**fields)
        names.append(name)
        return name

    yield make
    for name in names:
        MetadataCatalog.remove(name)


def test_datasets_must_share_one_label_space(registered):
    a = registered("_ls_a", **get_coco_panoptic_metadata(CATEGORIES))
    b = registered("_ls_b", **get_coco_panoptic_metadata(CATEGORIES))
    c = registered("_ls_c", **get_coco_panoptic_metadata(CATEGORIES[:3]))
    assert label_space_of_datasets([a, b]) == LabelSpace.from_categories(CATEGORIES)
    with pytest.raises(ValueError, match="'_ls_a' and '_ls_c' have different label spaces"):
        label_space_of_datasets([a, c])
    empty = registered("_ls_empty", evaluators=["SemSegEvaluator"])
    with pytest.raises(ValueError, match="dataset '_ls_empty' does not give a label space"):
        label_space_of_datasets([empty])
    cfg = get_cfg()
    assert label_space_from_config(cfg) is None
    cfg.DATASETS.TRAIN = [a]
    cfg.DATASETS.TEST = [b]
    assert label_space_from_config(cfg) == label_space_of_datasets([a])
    cfg.DATASETS.TEST = [c]
    with pytest.raises(ValueError, match="different label spaces"):
        label_space_from_config(cfg)


def test_lut_dtype_and_repr():
    space = LabelSpace.from_categories(CATEGORIES)
    assert space.panoptic_fpn_lut().dtype == np.int64
    assert repr(space) == (
        "LabelSpace(5 classes, things [1, 2], 2 stuff, label_divisor 256, ignore_label 0)"
    )


def test_panoptic_fpn_space_describes_the_separated_map():
    space = LabelSpace.from_categories(CATEGORIES).panoptic_fpn_space()
    assert space.classes == ("things", "sky", "road") and space.ignore_label == 255
    assert space.stuff_ids == (0, 1, 2) and space.thing_ids == ()
    assert space.colors[1] == (0, 0, 200)  # sky keeps its colour

"""Tests of panoptic2/data/datasets/metadata.py."""

from __future__ import annotations

import pytest

from panoptic2.data.datasets.metadata import (
    get_cityscapes_metadata,
    get_coco_instances_metadata,
    get_coco_panoptic_metadata,
    get_sem_seg_metadata,
    get_voc_metadata,
    load_coco_panoptic_categories,
    voc_colormap,
)


def test_coco_label_space_matches_deeplab2():
    meta = get_coco_panoptic_metadata(load_coco_panoptic_categories())
    assert meta["num_classes"] == 134 and meta["label_divisor"] == 256
    assert meta["ignore_label"] == 0
    assert len(meta["thing_classes"]) == 80 and len(meta["stuff_classes"]) == 53
    # Hand-checked: person 1 -> 1, toothbrush 90 -> 80, banner 92 -> 81, rug 200 -> 133.
    assert meta["thing_dataset_id_to_contiguous_id"][1] == 1
    assert meta["thing_dataset_id_to_contiguous_id"][90] == 80
    assert meta["stuff_dataset_id_to_contiguous_id"][92] == 81
    assert meta["stuff_dataset_id_to_contiguous_id"][200] == 133
    assert meta["classes"][0] == "void" and meta["classes"][81] == "banner"
    assert meta["colors"][1] == [220, 20, 60]
    assert meta["thing_ids"] == list(range(1, 81))
    assert meta["evaluators"] == ["COCOPanopticEvaluator", "SemSegEvaluator"]


def test_coco_instances_metadata_is_things_only_in_id_order():
    cats = [{"id": 90, "name": "toothbrush"}, {"id": 1, "name": "person", "color": [1, 2, 3]}]
    meta = get_coco_instances_metadata(cats)
    assert meta["classes"] == ["void", "person", "toothbrush"] and meta["ignore_label"] == 0
    assert meta["thing_dataset_id_to_contiguous_id"] == {1: 1, 90: 2}
    assert meta["thing_colors"][0] == [1, 2, 3] and meta["stuff_classes"] == []
    assert meta["evaluators"] == ["COCOEvaluator"] and meta["label_divisor"] == 1000
    # isthing is ignored: an instances JSON holds things only.
    assert get_coco_instances_metadata([{"id": 3, "name": "x", "isthing": 0}])["thing_ids"] == [1]
    with pytest.raises(ValueError, match="id 0 is reserved"):
        get_coco_instances_metadata([{"id": 0, "name": "x"}])


def test_coco_things_first_even_when_listed_after_stuff():
    cats = [
        {"id": 101, "name": "sky", "isthing": 0},
        {"id": 7, "name": "dog", "isthing": 1},
        {"id": 3, "name": "cat", "isthing": 1},
    ]
    meta = get_coco_panoptic_metadata(cats)
    assert meta["classes"] == ["void", "cat", "dog", "sky"]
    assert meta["thing_dataset_id_to_contiguous_id"] == {3: 1, 7: 2}
    assert meta["stuff_dataset_id_to_contiguous_id"] == {101: 3}
    assert meta["num_classes"] == 4


@pytest.mark.parametrize(
    "cats, msg",
    [
        ([{"id": 1, "name": "a", "isthing": 1}, {"id": 1, "name": "b", "isthing": 0}], "twice"),
        ([{"id": 0, "name": "a", "isthing": 1}], "reserved"),
        ([{"id": 2, "name": "a"}], "isthing"),
    ],
)
def test_coco_bad_categories(cats, msg):
    with pytest.raises(ValueError, match=msg):
        get_coco_panoptic_metadata(cats)


def test_cityscapes_from_cityscapesscripts():
    meta = get_cityscapes_metadata()
    assert meta["num_classes"] == 19 and meta["ignore_label"] == 255
    assert meta["label_divisor"] == 1000
    assert meta["classes"][0] == "road" and meta["classes"][18] == "bicycle"
    assert meta["thing_ids"] == list(range(11, 19))
    assert meta["thing_classes"][0] == "person"
    assert meta["colors"][0] == [128, 64, 128]
    assert meta["label_id_to_train_id"][26] == 13  # car
    assert meta["label_id_to_train_id"][1] == 255  # ego vehicle


def test_voc_palette_and_classes():
    cmap = voc_colormap()
    # Official VOC colours, hand-checked: aeroplane, person, tvmonitor, border.
    assert cmap[1] == [128, 0, 0]
    assert cmap[15] == [192, 128, 128]
    assert cmap[20] == [0, 64, 128]
    assert cmap[255] == [224, 224, 192]
    meta = get_voc_metadata()
    assert meta["num_classes"] == 21 and meta["classes"][15] == "person"
    assert meta["evaluators"] == ["SemSegEvaluator"]


def test_sem_seg_metadata_checks_colors():
    with pytest.raises(ValueError, match="colours"):
        get_sem_seg_metadata(["a", "b"], colors=[[0, 0, 0]])
    assert get_sem_seg_metadata(["a", "b"])["num_classes"] == 2

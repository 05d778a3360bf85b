"""The Panoptic FPN fusion heuristic on hand-built cases
(panoptic2/modeling/meta_arch/panoptic_fpn_fusion.py)."""

import pytest
import torch

from panoptic2.modeling.meta_arch.panoptic_fpn_fusion import combine_semantic_and_instance_outputs
from panoptic2.structures import Instances


def _instances(masks, scores, classes):
    return Instances(
        tuple(masks[0].shape),
        pred_masks=torch.stack(masks),
        scores=torch.tensor(scores),
        pred_classes=torch.tensor(classes),
    )


def _empty(height, width):
    return Instances(
        (height, width),
        pred_masks=torch.zeros(0, height, width, dtype=torch.bool),
        scores=torch.zeros(0),
        pred_classes=torch.zeros(0, dtype=torch.int64),
    )


def _rect(y0, y1, x0, x1, size=(10, 10)):
    m = torch.zeros(size, dtype=torch.bool)
    m[y0:y1, x0:x1] = True
    return m


def _fuse(inst, sem, **kwargs):
    args = dict(overlap_threshold=0.5, stuff_area_thresh=4, instances_score_thresh=0.5)
    args.update(kwargs)
    return combine_semantic_and_instance_outputs(inst, sem, [4, 5, 6], **args)


def test_instances_by_score_with_overlap_skipping():
    a = _rect(0, 4, 0, 4)  # 16 px
    b = _rect(2, 6, 2, 6)  # 16 px, 4 overlap with a (25%): pasted without the overlap
    c = _rect(0, 4, 1, 5)  # 16 px, 12 overlap with a (75%): skipped
    inst = _instances([b, a, c], [0.7, 0.9, 0.8], [1, 2, 3])
    sem = torch.zeros(10, 10, dtype=torch.int64)
    ids, info = _fuse(inst, sem)
    assert [(s["id"], s["category_id"], s["instance_id"]) for s in info] == [(1, 2, 1), (2, 1, 0)]
    assert all(s["isthing"] for s in info)
    assert [s["score"] for s in info] == pytest.approx([0.9, 0.7])
    assert torch.equal(ids == 1, a)
    assert torch.equal(ids == 2, b & ~a)
    assert int((ids == -1).sum()) == 100 - 16 - 12  # semantic "things" (0) stays void


def test_score_cut():
    inst = _instances([_rect(0, 2, 0, 2), _rect(5, 7, 5, 7)], [0.49, 0.51], [1, 1])
    ids, info = _fuse(inst, torch.zeros(10, 10, dtype=torch.int64))
    assert len(info) == 1 and info[0]["instance_id"] == 1
    assert not (ids[0:2, 0:2] > 0).any()


def test_stuff_area_limit_and_unassigned_pixels_only():
    sem = torch.zeros(10, 10, dtype=torch.int64)
    sem[:, 5:] = 1  # 50 px of stuff label 1 -> category 4
    sem[0, 0:3] = 2  # 3 px of stuff label 2: under the limit 4
    inst = _instances([_rect(0, 10, 8, 10)], [0.9], [3])  # covers 20 px of the stuff
    ids, info = _fuse(inst, sem)
    assert [(s["category_id"], s["isthing"]) for s in info] == [(3, True), (4, False)]
    stuff = info[1]
    assert stuff["area"] == 30 and int((ids == stuff["id"]).sum()) == 30
    assert (ids[0, 0:3] == -1).all()
    ids, info = _fuse(inst, sem, stuff_area_thresh=31)
    assert [s["isthing"] for s in info] == [True]


def test_output_format_and_empty_instances():
    sem = torch.full((6, 8), 3, dtype=torch.int64)
    ids, info = _fuse(_empty(6, 8), sem)
    assert ids.dtype == torch.int64 and ids.shape == (6, 8)
    assert (ids == 1).all()
    assert info == [{"id": 1, "category_id": 6, "isthing": False, "area": 48}]


def test_unknown_stuff_label_is_an_error():
    with pytest.raises(ValueError, match="stuff label"):
        _fuse(_empty(2, 2), torch.full((2, 2), 9))

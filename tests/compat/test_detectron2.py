"""Tests of panoptic2/compat/detectron2.py: our Panoptic FPN outputs, converted, equal what
Detectron2's fusion computes from the same instances and semantic map."""

import pytest
import torch

from panoptic2.compat import to_detectron2_instances, to_detectron2_outputs, to_detectron2_panoptic
from panoptic2.config import load_config
from panoptic2.data.label_space import LabelSpace
from panoptic2.modeling import build_model
from panoptic2.modeling.meta_arch.panoptic_fpn_fusion import combine_semantic_and_instance_outputs
from panoptic2.structures import Instances

# Dataset ids deliberately out of order and sparse: things 7, 3, 5; stuff 20, 11.
CATEGORIES = [
    {"id": 7, "name": "car", "isthing": 1},
    {"id": 20, "name": "sky", "isthing": 0},
    {"id": 3, "name": "person", "isthing": 1},
    {"id": 11, "name": "grass", "isthing": 0},
    {"id": 5, "name": "dog", "isthing": 1},
]
SPACE = LabelSpace.from_categories(CATEGORIES)  # things 1..3 (ids 3, 5, 7), stuff 4..5 (11, 20)


def detectron2_fusion(instances, semantic, overlap, stuff_area, score_thresh):
    """Detectron2's ``combine_semantic_and_instance_outputs`` as its docs and code behave,
    in its conventions: ``pred_classes`` thing indices, ``semantic`` 0 things / 1..S stuff;
    int32 ids with void 0; things by decreasing score."""
    ids = torch.zeros(semantic.shape, dtype=torch.int32)
    segments = []
    for i in torch.argsort(-instances.scores).tolist():
        score = float(instances.scores[i])
        if score < score_thresh:
            break
        mask = instances.pred_masks[i]
        area = int(mask.sum())
        if area == 0:
            continue
        taken = int((mask & (ids > 0)).sum())
        if taken / area > overlap:
            continue
        ids[mask & (ids == 0)] = len(segments) + 1
        segments.append(
            {
                "id": len(segments) + 1,
                "isthing": True,
                "score": score,
                "category_id": int(instances.pred_classes[i]),
                "instance_id": i,
            }
        )
    for label in torch.unique(semantic).tolist():
        if label == 0:
            continue
        mask = (semantic == label) & (ids == 0)
        if int(mask.sum()) < stuff_area:
            continue
        ids[mask] = len(segments) + 1
        segments.append(
            {
                "id": len(segments) + 1,
                "isthing": False,
                "category_id": label,
                "area": int(mask.sum()),
            }
        )
    return ids, segments


def _random_outputs(seed: int, size=(48, 64), n=9):
    gen = torch.Generator().manual_seed(seed)
    h, w = size
    masks = torch.zeros(n, h, w, dtype=torch.bool)
    for i in range(n):  # overlapping rectangles
        y0, x0 = (
            torch.randint(0, h - 8, (1,), generator=gen),
            torch.randint(0, w - 8, (1,), generator=gen),
        )
        dy, dx = torch.randint(4, 24, (2,), generator=gen).tolist()
        masks[i, y0 : y0 + dy, x0 : x0 + dx] = True
    scores = torch.randperm(100, generator=gen)[:n].float() / 100  # distinct: no ties
    classes = torch.tensor(SPACE.thing_ids)[torch.randint(0, 3, (n,), generator=gen)]
    instances = Instances(size, pred_masks=masks, scores=scores, pred_classes=classes)
    # Stuff labels 1..2 in blocks, "things" (0) elsewhere.
    semantic = torch.zeros(size, dtype=torch.int64)
    semantic[: h // 2, : w // 2] = 1
    semantic[h // 2 :, w // 3 :] = 2
    semantic[h // 3 : h // 2, :] = 0
    return instances, semantic


@pytest.mark.parametrize("seed", range(5))
def test_converted_panoptic_equals_detectron2_fusion(seed):
    instances, semantic = _random_outputs(seed)
    params = {"overlap_threshold": 0.5, "stuff_area_thresh": 40, "instances_score_thresh": 0.3}
    ours = combine_semantic_and_instance_outputs(
        instances, semantic, SPACE.panoptic_fpn_stuff_ids, **params
    )
    theirs_instances = to_detectron2_instances(instances, SPACE)
    expected_ids, expected_segments = detectron2_fusion(
        theirs_instances, semantic, *params.values()
    )
    assert len(expected_segments) >= 4  # the case exercises things, overlaps and stuff

    ids, segments = to_detectron2_panoptic(ours, SPACE)
    assert ids.dtype == torch.int32
    assert torch.equal(ids, expected_ids)
    assert segments == expected_segments
    assert (ours[0] == -1).any() and (ids == 0).any()  # void exists and moved to 0


def test_instances_classes_become_thing_indices_sorted_by_dataset_id():
    inst = Instances((2, 2), pred_classes=torch.tensor([3, 1, 2]), scores=torch.ones(3))
    out = to_detectron2_instances(inst, SPACE)
    # Contiguous 1, 2, 3 are dataset ids 3, 5, 7: Detectron2's thing indices 0, 1, 2.
    assert out.pred_classes.tolist() == [2, 0, 1]
    assert inst.pred_classes.tolist() == [3, 1, 2]  # the input is not modified
    assert torch.equal(out.scores, inst.scores)
    empty = Instances((2, 2), pred_classes=torch.zeros(0, dtype=torch.int64))
    assert len(to_detectron2_instances(empty, SPACE)) == 0
    with pytest.raises(ValueError, match=r"Predicted classes \[4\] are not thing ids"):
        to_detectron2_instances(Instances((2, 2), pred_classes=torch.tensor([4])), SPACE)


def test_bad_panoptic_inputs_are_errors():
    ids = torch.tensor([[1, -1]])
    with pytest.raises(ValueError, match="not a stuff class"):
        to_detectron2_panoptic(
            (ids, [{"id": 1, "category_id": 1, "isthing": False, "area": 1}]), SPACE
        )
    with pytest.raises(ValueError, match="uses id 0"):
        to_detectron2_panoptic((torch.tensor([[0, 1]]), []), SPACE)


def test_model_outputs_convert(tmp_path):
    """A small Panoptic FPN's own outputs: classes, ids and segments in Detectron2's form."""
    cfg = load_config(
        "configs/shapes/panoptic_fpn_R18_1x.yaml",
        [
            "MODEL.DEVICE", "cpu", "DATASETS.TRAIN", "[]", "DATASETS.TEST", "[]",
            "MODEL.ROI_HEADS.NUM_CLASSES", "3", "MODEL.SEM_SEG_HEAD.NUM_CLASSES", "3",
            "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0",
            "MODEL.PANOPTIC_FPN.COMBINE.INSTANCES_CONFIDENCE_THRESH", "0.0",
            "MODEL.PANOPTIC_FPN.COMBINE.STUFF_AREA_LIMIT", "1",
        ],
    )  # fmt: skip
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    model.label_space = SPACE
    image = torch.randint(0, 256, (3, 64, 80), dtype=torch.uint8)
    with torch.no_grad():
        ours = model([{"image": image}])[0]
    theirs = to_detectron2_outputs(ours, SPACE)
    assert theirs["sem_seg"] is ours["sem_seg"]
    assert set(theirs["instances"].pred_classes.tolist()) <= {0, 1, 2}
    assert len(ours["instances"]) > 0
    ids, segments = theirs["panoptic_seg"]
    expected = detectron2_fusion(theirs["instances"], ours["sem_seg"].argmax(dim=0), 0.5, 1, 0.0)
    assert torch.equal(ids, expected[0]) and segments == expected[1]

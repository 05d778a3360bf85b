"""Tests of panoptic2.utils.visualizer: colours, outlines, labels and inputs of each draw."""

import os

import cv2
import numpy as np
import pytest
import torch
from pycocotools import mask as mask_util

from panoptic2.data import MetadataCatalog
from panoptic2.data.datasets import load_coco_panoptic_json
from panoptic2.data.datasets.shapes import generate_shapes, shapes_metadata
from panoptic2.data.label_space import LabelSpace
from panoptic2.data.panoptic_label import read_panoptic_png
from panoptic2.structures import BitMasks, Boxes, Instances
from panoptic2.utils.colormap import JITTER, jitter_color, random_color
from panoptic2.utils.visualizer import ColorMode, Visualizer

H, W = 64, 80
SKY, ROAD, CAR, PERSON = 1, 2, 3, 4
COLORS = [(90, 90, 90), (70, 130, 180), (128, 64, 128), (0, 0, 142), (220, 20, 60)]
LS = LabelSpace(
    classes=["void", "sky", "road", "car", "person"],
    colors=COLORS,
    thing_ids=[CAR, PERSON],
    stuff_ids=[SKY, ROAD],
    thing_dataset_ids=[CAR, PERSON],
    stuff_dataset_ids=[SKY, ROAD],
    label_divisor=1000,
    ignore_label=0,
)
BLACK = np.zeros((H, W, 3), np.uint8)


def _panoptic() -> tuple[np.ndarray, list[dict]]:
    """DeepLab2-style ids (category * 1000 + instance), -1 void, and their segments_info."""
    ids = np.full((H, W), SKY * 1000, np.int64)
    ids[30:] = ROAD * 1000
    ids[35:56, 5:36] = CAR * 1000 + 1
    ids[4:26, 44:62] = PERSON * 1000 + 1
    ids[30:51, 50:72] = PERSON * 1000 + 2
    ids[58:, 40:] = -1
    info = [
        {"id": SKY * 1000, "category_id": SKY, "isthing": False},
        {"id": ROAD * 1000, "category_id": ROAD, "isthing": False},
        {"id": 3001, "category_id": CAR, "isthing": True, "score": 0.87},
        {"id": 4001, "category_id": PERSON, "isthing": True, "score": 0.5},
        {"id": 4002, "category_id": PERSON, "isthing": True, "score": 0.9},
    ]
    return ids, info


def _inner_boundary(mask: np.ndarray) -> np.ndarray:
    """Pixels of ``mask`` with a 4-neighbour outside it (the image border does not count)."""
    padded = np.pad(mask, 1, mode="edge")
    eroded = cv2.erode(
        padded.astype(np.uint8), np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], np.uint8)
    )
    return mask & ~eroded[1:-1, 1:-1].astype(bool)


def test_panoptic_fill_colours_exact_for_stuff_and_jittered_for_things():
    ids, info = _panoptic()
    out = Visualizer(BLACK, LS).draw_panoptic_seg(
        ids, info, alpha=1.0, labels=False, outlines=False
    )
    img = out.get_image()
    assert img.shape == (H, W, 3) and img.dtype == np.uint8
    for sid, cls in ((1000, SKY), (2000, ROAD)):
        assert (img[ids == sid] == COLORS[cls]).all()
    thing_colors = {}
    for sid, cls in ((3001, CAR), (4001, PERSON), (4002, PERSON)):
        pixels = img[ids == sid]
        assert (pixels == pixels[0]).all(), "one colour per instance"
        assert np.abs(pixels[0].astype(int) - COLORS[cls]).max() <= JITTER
        thing_colors[sid] = tuple(pixels[0])
    assert thing_colors[4001] != thing_colors[4002], "instances of a class are told apart"
    assert (img[ids == -1] == 0).all(), "void is left as the image"


def test_panoptic_every_segment_filled_outlined_and_deterministic():
    ids, info = _panoptic()
    img = Visualizer(BLACK, LS).draw_panoptic_seg(torch.from_numpy(ids), info).get_image()
    again = Visualizer(BLACK, LS).draw_panoptic_seg(ids, info).get_image()
    np.testing.assert_array_equal(img, again)
    assert (img[ids == -1] == 0).all()
    for seg in info:
        mask = ids == seg["id"]
        assert img[mask].any(axis=-1).all(), f"segment {seg['id']} has unchanged pixels"
        edge = _inner_boundary(mask)
        interior = mask & ~cv2.dilate(edge.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        colors, counts = np.unique(img[interior], axis=0, return_counts=True)
        fill = colors[counts.argmax()]
        outline = img[edge]
        assert (outline == outline[0]).all(), f"segment {seg['id']}: one outline colour"
        assert outline[0].astype(int).sum() < fill.astype(int).sum(), "outlines are darker"


def test_panoptic_model_outputs_deeplab_ids_and_tuple():
    ids, info = _panoptic()
    ids[0:3, 0:10] = 0  # class 0 is this label space's ignore label: void
    no_scores = [{k: v for k, v in s.items() if k != "score"} for s in info]
    expected = Visualizer(BLACK, LS).draw_panoptic_seg(ids, no_scores).get_image()
    from_tensor = Visualizer(BLACK, LS).draw_panoptic_seg(torch.from_numpy(ids), None).get_image()
    np.testing.assert_array_equal(from_tensor, expected)
    assert (from_tensor[0:3, 0:10] == 0).all()
    as_tuple = Visualizer(BLACK, LS).draw_panoptic_seg((torch.from_numpy(ids), info)).get_image()
    listed = Visualizer(BLACK, LS).draw_panoptic_seg(ids, info).get_image()
    np.testing.assert_array_equal(as_tuple, listed)
    with pytest.raises(ValueError, match="shape"):
        Visualizer(BLACK, LS).draw_panoptic_seg(ids[:10])


def test_metadata_forms_give_the_same_picture():
    ids, info = _panoptic()
    name = "test_visualizer_metadata"
    MetadataCatalog.get(name).set(**LS.as_metadata())
    try:
        pictures = [
            Visualizer(BLACK, meta).draw_panoptic_seg(ids, info).get_image()
            for meta in (LS, MetadataCatalog.get(name), LS.as_metadata())
        ]
    finally:
        MetadataCatalog.remove(name)
    np.testing.assert_array_equal(pictures[0], pictures[1])
    np.testing.assert_array_equal(pictures[0], pictures[2])
    # Without metadata, classes take the fixed palette's colours.
    out = Visualizer(BLACK).draw_panoptic_seg(ids, info, alpha=1.0, labels=False, outlines=False)
    assert (out.get_image()[ids == 1000] == random_color(SKY)).all()
    # ... and DeepLab2 ids are split with Detectron2's label_divisor 1000.
    inferred = Visualizer(BLACK).draw_panoptic_seg(
        torch.from_numpy(ids), None, alpha=1.0, labels=False, outlines=False
    )
    assert (inferred.get_image()[ids == 1000] == random_color(SKY)).all()
    assert (inferred.get_image()[ids == 2000] == random_color(ROAD)).all()
    empty = MetadataCatalog.get("test_visualizer_empty")
    assert Visualizer(BLACK, empty).label_space is None
    MetadataCatalog.remove("test_visualizer_empty")


def test_sem_seg_scores_equal_argmax_and_ignore_untouched():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    labels = np.full((H, W), SKY)
    labels[25:] = ROAD
    labels[40:60, 10:40] = CAR
    labels[:, 70:] = 0  # the ignore label
    scores = rng.random((5, H, W)).astype(np.float32)
    scores[labels, np.arange(H)[:, None], np.arange(W)] += 1.0
    from_scores = Visualizer(image, LS).draw_sem_seg(torch.from_numpy(scores)).get_image()
    from_ids = Visualizer(image, LS).draw_sem_seg(labels).get_image()
    np.testing.assert_array_equal(from_scores, from_ids)
    assert (from_ids[labels == 0] == image[labels == 0]).all()
    assert (from_ids[labels != 0] != image[labels != 0]).any(axis=-1).mean() > 0.95
    flat = Visualizer(BLACK, LS).draw_sem_seg(labels, alpha=1.0, labels=False, outlines=False)
    assert (flat.get_image()[labels == CAR] == COLORS[CAR]).all()
    with pytest.raises(ValueError, match="integer ids"):
        Visualizer(image, LS).draw_sem_seg(labels.astype(np.float32))


@pytest.mark.parametrize("mode", [ColorMode.IMAGE, ColorMode.SEGMENTATION])
def test_instance_boxes_masks_and_labels(mode):
    boxes = [(10, 25, 40, 55), (70, 50, 110, 90)]
    masks = np.zeros((2, 96, 128), bool)
    for i, (x0, y0, x1, y1) in enumerate(boxes):
        masks[i, y0 + 3 : y1 - 3, x0 + 3 : x1 - 3] = True
    inst = Instances(
        (96, 128),
        pred_boxes=Boxes(torch.tensor(boxes, dtype=torch.float32)),
        scores=torch.tensor([0.9, 0.6]),
        pred_classes=torch.tensor([CAR, PERSON]),
        pred_masks=BitMasks(torch.from_numpy(masks)),
    )
    black = np.zeros((96, 128, 3), np.uint8)
    img = Visualizer(black, LS, instance_mode=mode).draw_instance_predictions(inst).get_image()
    alpha = 0.5 if mode == ColorMode.IMAGE else 0.8
    for i, (x0, y0, x1, y1) in enumerate(boxes):
        cls = int(inst.pred_classes[i])
        color = COLORS[cls] if mode == ColorMode.SEGMENTATION else jitter_color(COLORS[cls], i)
        for edge in (img[y0, x0:x1], img[y1 - 1, x0:x1], img[y0:y1, x0], img[y0:y1, x1 - 1]):
            assert (edge == color).all()
        fill = np.round(np.multiply(color, alpha))
        assert (img[y0 + 4 : y1 - 4, x0 + 4 : x1 - 4] == fill).all()
        assert not img[y0 + 1 : y0 + 3, x0 + 1 : x1 - 1].any(), "between box and mask"
        assert img[y0 - 10 : y0, x0 : x0 + 20].any(), "the label is written above the box"
    assert not img[:, :9].any() and not img[91:].any(), "nothing away from the instances"


def test_text_drawn_only_where_it_fits():
    color, edge = (0, 0, 142), (200, 200, 0)
    for size, expect_text in ((3, False), (40, True)):
        mask = np.zeros((H, W), bool)
        mask[10 : 10 + size, 10 : 10 + int(size * 1.5)] = True
        img = (
            Visualizer(BLACK, LS)
            .draw_binary_mask(mask, color, edge_color=edge, text="car", alpha=1.0)
            .get_image()
        )
        assert not img[~mask].any()
        inside = img[mask]
        plain = (inside == color).all(axis=-1) | (inside == edge).all(axis=-1)
        assert (not plain.all()) == expect_text


def test_scale_and_bw_mode():
    ids, info = _panoptic()
    kwargs = dict(alpha=1.0, labels=False, outlines=False)
    small = Visualizer(BLACK, LS).draw_panoptic_seg(ids, info, **kwargs).get_image()
    big = Visualizer(BLACK, LS, scale=2).draw_panoptic_seg(ids, info, **kwargs).get_image()
    assert big.shape == (2 * H, 2 * W, 3)
    np.testing.assert_array_equal(big, small.repeat(2, axis=0).repeat(2, axis=1))
    image = np.random.default_rng(1).integers(0, 256, (H, W, 3), dtype=np.uint8)
    bw = Visualizer(image, LS, instance_mode=ColorMode.IMAGE_BW).draw_panoptic_seg(ids, info)
    void = bw.get_image()[ids == -1].astype(int)
    assert (void[:, 0] == void[:, 1]).all() and (void[:, 1] == void[:, 2]).all()


def test_annotations_boxes_masks_and_crowd():
    dic = {
        "height": H,
        "width": W,
        "annotations": [
            {
                "bbox": [10, 20, 30, 25],
                "bbox_mode": "XYWH_ABS",
                "category_id": CAR,
                "iscrowd": 0,
                "segmentation": [[14, 24, 36, 24, 36, 41, 14, 41]],
            },
            {"bbox": [50, 35, 75, 60], "bbox_mode": "XYXY_ABS", "category_id": PERSON},
        ],
    }
    img = Visualizer(BLACK, LS).draw_dataset_dict(dic).get_image()
    car = jitter_color(COLORS[CAR], 0)
    assert (img[44, 10:40] == car).all() and (img[20:45, 39] == car).all()
    assert (img[28:38, 18:32] == np.round(np.multiply(car, 0.5))).all()
    assert (img[59, 50:75] == jitter_color(COLORS[PERSON], 1)).all()
    assert not img[40:55, 55:70].any(), "a box without a mask is not filled"
    crowd = np.zeros((H, W), np.uint8)
    crowd[30:60, 10:70] = 1
    rle = mask_util.encode(np.asfortranarray(crowd))
    anno = {"bbox": [10, 30, 60, 30], "category_id": PERSON, "iscrowd": 1, "segmentation": rle}
    img = Visualizer(BLACK, LS).draw_dataset_dict({"annotations": [anno]}).get_image()
    inside = img[35:55, 15:65].reshape(-1, 3)
    hatched = (inside == np.round(np.multiply(COLORS[PERSON], 0.5))).all(axis=-1)
    assert 0.3 < hatched.mean() < 0.7 and (hatched | ~inside.any(axis=-1)).all()


@pytest.fixture(scope="module")
def shapes_val(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("shapes_vis"))
    generate_shapes(root, "coco", num_train=0, num_val=2, image_size=(H, W))
    name = "test_visualizer_shapes_val"
    MetadataCatalog.get(name).set(**shapes_metadata())
    ann = os.path.join(root, "annotations")
    dicts = load_coco_panoptic_json(
        os.path.join(ann, "panoptic_val2017.json"),
        os.path.join(root, "val2017"),
        os.path.join(ann, "panoptic_val2017"),
        shapes_metadata(),
    )
    yield name, dicts
    MetadataCatalog.remove(name)


def test_dataset_dict_panoptic_labels_crowd_and_save(shapes_val, tmp_path):
    name, dicts = shapes_val
    saw_crowd = False
    for i, dic in enumerate(dicts):
        image = cv2.cvtColor(cv2.imread(dic["file_name"]), cv2.COLOR_BGR2RGB)
        ids = read_panoptic_png(dic["pan_seg_file_name"]).astype(np.int64)
        vis = Visualizer(image, MetadataCatalog.get(name), scale=2)
        canvas = vis.output.get_image()  # the image at scale 2, before drawing
        out = vis.draw_dataset_dict(dic)
        img, big_ids = out.get_image(), ids.repeat(2, axis=0).repeat(2, axis=1)
        assert (img[big_ids == 0] == canvas[big_ids == 0]).all(), "void is left as the image"
        for seg in dic["segments_info"]:
            mask = big_ids == seg["id"]
            changed = (img[mask] != canvas[mask]).any(axis=-1)
            if seg["iscrowd"]:  # hatched: stripes of the image between the coloured ones
                saw_crowd = True
                assert 0.2 < changed.mean() < 0.9
            else:
                assert changed.mean() > 0.9
        ids[ids == 0] = -1
        plain = Visualizer(image, MetadataCatalog.get(name), scale=2).draw_panoptic_seg(
            ids, dic["segments_info"], alpha=0.5, labels=False
        )
        text = (out.get_image() != plain.get_image()).any(axis=-1)
        assert text.sum() > 50, "labels are written"
        path = str(tmp_path / f"gt_{i}.png")
        out.save(path)
        loaded = cv2.cvtColor(cv2.imread(path), cv2.COLOR_BGR2RGB)
        np.testing.assert_array_equal(loaded, out.get_image())
    assert saw_crowd

"""annotation_to_mask / annotation_masks / annotation_boxes against hand-built references."""

import numpy as np
import pytest

from panoptic2.data.mappers.instance_annotations import (
    annotation_boxes,
    annotation_masks,
    annotation_to_mask,
)

H, W = 10, 12


def column_major_counts(mask: np.ndarray) -> list[int]:
    """COCO's uncompressed RLE by hand: run lengths over the column-major pixels, zeros first."""
    flat = mask.flatten(order="F").astype(np.uint8)
    counts, value, run = [], 0, 0
    for v in flat:
        if v == value:
            run += 1
        else:
            counts.append(run)
            value, run = v, 1
    counts.append(run)
    return counts


def test_rectangle_polygon_covers_the_pixels_between_its_corners():
    # COCO polygons trace pixel corners: x 2..7, y 3..8 covers columns 2-6, rows 3-7.
    expected = np.zeros((H, W), bool)
    expected[3:8, 2:7] = True
    mask = annotation_to_mask([[2, 3, 7, 3, 7, 8, 2, 8]], H, W)
    assert mask.dtype == bool and np.array_equal(mask, expected)


def test_two_polygons_merge_and_empty_list_is_empty():
    expected = np.zeros((H, W), bool)
    expected[0:2, 0:2] = True
    expected[5:7, 8:11] = True
    polys = [[0, 0, 2, 0, 2, 2, 0, 2], [8, 5, 11, 5, 11, 7, 8, 7]]
    assert np.array_equal(annotation_to_mask(polys, H, W), expected)
    assert not annotation_to_mask([], H, W).any()


def test_rle_uncompressed_and_compressed_equal_the_hand_mask():
    from pycocotools import mask as mask_util

    expected = np.zeros((H, W), bool)
    expected[1:4, 3] = True
    expected[6:10, 5:9] = True
    uncompressed = {"size": [H, W], "counts": column_major_counts(expected)}
    assert np.array_equal(annotation_to_mask(uncompressed, H, W), expected)
    compressed = mask_util.frPyObjects(uncompressed, H, W)
    compressed["counts"] = compressed["counts"].decode("ascii")
    assert np.array_equal(annotation_to_mask(compressed, H, W), expected)
    with pytest.raises(ValueError, match="RLE of size"):
        annotation_to_mask(compressed, H + 1, W)
    with pytest.raises(TypeError, match="Unknown segmentation format"):
        annotation_to_mask("not a mask", H, W)


def test_annotation_masks_and_their_errors_name_the_annotation():
    annos = [
        {"id": 4, "segmentation": [[2, 3, 7, 3, 7, 8, 2, 8]]},
        {"id": 5, "segmentation": {"size": [H, W], "counts": [H * W]}},
    ]
    masks = annotation_masks(annos, H, W, "'x.png'")
    assert masks.shape == (2, H, W) and masks[0].sum() == 25 and not masks[1].any()
    assert annotation_masks([], H, W).shape == (0, H, W)
    with pytest.raises(ValueError, match=r"Annotation 6 of 'x\.png' has no 'segmentation'"):
        annotation_masks([{"id": 6, "bbox": [0, 0, 1, 1]}], H, W, "'x.png'")
    bad = {"id": 7, "segmentation": {"size": [3, 3], "counts": [9]}}
    with pytest.raises(ValueError, match=r"Annotation 7 of 'x\.png' has a bad 'segmentation'"):
        annotation_masks([bad], H, W, "'x.png'")


def test_annotation_boxes_convert_each_mode_to_xyxy():
    annos = [
        {"bbox": [1, 2, 3, 4], "bbox_mode": "XYWH_ABS"},
        {"bbox": [1, 2, 3, 4], "bbox_mode": "XYXY_ABS"},
        {"bbox": [0.5, 1, 2, 2.5], "bbox_mode": 1},  # Detectron2's integer XYWH_ABS
    ]
    expected = [[1, 2, 4, 6], [1, 2, 3, 4], [0.5, 1, 2.5, 3.5]]
    boxes = annotation_boxes(annos)
    assert boxes.dtype == np.float64 and boxes.tolist() == expected
    assert annotation_boxes([]).shape == (0, 4)
    with pytest.raises(ValueError, match=r"Annotation 3 of 'y' lacks \['bbox_mode'\]"):
        annotation_boxes([{"id": 3, "bbox": [0, 0, 1, 1]}], "'y'")

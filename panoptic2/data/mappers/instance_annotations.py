"""Instance annotations of standard dicts (COCO polygons, RLE, boxes) as arrays.

The one decoder of instance segmentations, shared by the mappers, the visualizer and the
tools: polygons (list of flat ``[x0, y0, x1, y1, ...]``) and COCO RLE (compressed or
uncompressed counts) are rasterised by ``pycocotools``. Masks are decoded at the image's
original size and then moved with the image by the augmentations (nearest neighbour), so
an RLE and the polygon that traces it give the same augmented mask.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from pycocotools import mask as mask_util

from panoptic2.structures import BoxMode

__all__ = ["annotation_boxes", "annotation_masks", "annotation_to_mask"]


def annotation_to_mask(segmentation: Any, height: int, width: int) -> np.ndarray:
    """Polygons (list of flat ``[x0, y0, x1, y1, ...]``) or a COCO RLE dict to a bitmask.

    Args:
        segmentation: Polygons, a compressed RLE dict, or an uncompressed RLE (list counts).
        height: Image height.
        width: Image width.

    Returns:
        ``(height, width)`` bool mask.

    Raises:
        ValueError: an RLE whose size is not ``(height, width)``.
        TypeError: an unknown segmentation format.
    """
    if isinstance(segmentation, list):
        if not segmentation:
            return np.zeros((height, width), dtype=bool)
        rle = mask_util.merge(mask_util.frPyObjects(segmentation, height, width))
    elif isinstance(segmentation, dict):
        rle = segmentation
        if isinstance(rle.get("counts"), list):
            rle = mask_util.frPyObjects(rle, height, width)
        if tuple(rle["size"]) != (height, width):
            raise ValueError(f"RLE of size {rle['size']} for an image of {(height, width)}")
    else:
        raise TypeError(f"Unknown segmentation format {type(segmentation).__name__}")
    return mask_util.decode(rle).astype(bool)


def annotation_masks(
    annotations: Sequence[Mapping[str, Any]], height: int, width: int, where: str = ""
) -> np.ndarray:
    """The masks of annotations that all have a ``segmentation``.

    Args:
        annotations: Instance annotations with ``segmentation``.
        height: Image height.
        width: Image width.
        where: Names the image in errors, e.g. ``"'x.jpg' (dataset 'd')"``.

    Returns:
        ``(N, height, width)`` bool.

    Raises:
        ValueError: an annotation has no ``segmentation`` or a bad one (names it).
    """
    masks = np.zeros((len(annotations), height, width), dtype=bool)
    for i, a in enumerate(annotations):
        if a.get("segmentation") is None:
            raise ValueError(f"Annotation {a.get('id', i)!r} of {where} has no 'segmentation'.")
        try:
            masks[i] = annotation_to_mask(a["segmentation"], height, width)
        except (TypeError, ValueError) as e:
            raise ValueError(
                f"Annotation {a.get('id', i)!r} of {where} has a bad 'segmentation': {e}"
            ) from e
    return masks


def annotation_boxes(annotations: Sequence[Mapping[str, Any]], where: str = "") -> np.ndarray:
    """The boxes of annotations (``bbox`` in its ``bbox_mode``) as XYXY.

    Args:
        annotations: Instance annotations with ``bbox`` and ``bbox_mode``.
        where: Names the image in errors.

    Returns:
        ``(N, 4)`` float64 ``(x0, y0, x1, y1)`` absolute boxes.

    Raises:
        ValueError: an annotation lacks ``bbox``/``bbox_mode`` or its box is not 4 numbers.
    """
    boxes = np.zeros((len(annotations), 4), dtype=np.float64)
    for i, a in enumerate(annotations):
        missing = [k for k in ("bbox", "bbox_mode") if k not in a]
        if missing:
            raise ValueError(f"Annotation {a.get('id', i)!r} of {where} lacks {missing}.")
        box = [float(v) for v in a["bbox"]]
        boxes[i] = BoxMode.convert(box, a["bbox_mode"], BoxMode.XYXY_ABS)
    return boxes

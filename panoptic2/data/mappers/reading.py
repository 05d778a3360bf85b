"""Read a dataset dict's image and labels into arrays, with errors that name the file.

Every reader accepts either the files named by a standard dataset dict or the decoded arrays
a record reader already put in the dict (``image``, ``panoptic_label``, ``sem_seg``), so
mappers work the same on folders and on sharded records.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from panoptic2.data.datasets.file_checks import rgb2id  # re-exported: part of this API
from panoptic2.utils.file_io import PathManager
from panoptic2.utils.panoptic_png import read_panoptic_png
from panoptic2.utils.segment_ids import default_lookup, unique_ids

__all__ = [
    "check_label_size",
    "panoptic_from_segments",
    "read_image",
    "read_panoptic_label",
    "read_sem_seg",
    "rgb2id",
]


def _where(dataset_dict: dict[str, Any]) -> str:
    """``" (image_id X, dataset D)"`` for error messages."""
    parts = [f"image_id {dataset_dict.get('image_id')!r}"]
    if "dataset_name" in dataset_dict:
        parts.append(f"dataset {dataset_dict['dataset_name']!r}")
    return f" ({', '.join(parts)})"


def _open(path: str, what: str, dataset_dict: dict[str, Any]) -> Image.Image:
    try:
        with PathManager.open(path, "rb") as f:
            img = Image.open(f)
            img.load()  # decode now, inside the try, so truncated files fail here
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} file not found: '{path}'{_where(dataset_dict)}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise ValueError(f"Cannot decode {what} file '{path}'{_where(dataset_dict)}: {e}") from None
    return img


def read_image(dataset_dict: dict[str, Any], image_format: str = "RGB") -> np.ndarray:
    """The sample's image as ``(H, W, 3)`` uint8 in ``image_format`` channel order.

    Args:
        dataset_dict: A dict with ``file_name``, or a decoded RGB ``image`` array.
        image_format: ``"RGB"`` or ``"BGR"``.

    Returns:
        ``(H, W, 3)`` uint8 array.

    Raises:
        FileNotFoundError: The image file is missing (the message names it).
        ValueError: The file cannot be decoded, or the decoded array has a wrong shape.
    """
    if image_format not in ("RGB", "BGR"):
        raise ValueError(f"image_format must be 'RGB' or 'BGR', got {image_format!r}")
    if dataset_dict.get("image") is not None:
        image = np.asarray(dataset_dict["image"])
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(
                f"Decoded image of '{dataset_dict.get('file_name')}'{_where(dataset_dict)} must "
                f"be (H, W, 3) uint8 RGB, got {image.dtype} {image.shape}"
            )
    else:
        path = dataset_dict["file_name"]
        # convert("RGB") also turns grayscale / palette / CMYK images into 3 channels.
        image = np.asarray(_open(path, "Image", dataset_dict).convert("RGB"))
    return np.ascontiguousarray(image[:, :, ::-1]) if image_format == "BGR" else image


def check_label_size(
    label: np.ndarray, image_hw: tuple[int, int], path: str, dataset_dict: dict[str, Any]
) -> None:
    """Raises ValueError naming ``path`` when a label's size differs from the image's."""
    if label.shape[:2] != tuple(image_hw):
        raise ValueError(
            f"Label '{path}' has size {label.shape[1]}x{label.shape[0]} (WxH) but its image "
            f"'{dataset_dict.get('file_name')}' is {image_hw[1]}x{image_hw[0]}{_where(dataset_dict)}"
        )


def read_sem_seg(dataset_dict: dict[str, Any], image_hw: tuple[int, int]) -> np.ndarray:
    """The semantic map as ``(H, W)`` int64 (palette PNGs give their indices).

    Args:
        dataset_dict: A dict with ``sem_seg_file_name``, or a decoded ``sem_seg`` array.
        image_hw: ``(H, W)`` of the sample's image, to check against.

    Returns:
        ``(H, W)`` int64 array.
    """
    if dataset_dict.get("sem_seg") is not None:
        label = np.asarray(dataset_dict["sem_seg"])
        path = f"<decoded sem_seg of {dataset_dict.get('file_name')}>"
    else:
        path = dataset_dict["sem_seg_file_name"]
        img = _open(path, "Semantic label", dataset_dict)
        if img.mode not in ("L", "P", "I", "I;16"):
            raise ValueError(
                f"Semantic label '{path}'{_where(dataset_dict)} must be a single-channel PNG, "
                f"got mode {img.mode}"
            )
        label = np.asarray(img)
    if label.ndim != 2:
        raise ValueError(f"Semantic label '{path}' must be (H, W), got shape {label.shape}")
    check_label_size(label, image_hw, path, dataset_dict)
    return label.astype(np.int64)


def panoptic_from_segments(
    ids: np.ndarray,
    segments_info: Iterable[dict[str, Any]],
    *,
    label_divisor: int,
    ignore_label: int,
    thing_ids: Iterable[int],
    path: str = "<panoptic>",
    dataset_dict: dict[str, Any] | None = None,
) -> np.ndarray:
    """Segment-id map + ``segments_info`` to the internal map ``semantic * divisor + instance``.

    Instances of each thing class are numbered 1, 2, ... in ``segments_info`` order (as
    DeepLab2's converters do); stuff and crowd segments get instance 0; id 0 is void.

    Args:
        ids: ``(H, W)`` integer segment ids (0 = void).
        segments_info: Segments with ``id``, contiguous ``category_id`` and ``iscrowd``.
        label_divisor: The label divisor.
        ignore_label: Semantic label of void pixels.
        thing_ids: Contiguous ids of thing classes.
        path: File the ids came from, for error messages.
        dataset_dict: The sample's dict, for error messages.

    Returns:
        ``(H, W)`` int32 panoptic map.

    Raises:
        ValueError: A segment of ``segments_info`` is absent from the map, a non-zero id of the
            map has no segment, or a class has more instances than ``label_divisor`` allows.
    """
    where = _where(dataset_dict or {})
    thing_ids = set(int(t) for t in thing_ids)
    # Distinct ids from the runs, then one table gather: np.unique(return_inverse=True)
    # would sort every pixel (8 ms at 640x480 against ~1 ms).
    present = unique_ids(ids).astype(np.int64)
    present = present[present != 0]
    rows = default_lookup()(ids, present, 0)  # void 0 -> row 0, present[k] -> k + 1
    values = np.full(len(present) + 1, ignore_label * label_divisor, dtype=np.int64)
    index = {int(v): i + 1 for i, v in enumerate(present)}
    counters: dict[int, int] = {}
    listed = set()
    for seg in segments_info:
        seg_id, cat = int(seg["id"]), int(seg["category_id"])
        if seg_id not in index:
            raise ValueError(
                f"Segment {seg_id} (category {cat}) of the JSON is missing from '{path}'{where}"
            )
        instance = 0
        if cat in thing_ids and not seg.get("iscrowd", 0):
            instance = counters[cat] = counters.get(cat, 0) + 1
            if instance >= label_divisor:
                raise ValueError(
                    f"'{path}'{where}: category {cat} has more instances than label_divisor "
                    f"{label_divisor} allows"
                )
        values[index[seg_id]] = cat * label_divisor + instance
        listed.add(seg_id)
    unlisted = sorted(set(index) - listed)
    if unlisted:
        raise ValueError(
            f"'{path}'{where} contains segment ids {unlisted[:10]} that are not in its "
            "segments_info"
        )
    return values.astype(np.int32)[rows]


def read_panoptic_label(
    dataset_dict: dict[str, Any],
    image_hw: tuple[int, int],
    *,
    label_divisor: int,
    ignore_label: int,
    thing_ids: Iterable[int],
) -> np.ndarray:
    """The sample's internal panoptic map ``(H, W)`` int32.

    Args:
        dataset_dict: A dict with ``pan_seg_file_name`` + ``segments_info``, or a decoded
            ``panoptic_label`` array (already ``semantic * divisor + instance``).
        image_hw: ``(H, W)`` of the image, to check against.
        label_divisor: The label divisor.
        ignore_label: Semantic label of void pixels.
        thing_ids: Contiguous ids of thing classes.

    Returns:
        ``(H, W)`` int32 array.
    """
    if dataset_dict.get("panoptic_label") is not None:
        label = np.asarray(dataset_dict["panoptic_label"])
        path = f"<decoded panoptic_label of {dataset_dict.get('file_name')}>"
        if label.ndim != 2:
            raise ValueError(f"{path} must be (H, W), got shape {label.shape}")
        check_label_size(label, image_hw, path, dataset_dict)
        return label.astype(np.int32)
    path = dataset_dict["pan_seg_file_name"]
    try:
        ids = read_panoptic_png(path)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"Panoptic label file not found: '{path}'{_where(dataset_dict)}"
        ) from None
    except ValueError as e:
        raise ValueError(f"{e}{_where(dataset_dict)}") from None
    check_label_size(ids, image_hw, path, dataset_dict)
    return panoptic_from_segments(
        ids,
        dataset_dict["segments_info"],
        label_divisor=label_divisor,
        ignore_label=ignore_label,
        thing_ids=thing_ids,
        path=path,
        dataset_dict=dataset_dict,
    )

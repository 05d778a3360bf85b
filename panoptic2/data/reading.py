"""Read a dataset dict's image and semantic label into arrays, with errors that name the file.

Every reader accepts either the files named by a standard dataset dict or the decoded arrays
a record reader already put in the dict (``image``, ``sem_seg``), so mappers and evaluators
work the same on folders and on sharded records. Panoptic labels are read by
:func:`panoptic2.data.panoptic_label.read_panoptic_label`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from panoptic2.utils.file_io import PathManager

__all__ = [
    "SizeMismatchError",
    "check_image_size",
    "check_label_size",
    "check_label_values",
    "describe_record",
    "read_image",
    "read_sem_seg",
]


class SizeMismatchError(ValueError):
    """An image's size differs from its dataset dict or its label (Detectron2's name)."""


def describe_record(dataset_dict: Mapping[str, Any]) -> str:
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
        raise FileNotFoundError(
            f"{what} file not found: '{path}'{describe_record(dataset_dict)}"
        ) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise ValueError(
            f"Cannot decode {what} file '{path}'{describe_record(dataset_dict)}: {e}"
        ) from None
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
                f"Decoded image of '{dataset_dict.get('file_name')}'{describe_record(dataset_dict)} must "
                f"be (H, W, 3) uint8 RGB, got {image.dtype} {image.shape}"
            )
    else:
        path = dataset_dict["file_name"]
        # convert("RGB") also turns grayscale / palette / CMYK images into 3 channels.
        image = np.asarray(_open(path, "Image", dataset_dict).convert("RGB"))
    check_image_size(dataset_dict, image)
    return np.ascontiguousarray(image[:, :, ::-1]) if image_format == "BGR" else image


def check_image_size(dataset_dict: Mapping[str, Any], image: np.ndarray) -> None:
    """Raises :class:`SizeMismatchError` when the image's size differs from the dict's.

    Outputs are resized to the dict's ``height``/``width`` and labels are checked against
    the image, so a wrong size in a JSON would otherwise go unnoticed in training and
    evaluation alike.

    Args:
        dataset_dict: a dataset dict; without ``height``/``width`` there is nothing to check.
        image: ``(H, W, ...)`` decoded image.
    """
    expected = (dataset_dict.get("height"), dataset_dict.get("width"))
    if None in expected:
        return
    h, w = image.shape[:2]
    if (int(expected[0]), int(expected[1])) != (h, w):
        raise SizeMismatchError(
            f"Image '{dataset_dict.get('file_name')}' is {w}x{h} (WxH) but its dataset dict "
            f"says {expected[1]}x{expected[0]}{describe_record(dataset_dict)}"
        )


def check_label_values(
    semantic: np.ndarray,
    num_classes: int,
    ignore_label: int,
    path: str,
    dataset_dict: Mapping[str, Any],
) -> None:
    """Raises ValueError naming ``path`` when a semantic label lies outside the classes.

    Without it, a stray value fails deep in the loss (``Target 50 is out of bounds``) with
    no file named, or, below the ignore label, trains a wrong class silently.

    Args:
        semantic: ``(H, W)`` integer class ids.
        num_classes: valid ids are ``0..num_classes - 1``.
        ignore_label: the one other allowed value.
        path: the label file, for the message.
        dataset_dict: the sample's dict, for the message.
    """
    bad = ((semantic < 0) | (semantic >= num_classes)) & (semantic != ignore_label)
    if bad.any():
        values = np.unique(semantic[bad])[:10].tolist()
        raise ValueError(
            f"Label '{path}'{describe_record(dataset_dict)} has class ids {values} outside "
            f"0..{num_classes - 1} and the ignore label {ignore_label}"
        )


def check_label_size(
    label: np.ndarray, image_hw: tuple[int, int], path: str, dataset_dict: Mapping[str, Any]
) -> None:
    """Raises :class:`SizeMismatchError` naming ``path`` when a label's size differs from
    the image's."""
    if label.shape[:2] != tuple(image_hw):
        raise SizeMismatchError(
            f"Label '{path}' has size {label.shape[1]}x{label.shape[0]} (WxH) but its image "
            f"'{dataset_dict.get('file_name')}' is {image_hw[1]}x{image_hw[0]}{describe_record(dataset_dict)}"
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
                f"Semantic label '{path}'{describe_record(dataset_dict)} must be a single-channel PNG, "
                f"got mode {img.mode}"
            )
        label = np.asarray(img)
    if label.ndim != 2:
        raise ValueError(f"Semantic label '{path}' must be (H, W), got shape {label.shape}")
    check_label_size(label, image_hw, path, dataset_dict)
    return label.astype(np.int64)

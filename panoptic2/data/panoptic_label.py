"""Panoptic labels: the COCO panoptic PNG format, and segments -> label map and back.

The one implementation of each panoptic-label rule; readers, mappers, converters, the
validator and the evaluators all call these:

* :func:`rgb2id` / :func:`id2rgb`: COCO panoptic colour <-> segment id
  (``id = R + 256 G + 256^2 B``);
* :func:`read_panoptic_png` / :func:`decode_panoptic_png` / :func:`write_panoptic_png`: the
  PNG files themselves;
* :func:`label_from_segments`: a segment-id map and its ``segments_info`` -> the internal
  label map ``semantic * label_divisor + instance`` (DeepLab2's rule; crowd and void
  handling as parameters), and :func:`read_panoptic_label`, the same for a dataset dict;
* :func:`segments_from_label`: the inverse, a label map -> segments.

The PNG format itself (:func:`rgb2id` ... :func:`write_panoptic_png`) lives in
:mod:`panoptic2.utils.panoptic_png`, which needs neither torch nor this package, and is
re-exported here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from panoptic2.utils.panoptic_png import (
    decode_panoptic_png,
    id2rgb,
    read_panoptic_png,
    rgb2id,
    write_panoptic_png,
)
from panoptic2.utils.segment_ids import default_lookup, unique_ids

if TYPE_CHECKING:
    from .label_space import LabelSpace

__all__ = [
    "check_segments",
    "decode_panoptic_png",
    "id2rgb",
    "label_from_segments",
    "panoptic_categories",
    "read_panoptic_label",
    "read_panoptic_png",
    "rgb2id",
    "segments_from_label",
    "write_panoptic_png",
    "write_panoptic_prediction",
]


def label_from_segments(
    ids: np.ndarray,
    segments: Iterable[Mapping[str, Any]],
    *,
    label_divisor: int,
    ignore_label: int,
    thing_ids: Iterable[int],
    category_map: Mapping[int, int] | None = None,
    crowd_as_ignore: bool = False,
    check_areas: bool = False,
    name: str = "<panoptic>",
    context: str = "",
) -> np.ndarray:
    """A segment-id map and its ``segments_info`` -> ``semantic * label_divisor + instance``.

    DeepLab2's rule: pixels of no segment (id 0) are void (``ignore_label``, instance 0);
    thing segments get per-class instance numbers 1, 2, ... in ``segments_info`` order;
    stuff and crowd segments get instance 0.

    Args:
        ids: ``(H, W)`` integer segment ids (0 = void), e.g. from :func:`read_panoptic_png`.
        segments: ``segments_info``: ``id``, ``category_id``, ``iscrowd`` and, for
            ``check_areas``, ``area``.
        label_divisor: the label divisor.
        ignore_label: semantic label of void pixels.
        thing_ids: contiguous ids of the thing classes.
        category_map: dataset category id -> contiguous id; None when ``category_id`` is
            already contiguous (standard dataset dicts).
        crowd_as_ignore: crowd thing segments become void instead of ``class * divisor``.
        check_areas: compare each segment's ``area`` with its pixel count.
        name: the file the ids came from, for error messages.
        context: appended to ``name`` in messages, e.g. ``" (image_id 3, dataset 'x')"``.

    Returns:
        ``(H, W)`` int32 label map.

    Raises:
        ValueError: a segment is absent from the map or listed twice, a non-zero id of the
            map has no segment, a category is unknown, a stuff segment is crowd, an area
            differs, or a class has more instances than ``label_divisor`` allows; each
            message names ``name`` and the segment.
    """
    segments = list(segments)  # iterated twice
    rows, index = _segment_rows(ids, segments, name, context, check_areas)
    thing_ids = {int(t) for t in thing_ids}
    values = np.full(len(index) + 1, ignore_label * label_divisor, dtype=np.int64)
    counters: dict[int, int] = {}
    for seg in segments:
        seg_id, category = int(seg["id"]), int(seg["category_id"])
        where = f"'{name}'{context}, segment {seg_id}"
        if category_map is not None:
            if category not in category_map:
                raise ValueError(
                    f"{where}: unknown category id {category} (known: {sorted(category_map)})"
                )
            category = int(category_map[category])
        crowd = bool(seg.get("iscrowd", 0))
        instance = 0
        if category in thing_ids:
            if crowd and crowd_as_ignore:
                category = ignore_label
            elif not crowd:
                instance = counters[category] = counters.get(category, 0) + 1
                if instance >= label_divisor:
                    raise ValueError(
                        f"{where}: more than {label_divisor - 1} instances of category "
                        f"{seg['category_id']}; they do not fit under label divisor "
                        f"{label_divisor}"
                    )
        elif crowd:
            raise ValueError(
                f"{where}: stuff category {seg['category_id']} is marked iscrowd; only thing "
                "segments may be crowd"
            )
        values[index[seg_id]] = category * label_divisor + instance
    return values.astype(np.int32)[rows]


def check_segments(
    ids: np.ndarray,
    segments: Iterable[Mapping[str, Any]],
    *,
    name: str,
    context: str = "",
    check_areas: bool = True,
) -> None:
    """Checks that a segment-id map and its ``segments_info`` describe the same segments.

    The checks of :func:`label_from_segments` that need no label space: every listed
    segment is in the map once, every non-zero id of the map is listed, and (optionally)
    each ``area`` equals the segment's pixel count.

    Args:
        ids: ``(H, W)`` integer segment ids (0 = void).
        segments: the ``segments_info``.
        name: the file the ids came from, for error messages.
        context: appended to ``name`` in messages.
        check_areas: compare ``area`` fields with the pixel counts.

    Raises:
        ValueError: the two disagree; the message names the file and the segment.
    """
    _segment_rows(ids, segments, name, context, check_areas)


def _segment_rows(
    ids: np.ndarray,
    segments: Iterable[Mapping[str, Any]],
    name: str,
    context: str,
    check_areas: bool,
) -> tuple[np.ndarray, dict[int, int]]:
    """Each pixel's row (0 void, ``k + 1`` for the k-th distinct id) and id -> row, after
    checking the map against ``segments``."""
    # Distinct ids from the runs, then one table gather: np.unique(return_inverse=True)
    # would sort every pixel (8 ms at 640x480 against ~1 ms).
    present = unique_ids(ids).astype(np.int64)
    present = present[present != 0]
    rows = default_lookup()(ids, present, 0)  # void 0 -> row 0, present[k] -> k + 1
    index = {int(v): i + 1 for i, v in enumerate(present)}
    areas = np.bincount(rows.ravel(), minlength=len(present) + 1) if check_areas else None
    listed: set[int] = set()
    for seg in segments:
        seg_id = int(seg["id"])
        where = f"'{name}'{context}, segment {seg_id}"
        if seg_id in listed:
            raise ValueError(f"{where}: listed twice in segments_info")
        listed.add(seg_id)
        if seg_id not in index:
            raise ValueError(
                f"{where} (category {seg.get('category_id')}) of the JSON is missing from the PNG"
            )
        if areas is not None and "area" in seg and int(seg["area"]) != areas[index[seg_id]]:
            raise ValueError(
                f"{where}: the PNG has {areas[index[seg_id]]} pixels of this segment, but its "
                f"'area' is {seg['area']}"
            )
    unlisted = sorted(set(index) - listed)
    if unlisted:
        raise ValueError(
            f"'{name}'{context} contains segment ids {unlisted[:10]} that are not in its "
            "segments_info"
        )
    return rows, index


def read_panoptic_label(
    dataset_dict: Mapping[str, Any],
    image_hw: tuple[int, int],
    *,
    label_divisor: int,
    ignore_label: int,
    thing_ids: Iterable[int],
) -> np.ndarray:
    """A dataset dict's internal panoptic label map ``(H, W)`` int32.

    Args:
        dataset_dict: a dict with ``pan_seg_file_name`` + ``segments_info`` (contiguous
            category ids), or a decoded ``panoptic_label`` array (already
            ``semantic * divisor + instance``) from a record reader.
        image_hw: ``(H, W)`` of the image, to check against.
        label_divisor: the label divisor.
        ignore_label: semantic label of void pixels.
        thing_ids: contiguous ids of thing classes.

    Returns:
        ``(H, W)`` int32 label map (see :func:`label_from_segments`).

    Raises:
        FileNotFoundError: the PNG is missing (names it and the image).
        ValueError: the PNG cannot be decoded, its size differs from the image's, or it
            disagrees with ``segments_info`` (names it and the image).
    """
    from .reading import check_label_size, describe_record

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
            f"Panoptic label file not found: '{path}'{describe_record(dataset_dict)}"
        ) from None
    except ValueError as e:
        raise ValueError(f"{e}{describe_record(dataset_dict)}") from None
    check_label_size(ids, image_hw, path, dataset_dict)
    return label_from_segments(
        ids,
        dataset_dict["segments_info"],
        label_divisor=label_divisor,
        ignore_label=ignore_label,
        thing_ids=thing_ids,
        name=path,
        context=describe_record(dataset_dict),
    )


def segments_from_label(
    label: np.ndarray, *, label_divisor: int, ignore_label: int, thing_ids: Iterable[int]
) -> tuple[np.ndarray, list[dict[str, Any]], int]:
    """The segments of an internal ``semantic * label_divisor + instance`` map.

    Thing pixels with instance 0 are crowd (DeepLab2's convention); ``ignore_label`` is void.

    Args:
        label: ``(H, W)`` integer label map.
        label_divisor: the label divisor.
        ignore_label: semantic label of void.
        thing_ids: contiguous ids of the thing classes.

    Returns:
        ``(ids, segments_info, void_id)``: the map itself as segment ids (int64), one segment
        per other value (``id``, contiguous ``category_id``, ``iscrowd``), and the void id.
    """
    thing_ids = {int(t) for t in thing_ids}
    void_id = ignore_label * label_divisor
    segments = []
    for value in unique_ids(label).tolist():
        category, instance = divmod(int(value), label_divisor)
        if category == ignore_label:
            continue
        segments.append(
            {
                "id": int(value),
                "category_id": category,
                "iscrowd": int(category in thing_ids and instance == 0),
            }
        )
    return label.astype(np.int64), segments, void_id


def write_panoptic_prediction(
    path: str,
    id_map: np.ndarray,
    segments_info: Sequence[Mapping[str, Any]] | None,
    label_space: LabelSpace,
) -> list[dict[str, Any]]:
    """Writes one panoptic prediction in COCO panoptic format and returns its segments.

    The PNG holds the segments renumbered ``1..N`` in ``segments_info`` order (0 void), so
    it reads back with :func:`read_panoptic_png` and with panopticapi.

    Args:
        path: the PNG to write.
        id_map: ``(H, W)`` integer segment ids of the model output, -1 void.
        segments_info: the output's segments (``id``, contiguous ``category_id``); None for
            DeepLab2 ids, whose category is ``id // label_divisor``.
        label_space: maps contiguous ids to the dataset's category ids.

    Returns:
        The annotation's ``segments_info``: ``id`` (1..N), dataset ``category_id``,
        ``iscrowd`` 0, ``isthing`` and ``area``.
    """
    id_map = np.asarray(id_map)
    if segments_info is None:
        divisor = label_space.label_divisor
        segments_info = [
            {"id": v, "category_id": v // divisor} for v in unique_ids(id_map).tolist() if v != -1
        ]
    ids = np.array([int(s["id"]) for s in segments_info], dtype=np.int64)
    rows = np.asarray(default_lookup()(id_map, ids, -1), dtype=np.int64)
    # Ids of no listed segment (and void) are void in the PNG.
    rows[rows < 0] = 0
    areas = np.bincount(rows.ravel(), minlength=len(ids) + 1)
    write_panoptic_png(path, rows)
    to_dataset = label_space.contiguous_id_to_dataset_id
    return [
        {
            "id": k + 1,
            "category_id": to_dataset[int(s["category_id"])],
            "iscrowd": 0,
            "isthing": int(label_space.is_thing(int(s["category_id"]))),
            "area": int(areas[k + 1]),
        }
        for k, s in enumerate(segments_info)
    ]


def panoptic_categories(label_space: LabelSpace) -> list[dict[str, Any]]:
    """The ``categories`` of a COCO panoptic JSON for ``label_space`` (dataset ids)."""
    return [
        {
            "id": dataset_id,
            "name": label_space.classes[contiguous],
            "isthing": int(label_space.is_thing(contiguous)),
            "color": list(label_space.colors[contiguous]),
        }
        for contiguous, dataset_id in sorted(label_space.contiguous_id_to_dataset_id.items())
    ]

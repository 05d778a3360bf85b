"""Pixel-level checks of standard dataset dicts (used by ``validate=True`` and check_dataset).

Readers only check what is cheap at load time (files exist, ids known). The functions here
decode the image and label files of one record and compare them with the dict: sizes,
label values, and for panoptic records every JSON segment against its PNG (presence, area,
bbox) and every PNG id against the JSON. They return the problems as text instead of
raising, so a tool can list all problems of a dataset at once.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from PIL import Image

from panoptic2.data.panoptic_label import read_panoptic_png
from panoptic2.structures import mask_to_xywh

__all__ = [
    "RecordReport",
    "check_panoptic_record",
    "check_record",
    "check_sem_seg_record",
    "validate_dicts",
]


@dataclasses.dataclass
class RecordReport:
    """Outcome of checking one record.

    Attributes:
        problems: human-readable problems, each naming the file (and segment) concerned.
        num_pixels: pixels of the label map (0 if it could not be read).
        num_void: void/ignored pixels of the label map.
    """

    problems: list[str] = dataclasses.field(default_factory=list)
    num_pixels: int = 0
    num_void: int = 0


def _open_image(path: str, what: str, report: RecordReport) -> Image.Image | None:
    """Opens and fully decodes an image; records a problem and returns None on failure."""
    if not os.path.isfile(path):
        report.problems.append(f"{what} '{path}' does not exist")
        return None
    try:
        img = Image.open(path)
        img.load()  # decode now: a truncated/corrupt file fails here, not in a worker
    except Exception as e:
        report.problems.append(f"{what} '{path}' cannot be decoded: {e}")
        return None
    return img


def _check_image(record: Mapping[str, Any], report: RecordReport) -> None:
    img = _open_image(record["file_name"], "image", report)
    if img is None:
        return
    expected = (record.get("height"), record.get("width"))
    if (img.height, img.width) != expected:
        report.problems.append(
            f"image '{record['file_name']}' is {img.height}x{img.width} but the dataset "
            f"dict says {expected[0]}x{expected[1]}"
        )


def check_panoptic_record(record: Mapping[str, Any], meta: Mapping[str, Any]) -> RecordReport:
    """Checks a panoptic record against its image and PNG.

    Args:
        record: a standard dict with ``file_name``, ``height``, ``width``,
            ``pan_seg_file_name`` and ``segments_info`` (contiguous ``category_id``).
        meta: dataset metadata with ``thing_dataset_id_to_contiguous_id`` and
            ``stuff_dataset_id_to_contiguous_id``.

    Returns:
        A :class:`RecordReport`; void pixels are those with id 0.
    """
    report = RecordReport()
    _check_image(record, report)
    png_path = record["pan_seg_file_name"]
    if not os.path.isfile(png_path):
        report.problems.append(f"panoptic PNG '{png_path}' does not exist")
        return report
    try:
        ids = read_panoptic_png(png_path)
    except ValueError as e:  # the message names the file and what is wrong
        report.problems.append(str(e))
        return report
    if ids.shape != (record["height"], record["width"]):
        report.problems.append(
            f"panoptic PNG '{png_path}' is {ids.shape[0]}x{ids.shape[1]} but its image is "
            f"{record['height']}x{record['width']}"
        )
    report.num_pixels = int(ids.size)
    report.num_void = int((ids == 0).sum())
    png_ids, counts = np.unique(ids, return_counts=True)
    png_area = dict(zip(png_ids.tolist(), counts.tolist()))
    things = set(meta.get("thing_dataset_id_to_contiguous_id", {}).values())
    stuff = set(meta.get("stuff_dataset_id_to_contiguous_id", {}).values())
    json_ids: set[int] = set()
    for seg in record["segments_info"]:
        sid = int(seg["id"])
        where = f"segment {sid} of '{png_path}'"
        if sid in json_ids:
            report.problems.append(f"{where} is listed twice in the JSON")
            continue
        json_ids.add(sid)
        cat = seg["category_id"]
        if cat not in things and cat not in stuff:
            report.problems.append(f"{where} has unknown category id {cat}")
        elif "isthing" in seg and bool(seg["isthing"]) != (cat in things):
            report.problems.append(f"{where}: isthing={seg['isthing']} contradicts category {cat}")
        if sid not in png_area or sid == 0:
            report.problems.append(f"{where} (category {cat}) is missing from its PNG")
            continue
        if "area" in seg and int(seg["area"]) != png_area[sid]:
            report.problems.append(
                f"{where}: area {seg['area']} in the JSON but {png_area[sid]} pixels in the PNG"
            )
        if "bbox" in seg:
            box = mask_to_xywh(ids == sid)
            if [round(float(v)) for v in seg["bbox"]] != box:
                report.problems.append(
                    f"{where}: bbox {list(seg['bbox'])} in the JSON but {box} in the PNG"
                )
    for sid in sorted(set(png_area) - json_ids - {0}):
        report.problems.append(
            f"id {sid} ({png_area[sid]} pixels) of '{png_path}' is not in the JSON segments_info"
        )
    return report


def check_sem_seg_record(
    record: Mapping[str, Any], meta: Mapping[str, Any], check_image: bool = True
) -> RecordReport:
    """Checks a semantic record: image and label sizes, label values in range.

    Args:
        record: a standard dict with ``file_name``, ``height``, ``width`` and
            ``sem_seg_file_name`` (single-channel PNG of contiguous ids).
        meta: metadata with ``num_classes`` and ``ignore_label``.
        check_image: also check the image (off when a panoptic check did it already).

    Returns:
        A :class:`RecordReport`; void pixels are those equal to ``ignore_label``.
    """
    report = RecordReport()
    if check_image:
        _check_image(record, report)
    png_path = record["sem_seg_file_name"]
    img = _open_image(png_path, "semantic PNG", report)
    if img is None:
        return report
    if img.mode not in ("L", "P", "I", "I;16"):
        report.problems.append(
            f"semantic PNG '{png_path}' has mode {img.mode}, expected a single-channel image"
        )
        return report
    if (img.height, img.width) != (record["height"], record["width"]):
        report.problems.append(
            f"semantic PNG '{png_path}' is {img.height}x{img.width} but its image is "
            f"{record['height']}x{record['width']}"
        )
    labels = np.asarray(img)
    ignore = int(meta["ignore_label"])
    report.num_pixels = int(labels.size)
    report.num_void = int((labels == ignore).sum())
    values = np.unique(labels)
    bad = [int(v) for v in values if v >= meta["num_classes"] and v != ignore]
    if bad:
        report.problems.append(
            f"semantic PNG '{png_path}' has values {bad} outside 0..{meta['num_classes'] - 1} "
            f"and the ignore label {ignore}"
        )
    return report


def check_record(record: Mapping[str, Any], meta: Mapping[str, Any]) -> RecordReport:
    """Runs every check that applies to ``record`` (panoptic, semantic, or image only).

    Args:
        record: a standard dataset dict.
        meta: the dataset's metadata.

    Returns:
        The merged :class:`RecordReport`; void statistics come from the panoptic PNG when
        there is one, else from the semantic PNG.
    """
    has_pan = "pan_seg_file_name" in record
    has_sem = "sem_seg_file_name" in record
    if has_pan:
        report = check_panoptic_record(record, meta)
    elif has_sem:
        return check_sem_seg_record(record, meta)
    else:
        report = RecordReport()
        _check_image(record, report)
        return report
    if has_sem:
        sem = check_sem_seg_record(record, {**meta, **_sem_seg_space(meta)}, check_image=False)
        report.problems += sem.problems
    return report


def _sem_seg_space(meta: Mapping[str, Any]) -> dict[str, Any]:
    """The label space of ``sem_seg_file_name`` when it differs from the panoptic one.

    Panoptic FPN's "separated" datasets describe their stuff-only PNGs with
    ``sem_seg_num_classes`` / ``sem_seg_ignore_label``.
    """
    out = {}
    if "sem_seg_num_classes" in meta:
        out["num_classes"] = meta["sem_seg_num_classes"]
    if "sem_seg_ignore_label" in meta:
        out["ignore_label"] = meta["sem_seg_ignore_label"]
    return out


def validate_dicts(dicts: Sequence[Mapping[str, Any]], meta: Mapping[str, Any], where: str) -> None:
    """Decodes every record's files and raises ``ValueError`` listing all problems.

    Args:
        dicts: standard dataset dicts.
        meta: the dataset's metadata.
        where: the dataset label used in the message.
    """
    problems = [p for d in dicts for p in check_record(d, meta).problems]
    if problems:
        shown = "\n  ".join(problems[:50])
        more = f"\n  ... and {len(problems) - 50} more" if len(problems) > 50 else ""
        raise ValueError(
            f"Validation of {where} found {len(problems)} problem(s):\n  {shown}{more}"
        )

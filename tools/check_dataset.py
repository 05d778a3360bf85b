#!/usr/bin/env python
"""Validates a registered dataset and prints a summary table.

    python tools/check_dataset.py shapes_panoptic_val
    python tools/check_dataset.py my_dataset --plugin my_project.register --max-images 100

Loads the dataset through ``DatasetCatalog`` (which checks that the files exist), then
decodes every image and label file (up to ``--max-images``) and checks: image sizes match
``height``/``width`` and the label sizes; semantic ids are ``< num_classes`` or the ignore
label; panoptic segment categories are known; every JSON segment is in its PNG with the
same area and bbox, and every PNG id (except 0) is in the JSON. Prints the number of images,
segments per class, crowd count and void fraction, and exits with status 1 listing the
problems when there are any.
"""

from __future__ import annotations

import argparse
import collections
import sys
from collections.abc import Sequence
from typing import Any

from tabulate import tabulate
from tqdm import tqdm

from panoptic2.data import DatasetCatalog, MetadataCatalog
from panoptic2.data.datasets import builtin  # noqa: F401  (registers the builtin names)
from panoptic2.data.datasets.validation import check_record
from panoptic2.utils.plugins import load_plugins


def _class_name(meta: dict[str, Any], category_id: int) -> str:
    classes = meta.get("classes") or []
    if 0 <= category_id < len(classes):
        return f"{category_id}: {classes[category_id]}"
    return str(category_id)


def _duplicates(dicts: Sequence[dict]) -> list[str]:
    """Image ids and image files that two records share (any reader, custom ones too)."""
    problems = []
    for key in ("image_id", "file_name"):
        first: dict[Any, int] = {}
        for index, record in enumerate(dicts):
            value = record.get(key)
            if value is None:
                continue
            if value in first:
                problems.append(
                    f"{key} {value!r} appears twice: records {first[value]} and {index}"
                )
            else:
                first[value] = index
    return problems


def check_dataset(name: str, max_images: int | None = None, progress: bool = True) -> dict:
    """Checks ``name`` and returns the statistics and the problems found.

    Args:
        name: a registered dataset name.
        max_images: check only the first N records (all when None).
        progress: show a progress bar.

    Returns:
        ``{"images", "checked", "segments": Counter(category name -> count), "crowd",
        "void_fraction", "problems": list[str]}``.
    """
    problems: list[str] = []
    try:
        dicts = DatasetCatalog.get(name)
    except Exception as e:  # any failure of a reader is a finding, never a traceback
        expected = isinstance(e, (OSError, ValueError))
        reason = str(e) if expected else f"{type(e).__name__}: {e}"
        return {
            "images": 0,
            "checked": 0,
            "segments": collections.Counter(),
            "crowd": 0,
            "void_fraction": float("nan"),
            "problems": [f"loading failed: {reason}"],
        }
    meta = MetadataCatalog.get(name).as_dict()
    problems += _duplicates(dicts)
    records = dicts if max_images is None else dicts[:max_images]
    segments: collections.Counter = collections.Counter()
    crowd = pixels = void = 0
    for record in tqdm(records, desc=f"checking {name}", disable=not progress):
        # Instances come from "annotations" only when there is no panoptic segments_info.
        objs = record.get("segments_info") or record.get("annotations") or []
        for obj in objs:
            segments[_class_name(meta, obj["category_id"])] += 1
            crowd += int(obj.get("iscrowd", 0))
        try:
            report = check_record(record, meta)
        except Exception as e:  # a malformed record must not stop the whole check
            problems.append(
                f"record of image {record.get('image_id')!r} ('{record.get('file_name')}') "
                f"cannot be checked: {type(e).__name__}: {e}"
            )
            continue
        problems += report.problems
        pixels += report.num_pixels
        void += report.num_void
    return {
        "images": len(dicts),
        "checked": len(records),
        "segments": segments,
        "crowd": crowd,
        "void_fraction": void / pixels if pixels else float("nan"),
        "problems": problems,
    }


def format_report(name: str, result: dict) -> str:
    """Renders the result of :func:`check_dataset` as text tables."""
    summary = [
        ("dataset", name),
        ("images", result["images"]),
        ("images checked", result["checked"]),
        ("segments", sum(result["segments"].values())),
        ("crowd segments", result["crowd"]),
        ("void fraction", f"{result['void_fraction']:.4f}"),
        ("problems", len(result["problems"])),
    ]
    text = tabulate(summary, tablefmt="github")
    if result["segments"]:
        rows = sorted(result["segments"].items(), key=lambda kv: -kv[1])
        text += "\n\n" + tabulate(rows, headers=["class", "segments"], tablefmt="github")
    if result["problems"]:
        text += "\n\nProblems:\n" + "\n".join(f"  - {p}" for p in result["problems"])
    return text


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (1 when problems were found)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("name", help="registered dataset name")
    parser.add_argument(
        "--plugin", action="append", default=[], help="module registering the dataset"
    )
    parser.add_argument("--max-images", type=int, default=None, help="check the first N only")
    args = parser.parse_args(argv)
    load_plugins(args.plugin)
    result = check_dataset(args.name, args.max_images, progress=sys.stderr.isatty())
    print(format_report(args.name, result))
    return 1 if result["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())

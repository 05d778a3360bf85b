#!/usr/bin/env python
"""Makes the stuff-only semantic PNGs of Panoptic FPN's "separated" COCO form.

    python datasets/prepare_panoptic_fpn.py [--coco-root datasets/coco] [--splits val train]

For each split, reads ``annotations/panoptic_{split}2017.json`` and its PNGs and writes
``panoptic_stuff_{split}2017/{stem}.png``: single-channel uint8 maps where every thing
pixel (crowd or not) is 0 (one merged "things" class), stuff categories sorted by original
id are 1..53, and void is 255. This is Detectron2's choice: the semantic head of Panoptic
FPN learns "thing vs. each stuff class", while thing pixels are covered by the instance
branch. Writing is atomic per file and existing files are kept, so an interrupted run can
be resumed.
"""

from __future__ import annotations

import argparse
import json
import logging
import os

from panoptic2.data.datasets.coco_panoptic import separate_coco_semantic_from_panoptic


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    root = os.path.join(os.environ.get("PANOPTIC2_DATASETS", "datasets"), "coco")
    parser.add_argument("--coco-root", default=root, help="folder holding annotations/")
    parser.add_argument("--splits", nargs="+", default=["val", "train"])
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    for split in args.splits:
        json_file = os.path.join(args.coco_root, "annotations", f"panoptic_{split}2017.json")
        with open(json_file) as f:
            categories = json.load(f)["categories"]
        separate_coco_semantic_from_panoptic(
            json_file,
            os.path.join(args.coco_root, "annotations", f"panoptic_{split}2017"),
            os.path.join(args.coco_root, f"panoptic_stuff_{split}2017"),
            categories,
        )


if __name__ == "__main__":
    main()

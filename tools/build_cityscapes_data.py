#!/usr/bin/env python
"""Converts Cityscapes to DeepLab2-compatible sharded TFRecords, without TensorFlow.

Example::

    python tools/build_cityscapes_data.py --cityscapes_root datasets/cityscapes \
        --output_dir datasets/cityscapes/tfrecord

Needs the layout that ``cityscapesscripts``' preparation produces (``*_labelTrainIds.png``;
for panoptic data ``gtFine/cityscapes_panoptic_{split}_trainId.json`` + PNGs). Writes
``{train,val,test}-{i:05d}-of-{n:05d}.tfrecord``. Conversion is parallel (``--workers``)
and resumable. See :mod:`panoptic2.data.records.cityscapes` for the exact semantics.
"""

from __future__ import annotations

import argparse
import logging
import sys

from panoptic2.data.records.cityscapes import CITYSCAPES_SPLITS, convert_cityscapes_dataset
from panoptic2.data.records.cli import add_bool_flag, add_conversion_args


def build_parser() -> argparse.ArgumentParser:
    """Returns the command-line parser (DeepLab2's flag names)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cityscapes_root", required=True, help="Cityscapes root folder.")
    parser.add_argument("--output_dir", required=True, help="Where to write the shards.")
    add_bool_flag(
        parser,
        "create_panoptic_data",
        True,
        "Panoptic labels (default true); false stores the labelTrainIds PNGs.",
    )
    add_conversion_args(parser, CITYSCAPES_SPLITS, num_shards=10)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Runs the conversion; returns the process exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    written = convert_cityscapes_dataset(
        args.cityscapes_root,
        args.output_dir,
        splits=[s for s in args.splits.split(",") if s],
        create_panoptic_data=args.create_panoptic_data,
        treat_crowd_as_ignore=args.treat_crowd_as_ignore,
        num_shards=args.num_shards,
        workers=args.workers,
        label_format=args.label_format,
    )
    for split, paths in written.items():
        print(f"{split}: {len(paths)} shards in {args.output_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

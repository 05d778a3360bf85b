#!/usr/bin/env python
"""Converts COCO panoptic to DeepLab2-compatible sharded TFRecords, without TensorFlow.

Example::

    python tools/build_coco_data.py --coco_root datasets/coco --output_dir datasets/coco/tfrecord

Writes ``{train,val,test}-{i:05d}-of-{n:05d}.tfrecord`` (test only when ``test2017/`` exists).
Conversion is parallel (``--workers``) and resumable: rerunning skips finished shards. See
:mod:`panoptic2.data.records.coco` for the exact semantics.
"""

from __future__ import annotations

import argparse
import logging
import sys

from panoptic2.data.records.cli import add_conversion_args
from panoptic2.data.records.coco import COCO_SPLITS, convert_coco_dataset


def build_parser() -> argparse.ArgumentParser:
    """Returns the command-line parser (DeepLab2's flag names)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--coco_root", required=True, help="COCO dataset root folder.")
    parser.add_argument("--output_dir", required=True, help="Where to write the shards.")
    add_conversion_args(parser, COCO_SPLITS, num_shards=1000)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Runs the conversion; returns the process exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    written = convert_coco_dataset(
        args.coco_root,
        args.output_dir,
        splits=[s for s in args.splits.split(",") if s],
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

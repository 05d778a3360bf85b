#!/usr/bin/env python
"""Converts COCO panoptic to DeepLab2-compatible sharded TFRecords, without TensorFlow.

Example::

    python tools/build_coco_data.py --coco_root datasets/coco --output_dir datasets/coco/tfrecord

Writes ``{train,val,test}-{i:05d}-of-{n:05d}.tfrecord`` (test only when ``test2017/`` exists)
and a ``{split}.manifest.json`` per split. Conversion is parallel (``--workers``) and
resumable: a rerun with the same flags and inputs reuses finished shards; one with other
flags, inputs or ``--num_shards`` exits with status 1 and names the change (``--overwrite``
converts again). A missing annotated image is an error unless ``--skip-missing``. See
:mod:`panoptic2.data.records.coco` for the exact semantics.
"""

from __future__ import annotations

import argparse
import sys

from panoptic2.data.records.cli import CONVERSION_EPILOG, add_conversion_args, run_conversion
from panoptic2.data.records.coco import COCO_SPLITS, convert_coco_dataset


def build_parser() -> argparse.ArgumentParser:
    """Returns the command-line parser (DeepLab2's flag names)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=CONVERSION_EPILOG)
    parser.add_argument("--coco_root", required=True, help="COCO dataset root folder.")
    parser.add_argument("--output_dir", required=True, help="Where to write the shards.")
    add_conversion_args(parser, COCO_SPLITS, num_shards=1000)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Runs the conversion; returns the process exit status."""
    args = build_parser().parse_args(argv)
    return run_conversion(convert_coco_dataset, args.coco_root, args)


if __name__ == "__main__":
    sys.exit(main())

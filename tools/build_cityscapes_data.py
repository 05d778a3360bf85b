#!/usr/bin/env python
"""Converts Cityscapes to DeepLab2-compatible sharded TFRecords, without TensorFlow.

Example::

    python tools/build_cityscapes_data.py --cityscapes_root datasets/cityscapes \
        --output_dir datasets/cityscapes/tfrecord

Needs the layout that ``cityscapesscripts``' preparation produces (``*_labelTrainIds.png``;
for panoptic data ``gtFine/cityscapes_panoptic_{split}_trainId.json`` + PNGs). Writes
``{train,val,test}-{i:05d}-of-{n:05d}.tfrecord`` and a ``{split}.manifest.json`` per split.
Conversion is parallel (``--workers``) and resumable: a rerun with the same flags and inputs
reuses finished shards; one with other flags, inputs or ``--num_shards`` exits with status 1
and names the change (``--overwrite`` converts again). A missing annotated image is an error
unless ``--skip-missing``. See :mod:`panoptic2.data.records.cityscapes` for the exact
semantics.
"""

from __future__ import annotations

import argparse
import sys

from panoptic2.data.records.cityscapes import CITYSCAPES_SPLITS, convert_cityscapes_dataset
from panoptic2.data.records.cli import (
    CONVERSION_EPILOG,
    add_bool_flag,
    add_conversion_args,
    run_conversion,
)


def build_parser() -> argparse.ArgumentParser:
    """Returns the command-line parser (DeepLab2's flag names)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=CONVERSION_EPILOG)
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
    return run_conversion(
        convert_cityscapes_dataset,
        args.cityscapes_root,
        args,
        create_panoptic_data=args.create_panoptic_data,
    )


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python
"""Writes the synthetic "shapes" dataset in the official layout of COCO, Cityscapes or VOC.

    python tools/make_shapes_dataset.py --output datasets/shapes_coco --layout coco
    python tools/make_shapes_dataset.py --output /tmp/cs --layout cityscapes --num-train 8 --num-val 2

Same arguments, same bytes: the dataset is a pure function of the counts, seed and size.
"""

from __future__ import annotations

import argparse
import sys

from panoptic2.data.datasets.shapes import SHAPES_LAYOUTS, generate_shapes


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parses the command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", required=True, help="directory that receives the layout")
    parser.add_argument("--layout", required=True, choices=SHAPES_LAYOUTS)
    parser.add_argument("--num-train", type=int, default=128, help="training images")
    parser.add_argument("--num-val", type=int, default=32, help="validation images")
    parser.add_argument("--seed", type=int, default=0, help="dataset seed")
    parser.add_argument(
        "--image-size",
        type=int,
        nargs=2,
        default=(128, 160),
        metavar=("H", "W"),
        help="image height and width",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    generate_shapes(
        args.output,
        args.layout,
        num_train=args.num_train,
        num_val=args.num_val,
        seed=args.seed,
        image_size=tuple(args.image_size),
        progress=True,
    )
    print(f"Wrote the shapes dataset ({args.layout} layout) to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

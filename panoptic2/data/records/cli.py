"""Command-line helpers shared by ``tools/build_coco_data.py`` and ``build_cityscapes_data.py``."""

from __future__ import annotations

import argparse
import os

from .segmentation import PANOPTIC_LABEL_FORMATS

__all__ = ["add_bool_flag", "add_conversion_args", "str2bool"]


def str2bool(value: str) -> bool:
    """Parses absl-style boolean flag values (``true``/``false``, ``1``/``0``, ``yes``/``no``).

    Raises:
        argparse.ArgumentTypeError: any other value.
    """
    lowered = value.strip().lower()
    if lowered in ("true", "t", "1", "yes", "y"):
        return True
    if lowered in ("false", "f", "0", "no", "n"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


def add_bool_flag(parser: argparse.ArgumentParser, name: str, default: bool, help: str) -> None:
    """Adds ``--name``, ``--name=true`` / ``--name=false`` (DeepLab2's absl spelling)."""
    parser.add_argument(
        f"--{name}", type=str2bool, nargs="?", const=True, default=default, help=help
    )


def add_conversion_args(
    parser: argparse.ArgumentParser, splits: tuple[str, ...], num_shards: int
) -> None:
    """Adds the flags every converter has: crowd, shards, workers, label format, splits."""
    add_bool_flag(
        parser,
        "treat_crowd_as_ignore",
        True,
        "Give crowd pixels the ignore label (default true); false keeps their class.",
    )
    parser.add_argument(
        "--num_shards", type=int, default=num_shards, help=f"Shards per split ({num_shards})."
    )
    parser.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, help="Parallel processes."
    )
    parser.add_argument(
        "--label_format",
        choices=PANOPTIC_LABEL_FORMATS,
        default="raw",
        help="raw (DeepLab2's, default) or png16/png_rgb, compressed formats only panoptic2 reads.",
    )
    parser.add_argument(
        "--splits", default=",".join(splits), help="Comma-separated splits to convert."
    )

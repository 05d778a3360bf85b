"""Command-line helpers shared by ``tools/build_coco_data.py`` and ``build_cityscapes_data.py``."""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Callable, Mapping, Sequence

from .segmentation import PANOPTIC_LABEL_FORMATS

__all__ = ["add_bool_flag", "add_conversion_args", "run_conversion", "str2bool"]


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


def run_conversion(
    convert: Callable[..., Mapping[str, Sequence[str]]],
    root: str,
    args: argparse.Namespace,
    **extra,
) -> int:
    """Runs a converter with the flags of :func:`add_conversion_args` and reports the shards.

    Args:
        convert: ``convert_{dataset}_dataset(root, output_dir, *, splits, ...)``.
        root: the dataset root folder.
        args: parsed flags, with ``output_dir`` and those of :func:`add_conversion_args`.
        **extra: dataset-specific keyword arguments passed on to ``convert``.

    Returns:
        The process exit status (0).
    """
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    written = convert(
        root,
        args.output_dir,
        splits=[s for s in args.splits.split(",") if s],
        treat_crowd_as_ignore=args.treat_crowd_as_ignore,
        num_shards=args.num_shards,
        workers=args.workers,
        label_format=args.label_format,
        **extra,
    )
    for split, paths in written.items():
        print(f"{split}: {len(paths)} shards in {args.output_dir}")
    return 0

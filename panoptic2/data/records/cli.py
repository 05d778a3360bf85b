"""Command-line helpers shared by ``tools/build_coco_data.py`` and ``build_cityscapes_data.py``."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Mapping, Sequence

from .manifest import RecordsMismatchError
from .segmentation import PANOPTIC_LABEL_FORMATS

__all__ = [
    "CONVERSION_EPILOG",
    "add_bool_flag",
    "add_conversion_args",
    "run_conversion",
    "str2bool",
]

# The tools' --help epilog (argparse rewraps it).
CONVERSION_EPILOG = """\
Each split gets {split}.manifest.json beside its shards: the converter and its version,
num_shards, the flags that change the records (label format, crowd handling, panoptic or
semantic labels) and the size and mtime of every input file (images, label PNGs, JSON).
A rerun with the same flags and unchanged inputs reuses the complete shards, so an
interrupted run resumes. Any other difference, shards of another --num_shards, or shards
without a manifest make it stop with exit status 1 and a message that names what changed;
--overwrite then deletes the split's shards (any shard count) and manifest and converts
again. An annotated image whose file is missing is an error; --skip-missing converts the
others, logs how many were skipped and lists them in the manifest. Each split also gets
{split}.index.json (every record's shard, offset, image name and size), so that training
registers the shards without reading them; tools/index_records.py indexes shards written
without one."""


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


def add_bool_flag(
    parser: argparse.ArgumentParser,
    name: str,
    default: bool,
    help: str,
    aliases: Sequence[str] = (),
) -> None:
    """Adds ``--name``, ``--name=true`` / ``--name=false`` (DeepLab2's absl spelling).

    Args:
        parser: the parser to extend.
        name: the flag (and attribute) name.
        default: the value when the flag is absent.
        help: the help text.
        aliases: other spellings of the flag, e.g. ``skip-missing``.
    """
    parser.add_argument(
        f"--{name}",
        *(f"--{alias}" for alias in aliases),
        dest=name,
        type=str2bool,
        nargs="?",
        const=True,
        default=default,
        help=help,
    )


def add_conversion_args(
    parser: argparse.ArgumentParser, splits: tuple[str, ...], num_shards: int
) -> None:
    """Adds the flags every converter has (crowd, shards, workers, format, splits, overwrite...)."""
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
    add_bool_flag(
        parser,
        "overwrite",
        False,
        "Delete each split's existing shards (of any shard count) and manifest and convert "
        "again; without it, shards that do not match this run's inputs and flags stop it.",
    )
    add_bool_flag(
        parser,
        "skip_missing",
        False,
        "Convert the other images when annotated images are missing, and report the count; "
        "without it a missing image is an error.",
        aliases=("skip-missing",),
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
        The process exit status: 0, or 1 when existing shards do not match this run or a
        file is missing (the message goes to stderr).
    """
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        written = convert(
            root,
            args.output_dir,
            splits=[s for s in args.splits.split(",") if s],
            treat_crowd_as_ignore=args.treat_crowd_as_ignore,
            num_shards=args.num_shards,
            workers=args.workers,
            label_format=args.label_format,
            overwrite=args.overwrite,
            skip_missing=args.skip_missing,
            **extra,
        )
    except (RecordsMismatchError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for split, paths in written.items():
        print(f"{split}: {len(paths)} shards in {args.output_dir}")
    return 0

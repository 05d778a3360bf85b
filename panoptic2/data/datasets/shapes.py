"""The built-in synthetic "shapes" dataset: a seeded generator writing real dataset layouts.

Scenes hold textured stuff regions with curved boundaries (grass, water, sand), overlapping
thing instances (disk, square, triangle) of 6..60 px, a crowd region in about half of the
images and void lines/blobs. The same scenes are written in the official COCO panoptic,
Cityscapes or PASCAL VOC layout, so the readers, converters and evaluators of each real
dataset run end to end on them::

    from panoptic2.data.datasets.shapes import ensure_shapes, generate_shapes

    generate_shapes("/tmp/shapes_coco", "coco", num_train=8, num_val=2)
    root = ensure_shapes(os.environ.get("PANOPTIC2_DATASETS", "datasets"), "coco")

The output is byte-identical for the same arguments: every image draws from its own
``np.random.Generator`` seeded by ``(seed, split, index)``, so image ``i`` of a split does
not depend on how many images are generated, nor on the layout.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from typing import Any, Literal

import numpy as np
from tqdm import tqdm

from panoptic2.utils.file_io import atomic_write

from .shapes_render import (
    load_shapes_categories,
    load_shapes_styles,
    rasterize_scene,
    render_image,
    sample_scene,
)
from .shapes_writers import CityscapesWriter, CocoPanopticWriter, VocWriter

__all__ = [
    "SHAPES_CATEGORIES",
    "SHAPES_LAYOUTS",
    "ensure_shapes",
    "generate_shapes",
    "shapes_metadata",
]

logger = logging.getLogger(__name__)

SHAPES_CATEGORIES: list[dict] = load_shapes_categories()
"""COCO panoptic categories of the shapes dataset (from ``shapes_categories.json``)."""

SHAPES_LAYOUTS = ("coco", "cityscapes", "voc")
COMPLETE_MARKER = ".shapes_complete.json"
"""File that :func:`ensure_shapes` writes last into a fully generated layout directory."""

_SPLIT_CODES = {"train": 0, "val": 1}  # part of each image's seed
_VAL_IMAGE_ID_OFFSET = 1_000_000  # COCO image ids of val images: train and val never share ids
_WRITERS = {"coco": CocoPanopticWriter, "cityscapes": CityscapesWriter, "voc": VocWriter}


def shapes_metadata() -> dict[str, Any]:
    """COCO-style metadata of the shapes label space.

    Returns:
        ``classes``/``colors`` (index 0 ``"void"``), ``thing_classes``, ``thing_colors``,
        ``stuff_classes``, ``stuff_colors``, ``thing_dataset_id_to_contiguous_id`` (things
        first: original ids 1, 2, 3 -> 1, 2, 3), ``stuff_dataset_id_to_contiguous_id``
        (101, 102, 103 -> 4, 5, 6), ``thing_ids``, ``label_divisor`` 256, ``ignore_label`` 0,
        ``num_classes`` (N + 1 = 7), ``evaluators`` and ``categories`` (the raw table).
    """
    from .metadata import get_coco_panoptic_metadata

    meta = get_coco_panoptic_metadata(SHAPES_CATEGORIES)
    meta["categories"] = load_shapes_categories()
    return meta


def _check_args(layout: str, num_train: int, num_val: int, image_size: tuple[int, int]) -> None:
    if layout not in SHAPES_LAYOUTS:
        raise ValueError(
            f"shapes dataset: unknown layout {layout!r}; expected one of {SHAPES_LAYOUTS}"
        )
    if num_train < 0 or num_val < 0:
        raise ValueError(f"shapes dataset: negative image count ({num_train=}, {num_val=})")
    h, w = image_size
    if h < 16 or w < 16:
        raise ValueError(f"shapes dataset: image_size {image_size} is too small (min 16 x 16)")


def iter_shapes_samples(
    split: str, num_images: int, seed: int, image_size: tuple[int, int]
) -> Iterator[tuple[int, np.random.Generator, Any, np.ndarray, np.ndarray]]:
    """Yields the rendered samples of one split, independent of the output layout.

    Args:
        split: ``"train"`` or ``"val"``.
        num_images: number of images.
        seed: dataset seed.
        image_size: ``(H, W)``.

    Yields:
        ``(index, rng, scene, segment_map, image)``: ``segment_map`` is ``(H, W) int32``
        segment indices (0 void), ``image`` is ``(H, W, 3) uint8`` RGB; ``rng`` is the
        image's generator, for layout-specific choices (e.g. COCO segment ids).
    """
    categories, styles = load_shapes_categories(), load_shapes_styles()
    h, w = image_size
    for index in range(num_images):
        rng = np.random.default_rng([seed, _SPLIT_CODES[split], index])
        scene = sample_scene(rng, h, w, categories, styles)
        segment_map = rasterize_scene(scene)
        image = render_image(rng, scene, segment_map, styles)
        yield index, rng, scene, segment_map, image


def generate_shapes(
    output_dir: str,
    layout: Literal["coco", "cityscapes", "voc"],
    num_train: int = 128,
    num_val: int = 32,
    seed: int = 0,
    image_size: tuple[int, int] = (128, 160),
    progress: bool = False,
) -> None:
    """Writes the shapes dataset in the official folder layout of a real dataset.

    Layouts under ``output_dir``:

    * ``"coco"``: ``{train,val}2017/{id:012d}.jpg``,
      ``annotations/panoptic_{train,val}2017.json`` + ``annotations/panoptic_{split}2017/*.png``
      (ids ``R + 256 G + 256^2 B``), ``annotations/instances_{train,val}2017.json`` (things:
      polygons, crowd as RLE).
    * ``"cityscapes"``: ``leftImg8bit/{split}/{city}/*_leftImg8bit.png``,
      ``gtFine/{split}/{city}/*_gtFine_{polygons.json,labelIds,instanceIds,color,
      labelTrainIds}.png`` and ``gtFine/cityscapes_panoptic_{split}_trainId{.json,/}``; two
      train cities, one val city.
    * ``"voc"``: ``VOCdevkit/VOC2012/{JPEGImages,SegmentationClass}`` and
      ``ImageSets/Segmentation/{train,val,trainval}.txt``.

    Args:
        output_dir: destination directory (created if needed).
        layout: ``"coco"``, ``"cityscapes"`` or ``"voc"``.
        num_train: number of training images.
        num_val: number of validation images.
        seed: the dataset seed; the same arguments always give byte-identical files.
        image_size: ``(H, W)`` of every image.
        progress: show a tqdm progress bar.

    A completion marker (:data:`COMPLETE_MARKER`, with these arguments) is written last, so
    the folder can serve the builtin ``shapes_*`` datasets under ``PANOPTIC2_DATASETS``.

    Raises:
        ValueError: an unknown layout, a negative count or a tiny image size.
    """
    _check_args(layout, num_train, num_val, image_size)
    os.makedirs(output_dir, exist_ok=True)
    writer = _WRITERS[layout](output_dir, load_shapes_categories(), load_shapes_styles())
    for split, count in (("train", num_train), ("val", num_val)):
        if count == 0:
            continue
        writer.begin_split(split)
        samples = iter_shapes_samples(split, count, seed, image_size)
        bar = tqdm(samples, total=count, desc=f"shapes {layout} {split}", disable=not progress)
        for index, rng, scene, segment_map, image in bar:
            # COCO ids are image ids (1-based, val offset); other layouts name by index.
            key = index
            if layout == "coco":
                key = index + 1 + (_VAL_IMAGE_ID_OFFSET if split == "val" else 0)
            writer.add(key, rng, scene, segment_map, image)
        writer.end_split()
    # Written last: a folder with the marker is complete, so the builtin shapes datasets can
    # use a folder that tools/make_shapes_dataset.py wrote (see ensure_shapes).
    marker = {
        "layout": layout,
        "num_train": num_train,
        "num_val": num_val,
        "seed": seed,
        "image_size": list(image_size),
    }
    atomic_write(
        os.path.join(output_dir, COMPLETE_MARKER), lambda f: f.write(json.dumps(marker).encode())
    )


def ensure_shapes(root: str, layout: str) -> str:
    """Returns ``{root}/shapes_{layout}``, generating it with the defaults on first use.

    Generation goes to a temp directory under ``root`` that gets a completion marker
    (:data:`COMPLETE_MARKER`) and is then renamed into place, so a killed run never leaves a
    half-written dataset under the final name. Processes that call this concurrently are
    serialised by a lock file (POSIX ``flock``); where locking is unavailable they may
    both generate, and the loser of the rename discards its copy.

    Args:
        root: the datasets root (e.g. ``$PANOPTIC2_DATASETS``).
        layout: ``"coco"``, ``"cityscapes"`` or ``"voc"``.

    Returns:
        The layout directory, complete.

    Raises:
        ValueError: an unknown layout.
        RuntimeError: the directory exists but lacks the completion marker (not ours or
            corrupted): it is never overwritten.
    """
    if layout not in SHAPES_LAYOUTS:
        raise ValueError(
            f"shapes dataset: unknown layout {layout!r}; expected one of {SHAPES_LAYOUTS}"
        )
    target = os.path.join(root, f"shapes_{layout}")
    if os.path.isfile(os.path.join(target, COMPLETE_MARKER)):
        return target
    os.makedirs(root, exist_ok=True)
    with _file_lock(os.path.join(root, f".shapes_{layout}.lock")):
        if os.path.isfile(os.path.join(target, COMPLETE_MARKER)):
            return target  # another process generated it while we waited
        if os.path.exists(target):
            raise RuntimeError(
                f"shapes dataset: {target} exists but has no {COMPLETE_MARKER} marker "
                "(incomplete or not generated by panoptic2); remove it to regenerate."
            )
        logger.info("Generating the shapes dataset (%s layout) in %s ...", layout, target)
        tmp = tempfile.mkdtemp(prefix=f".shapes_{layout}.", suffix=".tmp", dir=root)
        try:
            generate_shapes(tmp, layout)  # type: ignore[arg-type]  (writes the marker)
            try:
                os.rename(tmp, target)
            except OSError:
                # Lost a race with a process that could not lock: keep the winner's copy.
                if not os.path.isfile(os.path.join(target, COMPLETE_MARKER)):
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


@contextlib.contextmanager
def _file_lock(path: str) -> Iterator[None]:
    """Exclusive advisory lock on ``path`` (no-op where ``fcntl`` is unavailable)."""
    try:
        import fcntl
    except ImportError:  # Windows: rely on the atomic rename alone
        yield
        return
    with open(path, "a") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)

"""Registers the builtin datasets (COCO panoptic and instances, Cityscapes, PASCAL VOC, shapes).

Registration never touches the dataset files: every dataset function resolves its paths
under the datasets root when it is called (``$PANOPTIC2_DATASETS``, default
``./datasets``, read at load time) and only then reads the disk. A missing dataset fails at
load time with an error naming the expected path and pointing to ``datasets/README.md``.
Metadata is available right away; its path fields (``image_root``, ``panoptic_json``, ...)
are set from the root at registration and refreshed at each load.

The shapes names generate the synthetic dataset on first use (``ensure_shapes``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from ..catalog import DatasetCatalog, MetadataCatalog
from .cityscapes import load_cityscapes_instances, load_cityscapes_semantic
from .cityscapes_panoptic import load_cityscapes_panoptic
from .coco import load_coco_json
from .coco_panoptic import (
    _load_separated,
    get_panoptic_fpn_stuff_metadata,
    load_coco_panoptic_json,
    separate_coco_semantic_from_panoptic,
)
from .metadata import (
    get_cityscapes_metadata,
    get_coco_instances_metadata,
    get_coco_panoptic_metadata,
    get_voc_metadata,
    load_coco_panoptic_categories,
)
from .pascal_voc import load_voc_sem_seg

__all__ = [
    "get_datasets_root",
    "register_all_cityscapes",
    "register_all_coco",
    "register_all_shapes",
    "register_all_voc",
]

_COCO_SPLITS = {"train": "train2017", "val": "val2017"}
_CITYSCAPES_SPLITS = ("train", "val")
_INSTANCE_EVALUATORS = ["CityscapesInstanceEvaluator"]
# Cityscapes' official metrics (cityscapesscripts); the instance AP of box-free models comes
# from their panoptic thing segments.
_CITYSCAPES_SEM_SEG_EVALUATORS = ["CityscapesSemSegEvaluator"]
_CITYSCAPES_PANOPTIC_EVALUATORS = [
    "CityscapesPanopticEvaluator",
    "CityscapesSemSegEvaluator",
    "CityscapesInstanceEvaluator",
]
# The separated datasets carry instances (Panoptic FPN): box and mask AP as well.
_SEPARATED_EVALUATORS = ["COCOPanopticEvaluator", "SemSegEvaluator", "COCOEvaluator"]


def get_datasets_root() -> str:
    """The datasets root: ``$PANOPTIC2_DATASETS`` or ``./datasets`` (read on every call)."""
    return os.path.expanduser(os.environ.get("PANOPTIC2_DATASETS", "datasets"))


def _register(
    name: str,
    meta: dict[str, Any],
    paths: Callable[[], dict[str, str]],
    load: Callable[[dict[str, str], dict[str, Any]], list[dict]],
) -> None:
    """Registers ``name`` with ``meta``; ``paths()`` runs at load time only.

    ``paths`` resolves the dataset's paths under the root (and, for shapes, generates the
    data), so registration itself never reads the disk. The resolved paths also refresh
    the metadata's path fields.
    """

    def loader() -> list[dict]:
        resolved = paths()
        md = MetadataCatalog.get(name).set(**resolved)
        return load(resolved, md.as_dict())

    DatasetCatalog.register(name, loader)
    MetadataCatalog.get(name).set(**meta)


def _coco_paths(folder: str, split: str) -> dict[str, str]:
    base = os.path.join(get_datasets_root(), folder)
    s = _COCO_SPLITS[split]
    return {
        "image_root": os.path.join(base, s),
        "panoptic_root": os.path.join(base, "annotations", f"panoptic_{s}"),
        "panoptic_json": os.path.join(base, "annotations", f"panoptic_{s}.json"),
        "json_file": os.path.join(base, "annotations", f"instances_{s}.json"),
        "sem_seg_root": os.path.join(base, f"panoptic_stuff_{s}"),
    }


def _load_coco_panoptic(name: str) -> Callable[[dict[str, str], dict[str, Any]], list[dict]]:
    def load(p: dict[str, str], meta: dict[str, Any]) -> list[dict]:
        return load_coco_panoptic_json(
            p["panoptic_json"], p["image_root"], p["panoptic_root"], meta, dataset_name=name
        )

    return load


def _load_coco_separated(
    name: str, make_stuff: bool
) -> Callable[[dict[str, str], dict[str, Any]], list[dict]]:
    def load(p: dict[str, str], meta: dict[str, Any]) -> list[dict]:
        if make_stuff:  # shapes: derive the stuff PNGs on first use (resumable, atomic)
            separate_coco_semantic_from_panoptic(
                p["panoptic_json"], p["panoptic_root"], p["sem_seg_root"], meta["categories"]
            )
        return _load_separated(
            name,
            p["image_root"],
            p["panoptic_root"],
            p["panoptic_json"],
            p["sem_seg_root"],
            p["json_file"],
        )

    return load


def _register_coco_like(
    names: tuple[str, str],
    folder_of: Callable[[], str],
    static_folder: str,
    meta: dict,
    make_stuff: bool,
) -> None:
    """Registers the panoptic and separated names (``names`` formatted with the split)."""
    for split in _COCO_SPLITS:

        def paths(split: str = split) -> dict[str, str]:
            return _coco_paths(folder_of(), split)

        static = _coco_paths(static_folder, split)
        panoptic, separated = (n.format(split=split) for n in names)
        _register(panoptic, {**meta, **static}, paths, _load_coco_panoptic(panoptic))
        _register(
            separated,
            {**meta, **static, "evaluators": list(_SEPARATED_EVALUATORS)},
            paths,
            _load_coco_separated(separated, make_stuff),
        )


def _register_coco_instances_like(
    name_format: str, folder_of: Callable[[], str], static_folder: str, categories: list[dict]
) -> None:
    """Registers the instance-only names (``name_format`` formatted with the split): the
    things of ``categories``, read from ``annotations/instances_{split}2017.json``."""
    meta = get_coco_instances_metadata([c for c in categories if c["isthing"]])
    for split in _COCO_SPLITS:

        def paths(split: str = split) -> dict[str, str]:
            p = _coco_paths(folder_of(), split)
            return {"image_root": p["image_root"], "json_file": p["json_file"]}

        static = _coco_paths(static_folder, split)
        name = name_format.format(split=split)
        _register(
            name,
            {**meta, "image_root": static["image_root"], "json_file": static["json_file"]},
            paths,
            lambda p, m, name=name: load_coco_json(
                p["json_file"], p["image_root"], m, dataset_name=name
            ),
        )


def register_all_coco() -> None:
    """``coco_2017_{train,val}_panoptic``, ``coco_2017_{train,val}_panoptic_separated`` and
    the instance-only ``coco_2017_{train,val}`` (80 thing classes, boxes and masks)."""
    categories = load_coco_panoptic_categories()
    meta = get_coco_panoptic_metadata(categories)
    meta.update(get_panoptic_fpn_stuff_metadata(categories), categories=categories)

    _register_coco_like(
        ("coco_2017_{split}_panoptic", "coco_2017_{split}_panoptic_separated"),
        lambda: "coco",
        "coco",
        meta,
        make_stuff=False,
    )
    _register_coco_instances_like("coco_2017_{split}", lambda: "coco", "coco", categories)


def _cityscapes_paths(folder: str, split: str) -> dict[str, str]:
    base = os.path.join(get_datasets_root(), folder)
    return {
        "image_root": os.path.join(base, "leftImg8bit", split),
        "gt_dir": os.path.join(base, "gtFine", split),
        "sem_seg_root": os.path.join(base, "gtFine", split),
        "panoptic_root": os.path.join(base, "gtFine", f"cityscapes_panoptic_{split}_trainId"),
        "panoptic_json": os.path.join(base, "gtFine", f"cityscapes_panoptic_{split}_trainId.json"),
    }


# The Cityscapes views registered per split: (task in the name, evaluators, loader taking
# the resolved paths, the metadata and the dataset name).
_CITYSCAPES_TASKS: tuple[
    tuple[str, Sequence[str], Callable[[dict[str, str], dict[str, Any], str], list[dict]]], ...
] = (
    (
        "panoptic",
        _CITYSCAPES_PANOPTIC_EVALUATORS,
        lambda p, m, name: load_cityscapes_panoptic(
            p["image_root"], p["panoptic_root"], p["panoptic_json"], m, dataset_name=name
        ),
    ),
    (
        "sem_seg",
        _CITYSCAPES_SEM_SEG_EVALUATORS,
        lambda p, m, name: load_cityscapes_semantic(
            p["image_root"], p["gt_dir"], dataset_name=name, meta=m
        ),
    ),
    (
        "instance_seg",
        _INSTANCE_EVALUATORS,
        lambda p, m, name: load_cityscapes_instances(
            p["image_root"], p["gt_dir"], dataset_name=name
        ),
    ),
)


def _register_cityscapes_like(prefix: str, folder_of: Callable[[], str], static: str) -> None:
    meta = get_cityscapes_metadata()
    for split in _CITYSCAPES_SPLITS:

        def paths(split: str = split) -> dict[str, str]:
            return _cityscapes_paths(folder_of(), split)

        at_reg = _cityscapes_paths(static, split)
        for task, evaluators, load in _CITYSCAPES_TASKS:
            name = f"{prefix}_fine_{task}_{split}"
            _register(
                name,
                {**meta, **at_reg, "evaluators": list(evaluators)},
                paths,
                lambda p, m, name=name, load=load: load(p, m, name),
            )


def register_all_cityscapes() -> None:
    """``cityscapes_fine_{panoptic,sem_seg,instance_seg}_{train,val}`` under ``cityscapes/``."""
    _register_cityscapes_like("cityscapes", lambda: "cityscapes", "cityscapes")


def _voc_paths(folder: str) -> dict[str, str]:
    base = os.path.join(get_datasets_root(), folder, "VOCdevkit", "VOC2012")
    return {"dirname": base, "image_root": os.path.join(base, "JPEGImages")}


def _register_voc_like(prefix: str, folder_of: Callable[[], str], static: str, splits) -> None:
    meta = get_voc_metadata()
    for split in splits:
        name = f"{prefix}_{split}"

        def paths() -> dict[str, str]:
            return _voc_paths(folder_of())

        _register(
            name,
            {**meta, **_voc_paths(static), "split": split},
            paths,
            lambda p, m, name=name, split=split: load_voc_sem_seg(
                p["dirname"], split, dataset_name=name, meta=m
            ),
        )


def register_all_voc() -> None:
    """``voc_2012_sem_seg_{train,val,train_aug}`` under ``VOCdevkit/VOC2012``."""
    _register_voc_like("voc_2012_sem_seg", lambda: "", "", ("train", "val", "train_aug"))


def _shapes_folder(layout: str) -> Callable[[], str]:
    def folder() -> str:
        from .shapes import ensure_shapes

        return os.path.basename(ensure_shapes(get_datasets_root(), layout))

    return folder


def register_all_shapes() -> None:
    """The synthetic dataset in each layout, generated under the root on first load.

    ``shapes_panoptic_{train,val}`` (+ ``_separated``), ``shapes_instances_{train,val}``
    (the things of the COCO layout's ``instances_*.json``), ``shapes_cityscapes_fine_*`` and
    ``shapes_voc_sem_seg_{train,val}``.
    """
    from .shapes import shapes_metadata

    meta = shapes_metadata()
    meta.update(get_panoptic_fpn_stuff_metadata(meta["categories"]))
    _register_coco_like(
        ("shapes_panoptic_{split}", "shapes_panoptic_separated_{split}"),
        _shapes_folder("coco"),
        "shapes_coco",
        meta,
        make_stuff=True,
    )
    _register_coco_instances_like(
        "shapes_instances_{split}", _shapes_folder("coco"), "shapes_coco", meta["categories"]
    )
    _register_cityscapes_like(
        "shapes_cityscapes", _shapes_folder("cityscapes"), "shapes_cityscapes"
    )
    _register_voc_like("shapes_voc_sem_seg", _shapes_folder("voc"), "shapes_voc", ("train", "val"))


def _register_all() -> None:
    register_all_coco()
    register_all_cityscapes()
    register_all_voc()
    register_all_shapes()


_register_all()

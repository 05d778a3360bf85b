"""Shipped configs by name, the checkpoints published for them, and models built from both.

A config's model-zoo name is its path relative to the checkout's ``configs/`` directory
(``coco/panoptic_fpn_R_50_1x.yaml``), or, for a project, its path in the checkout
(``projects/DeepLab/configs/cityscapes/deeplab_v3_R_103_os16_mg124_poly_90k_bs16.yaml``). The
Detectron2 config names of :data:`~panoptic2.model_zoo.catalog.CHECKPOINTS`
(``COCO-PanopticSegmentation/panoptic_fpn_R_50_1x.yaml``) name the config that reproduces
them. Example::

    from panoptic2 import model_zoo

    cfg = model_zoo.get_config("coco/panoptic_fpn_R_50_1x.yaml", trained=True)
    model = model_zoo.get("COCO-PanopticSegmentation/panoptic_fpn_R_50_1x.yaml", trained=True)

The configs are files of the source checkout, not package data: they are found next to the
``panoptic2`` package of an editable install (``pip install -e .``, ``dev/install.sh``). A
non-editable install has none, and every function here then raises
:class:`FileNotFoundError` saying so; pass a config file's path to
:func:`panoptic2.config.load_config` instead.
"""

from __future__ import annotations

import difflib
import importlib.util
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from panoptic2.config import CfgNode, load_config

from .catalog import CHECKPOINTS, ModelZooEntry

__all__ = ["get", "get_checkpoint_url", "get_config", "get_config_file", "list_configs"]

logger = logging.getLogger(__name__)

_PROJECTS = "projects/"


def _source_root() -> Path:
    """The checkout holding this ``panoptic2`` package and its ``configs/``."""
    root = Path(__file__).resolve().parents[2]  # panoptic2/model_zoo/model_zoo.py -> root
    if not (root / "configs").is_dir():
        raise FileNotFoundError(
            f"panoptic2's configs are not installed: there is no {root / 'configs'}. The model "
            "zoo reads the configs of a source checkout installed in editable mode "
            "(`bash dev/install.sh`, or `pip install --no-build-isolation -e .` in the "
            "checkout); with another install, pass a config file's path to load_config."
        )
    return root


def _normalise(name: str) -> str:
    name = name.replace("\\", "/").lstrip("/")
    return name.removeprefix("configs/")


def _lookup(name: str) -> tuple[str, ModelZooEntry | None]:
    """Our config name for ``name`` (ours or a Detectron2 one) and its catalog entry."""
    name = _normalise(name)
    if name in CHECKPOINTS:
        return CHECKPOINTS[name].config, CHECKPOINTS[name]
    for entry in CHECKPOINTS.values():
        if entry.config == name:
            return name, entry
    return name, None


def list_configs() -> list[str]:
    """The model-zoo names of every shipped config (``Base-*`` files included), sorted."""
    root = _source_root()
    names = [p.relative_to(root / "configs").as_posix() for p in (root / "configs").rglob("*.yaml")]
    names += [p.relative_to(root).as_posix() for p in root.glob("projects/*/configs/**/*.yaml")]
    return sorted(names)


def get_config_file(name: str) -> str:
    """The path of a shipped config.

    Args:
        name: a model-zoo name (``coco/panoptic_fpn_R_50_1x.yaml``,
            ``projects/DeepLab/configs/...``) or a Detectron2 config name from the catalog.

    Returns:
        The config file's absolute path.

    Raises:
        FileNotFoundError: no such config (the message lists the closest names), or the
            configs are not installed.
    """
    config, _ = _lookup(name)
    root = _source_root()
    path = root / config if config.startswith(_PROJECTS) else root / "configs" / config
    if not path.is_file():
        close = difflib.get_close_matches(config, list_configs(), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        aka = f" (the config of {name!r})" if config != _normalise(name) else ""
        raise FileNotFoundError(f"No config {config!r}{aka} in the model zoo: {path}{hint}")
    return str(path)


def get_checkpoint_url(name: str) -> str:
    """The URL of the checkpoint published for a config.

    Args:
        name: a model-zoo config name or a Detectron2 config name from the catalog.

    Returns:
        The checkpoint's URL (e.g. ``detectron2://...``); ``PathManager`` downloads and
        caches it.

    Raises:
        LookupError: no checkpoint is published for this config.
    """
    config, entry = _lookup(name)
    if entry is None:
        raise LookupError(
            f"No published checkpoint for config {config!r}. Configs with one: "
            f"{sorted(e.config for e in CHECKPOINTS.values())}"
        )
    return entry.checkpoint


def _make_projects_importable(root: Path) -> None:
    """Puts the checkout on ``sys.path`` when ``projects`` (whose plugins the project configs
    name in ``PLUGINS``) is not importable, as ``tools/train_net.py`` does."""
    if importlib.util.find_spec("projects") is None:
        sys.path.append(str(root))
        logger.info("Added %s to sys.path so that the plugins in projects/ import", root)


def get_config(name: str, trained: bool = False, overrides: Sequence[str] = ()) -> CfgNode:
    """Loads a shipped config (with its plugins).

    Args:
        name: a model-zoo config name or a Detectron2 config name from the catalog.
        trained: set ``MODEL.WEIGHTS`` to the published checkpoint; otherwise the config's
            own ``MODEL.WEIGHTS`` (usually ImageNet weights of the backbone) stays.
        overrides: further ``KEY VALUE`` config overrides, applied last.

    Returns:
        The frozen config (``cfg.defrost()`` to edit it).

    Raises:
        FileNotFoundError: see :func:`get_config_file`.
        LookupError: ``trained`` and no checkpoint is published for the config.
    """
    path = get_config_file(name)
    if _lookup(name)[0].startswith(_PROJECTS):
        _make_projects_importable(_source_root())
    weights = ["MODEL.WEIGHTS", get_checkpoint_url(name)] if trained else []
    return load_config(path, [*weights, *overrides])


def get(
    name: str, trained: bool = False, device: str | None = None, overrides: Sequence[str] = ()
) -> nn.Module:
    """Builds the model of a shipped config and loads its weights.

    Args:
        name: a model-zoo config name or a Detectron2 config name from the catalog.
        trained: load the published checkpoint (which must fill every tensor of the model);
            otherwise the config's ``MODEL.WEIGHTS``, which may cover only the backbone.
        device: ``MODEL.DEVICE``; ``None`` means ``cuda`` when available, else ``cpu``.
        overrides: further ``KEY VALUE`` config overrides.

    Returns:
        The model, in training mode (as Detectron2's ``model_zoo.get``); call ``.eval()``
        for inference.

    Raises:
        IncompleteWeightsError: ``trained`` and the checkpoint left model tensors unset.
        DownloadError: the weights are neither cached nor downloadable.
    """
    from panoptic2.checkpoint import Checkpointer, require_loaded_weights
    from panoptic2.modeling import build_model

    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    cfg = get_config(name, trained, ["MODEL.DEVICE", device, *overrides])
    model = build_model(cfg)
    checkpointer = Checkpointer(model)
    checkpointer.load(cfg.MODEL.WEIGHTS)
    if trained:
        require_loaded_weights(
            checkpointer.last_load_report,
            min_fraction=1.0,
            how_to_allow="To accept a partial load, build with trained=False and load the "
            "file with panoptic2.checkpoint.Checkpointer.",
        )
    return model

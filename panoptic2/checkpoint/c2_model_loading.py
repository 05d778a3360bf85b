"""Reading Detectron/Detectron2/Caffe2 ``.pkl`` weight files and renaming Caffe2 blobs.

Caffe2 checkpoints (the Detectron and Detectron2 model zoos, ImageNet ``R-50.pkl`` ...) are
pickles of numpy arrays whose blob names follow Caffe2 conventions (``res2_0_branch2a_w``).
:func:`convert_c2_names` rewrites them into the Detectron2-style PyTorch names our ResNet
backbones use (``res2.0.conv1.weight``); the suffix matching of
:func:`panoptic2.checkpoint.weight_conversion.align_state_dicts` then places them under the
model's prefix (``backbone.bottom_up.res2.0.conv1.weight``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch

from .safe_loading import read_weights_pickle

__all__ = ["convert_c2_name", "convert_c2_names", "read_pickle_checkpoint"]

# Suffixes of Caffe2 norm-layer blobs -> the attribute of our norm module.
_NORM_SUFFIXES = {
    "s": "weight",  # affine scale ("_bn_s", "_gn_s")
    "b": "bias",
    "rm": "running_mean",
    "riv": "running_var",
}
# Bottleneck branches of a Caffe2 ResNet block -> Detectron2 block attributes.
_BRANCHES = {"branch1": "shortcut", "branch2a": "conv1", "branch2b": "conv2", "branch2c": "conv3"}
_RES_BLOCK = re.compile(r"^res(\d+)_(\d+)_(.+)$")
_NORM_BLOB = re.compile(r"^(.+)_(bn|gn)_(s|b|rm|riv)$")


def convert_c2_name(name: str) -> str:
    """Renames one Caffe2 blob to the Detectron2-style PyTorch parameter name.

    Examples: ``conv1_w -> stem.conv1.weight``, ``res_conv1_bn_s -> stem.conv1.norm.weight``,
    ``res2_0_branch2a_w -> res2.0.conv1.weight``, ``res3_1_branch1_bn_b ->
    res3.1.shortcut.norm.bias``, ``fc1000_w -> linear.weight``. Names that follow none of
    the conventions only have ``_w``/``_b`` turned into ``.weight``/``.bias`` and the other
    underscores into dots, which is what Detectron's head blobs need.

    Args:
        name: a Caffe2 blob name.

    Returns:
        The converted name.
    """
    norm = _NORM_BLOB.match(name)
    if norm is not None:
        body, attr = norm.group(1), _NORM_SUFFIXES[norm.group(3)]
        # The stem's norm is called "res_conv1_bn" in Caffe2 while its conv is "conv1".
        body = "conv1" if body == "res_conv1" else body
        return f"{_convert_body(body)}.norm.{attr}"
    for suffix, attr in (("_w", "weight"), ("_b", "bias")):
        if name.endswith(suffix):
            return f"{_convert_body(name[: -len(suffix)])}.{attr}"
    return _convert_body(name)


def _convert_body(body: str) -> str:
    """Converts a blob name without its parameter suffix (``res2_0_branch2a``)."""
    if body == "conv1":
        return "stem.conv1"
    if body == "fc1000":
        return "linear"
    block = _RES_BLOCK.match(body)
    if block is not None:
        stage, index, branch = block.groups()
        return f"res{stage}.{index}.{_BRANCHES.get(branch, branch.replace('_', '.'))}"
    return body.replace("_", ".")


def convert_c2_names(names: Iterable[str]) -> dict[str, str]:
    """Renames Caffe2 blobs, dropping optimizer state (``*_momentum``) and bookkeeping.

    Args:
        names: blob names of a Caffe2 checkpoint.

    Returns:
        ``{original name: converted name}`` for every blob that holds model weights.

    Raises:
        ValueError: when two blobs convert to the same name (the file would silently lose
            one of them otherwise); the message names both.
    """
    converted: dict[str, str] = {}
    seen: dict[str, str] = {}
    for name in names:
        if name.endswith("_momentum") or name == "lr":
            continue
        new = convert_c2_name(name)
        if new in seen:
            raise ValueError(
                f"Caffe2 blobs {seen[new]!r} and {name!r} both convert to {new!r}; "
                "the checkpoint cannot be loaded unambiguously"
            )
        seen[new] = name
        converted[name] = new
    return converted


def read_pickle_checkpoint(local_path: str) -> dict[str, Any]:
    """Reads a Detectron/Detectron2/Caffe2 ``.pkl`` weight file without running code from it.

    The file is unpickled by :func:`panoptic2.checkpoint.safe_loading.read_weights_pickle`,
    which rebuilds only dicts, lists, tuples, strings, numbers, numpy arrays and
    ``OrderedDict``; a file naming anything else is refused before it is called.

    Accepted layouts: ``{"model": {name: array}, "__author__": ...}`` (Detectron2 model
    zoo), ``{"blobs": {name: array}}`` (Detectron) and a bare ``{name: array}`` dict.

    Args:
        local_path: a local file path.

    Returns:
        ``{"model": {name: torch.Tensor}, "__author__": str, "matching_heuristics": True}``;
        the names are still the file's own (conversion happens at alignment time).

    Raises:
        UnsafeCheckpointError: the file pickles objects other than the above.
        CorruptCheckpointError: the file is no pickle, or is truncated.
        ValueError: when the file does not hold a dict of arrays; the message names the
            file and the offending key.
    """
    data = read_weights_pickle(local_path)
    if not isinstance(data, dict):
        raise ValueError(f"{local_path}: expected a pickled dict, got {type(data).__name__}")
    author = "Caffe2"
    if "model" in data and isinstance(data["model"], dict):
        author = str(data.get("__author__", "unknown"))
        weights = data["model"]
    elif "blobs" in data and isinstance(data["blobs"], dict):
        weights = data["blobs"]
    else:
        weights = data
    tensors: dict[str, torch.Tensor] = {}
    for name, value in weights.items():
        if not isinstance(name, str):
            raise ValueError(f"{local_path}: weight names must be strings, got {name!r}")
        if name.endswith("_momentum"):
            continue
        if isinstance(value, np.ndarray) and value.dtype != object:
            # torch.from_numpy shares memory with the unpickled array; copy so the tensor
            # owns writable, contiguous storage even for read-only or strided arrays.
            tensors[name] = torch.from_numpy(np.ascontiguousarray(value)).clone()
        elif name in ("__author__", "matching_heuristics", "lr", "iter"):
            continue
        else:
            raise ValueError(
                f"{local_path}: entry {name!r} is a {type(value).__name__}, not a numeric "
                "array; expected a dict of numpy arrays"
            )
    return {"model": tensors, "__author__": author, "matching_heuristics": True}

"""Reading Detectron/Detectron2/Caffe2 ``.pkl`` weight files and renaming Caffe2 blobs.

Caffe2 checkpoints (the Detectron and Detectron2 model zoos, ImageNet ``R-50.pkl`` ...) are
pickles of numpy arrays whose blob names follow Caffe2 conventions (``res2_0_branch2a_w``).
:func:`convert_c2_names` rewrites them into the Detectron2-style PyTorch names our ResNet
backbones use (``res2.0.conv1.weight``); the suffix matching of
:func:`panoptic2.checkpoint.weight_conversion.align_state_dicts` then places them under the
model's prefix (``backbone.bottom_up.res2.0.conv1.weight``).

Detectron's detection heads (FPN, RPN, Fast R-CNN box head, Mask R-CNN mask head) become
Detectron2's module names (``fpn_inner_res4_5_sum_lateral_w -> fpn_lateral4.weight``,
``fc6_w -> roi_heads.box_head.fc1.weight``, ``_[mask]_fcn1_w ->
roi_heads.mask_head.mask_fcn1.weight``); :mod:`panoptic2.checkpoint.detectron2_rcnn_names`
takes them on to ours. Caffe2 also stores some values differently from Detectron2, which
:func:`prepare_c2_weights` undoes the way Detectron2's loader does.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import torch

from .safe_loading import read_weights_pickle

__all__ = [
    "convert_c2_name",
    "convert_c2_names",
    "prepare_c2_weights",
    "read_pickle_checkpoint",
]

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
# Detectron's detection-head blobs (without the "_w"/"_b" suffix) -> Detectron2 module names.
# The FPN RPN's layers exist once, as level 2's ("_fpn2"), shared by every level. FPN blobs
# are named after the last block of their ResNet stage ("fpn_inner_res4_5_sum_lateral" is
# the lateral of res4 in an R-50); the top stage's lateral has no "_lateral" suffix.
_HEAD_BLOBS = (
    (re.compile(r"^fpn_inner_res(\d+)_\d+_sum(?:_lateral)?$"), r"fpn_lateral\1"),
    (re.compile(r"^fpn_res(\d+)_\d+_sum$"), r"fpn_output\1"),
    (re.compile(r"^conv_rpn(?:_fpn2)?$"), "proposal_generator.rpn_head.conv"),
    (re.compile(r"^rpn_cls_logits(?:_fpn2)?$"), "proposal_generator.rpn_head.objectness_logits"),
    (re.compile(r"^rpn_bbox_pred(?:_fpn2)?$"), "proposal_generator.rpn_head.anchor_deltas"),
    (re.compile(r"^fc6$"), "roi_heads.box_head.fc1"),
    (re.compile(r"^fc7$"), "roi_heads.box_head.fc2"),
    (re.compile(r"^head_conv(\d+)$"), r"roi_heads.box_head.conv\1"),  # 4conv1fc heads
    (re.compile(r"^cls_score$"), "roi_heads.box_predictor.cls_score"),
    (re.compile(r"^bbox_pred$"), "roi_heads.box_predictor.bbox_pred"),
    # "_[mask]_fcn1" (Detectron's v1upXconvs heads), "_mask_fcn1" (its GN heads).
    (re.compile(r"^(?:_\[mask\]_fcn|_?mask_fcn)(\d+)$"), r"roi_heads.mask_head.mask_fcn\1"),
    (re.compile(r"^conv5_mask$"), "roi_heads.mask_head.deconv"),
    (re.compile(r"^mask_fcn_logits$"), "roi_heads.mask_head.predictor"),
)
# Caffe2 predicts background as class 0 and Detectron2 as class K (last).
_CLASS_SCORE_BLOB = re.compile(r"^cls_score_[wb]$")
_BOX_DELTA_BLOB = re.compile(r"^bbox_pred_[wb]$")
_MASK_LOGIT_BLOB = re.compile(r"^mask_fcn_logits_[wb]$")
_AFFINE_SCALE_BLOB = re.compile(r"^(.+)_bn_s$")


def convert_c2_name(name: str) -> str:
    """Renames one Caffe2 blob to the Detectron2-style PyTorch parameter name.

    Examples: ``conv1_w -> stem.conv1.weight``, ``res_conv1_bn_s -> stem.conv1.norm.weight``,
    ``res2_0_branch2a_w -> res2.0.conv1.weight``, ``res3_1_branch1_bn_b ->
    res3.1.shortcut.norm.bias``, ``fc1000_w -> linear.weight``; detection heads:
    ``fpn_inner_res5_2_sum_w -> fpn_lateral5.weight``, ``fpn_res2_2_sum_b ->
    fpn_output2.bias``, ``conv_rpn_fpn2_w -> proposal_generator.rpn_head.conv.weight``,
    ``fc6_w -> roi_heads.box_head.fc1.weight``, ``cls_score_b ->
    roi_heads.box_predictor.cls_score.bias``, ``_[mask]_fcn1_w ->
    roi_heads.mask_head.mask_fcn1.weight``, ``conv5_mask_w -> roi_heads.mask_head.deconv.weight``,
    ``mask_fcn_logits_w -> roi_heads.mask_head.predictor.weight``. Names that follow none of
    the conventions only have ``_w``/``_b`` turned into ``.weight``/``.bias`` and the other
    underscores into dots.

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
    for pattern, replacement in _HEAD_BLOBS:
        if pattern.match(body):
            return pattern.sub(replacement, body)
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


def prepare_c2_weights(weights: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rewrites the values Caffe2/Detectron stores differently from Detectron2.

    As Detectron2's loader does for files of Caffe2 authorship:

    * ``cls_score_{w,b}``: background is class 0 in Caffe2 and the last class in
      Detectron2, so row 0 moves to the end: ``(K + 1, D)`` stays ``(K + 1, D)``.
    * ``bbox_pred_{w,b}``: the 4 rows of the background's deltas are dropped, so
      class-specific ``(4 (K + 1), D)`` becomes ``(4 K, D)`` and class-agnostic ``(8, D)``
      (Detectron's ``CLS_AGNOSTIC_BBOX_REG``) becomes ``(4, D)``.
    * ``mask_fcn_logits_{w,b}``: the background's map (row 0) is dropped, ``(K + 1, ...)``
      becomes ``(K, ...)``. A single map (Detectron's class-agnostic masks, ``CLS_SPECIFIC_MASK
      False``) is kept as it is; Detectron2 would drop it and load nothing.
    * Caffe2's ResNets normalise with ``AffineChannel`` (``*_bn_s``, ``*_bn_b``), a batch norm
      with mean 0 and variance 1; those statistics are added as ``*_bn_rm`` (zeros) and
      ``*_bn_riv`` (ones) where the file has neither, which is what Detectron2's
      ``FrozenBatchNorm2d`` assumes when loading such files.

    Args:
        weights: ``{blob name: tensor}`` of a Caffe2 file.

    Returns:
        A new dict: the rewritten tensors, the others unchanged, and the added statistics.
    """
    out = dict(weights)
    for name, value in weights.items():
        if _CLASS_SCORE_BLOB.match(name):
            out[name] = torch.cat([value[1:], value[:1]])
        elif _BOX_DELTA_BLOB.match(name):
            out[name] = value[4:]
        elif _MASK_LOGIT_BLOB.match(name) and value.shape[0] > 1:
            out[name] = value[1:]
        scale = _AFFINE_SCALE_BLOB.match(name)
        if scale is not None:
            mean, var = f"{scale.group(1)}_bn_rm", f"{scale.group(1)}_bn_riv"
            if mean not in weights and var not in weights:
                out[mean] = torch.zeros_like(value)
                out[var] = torch.ones_like(value)
    return out


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
            # A C-ordered copy: the tensor owns writable, contiguous storage even for
            # read-only or strided arrays. np.array keeps 0-d arrays (BatchNorm's
            # num_batches_tracked) 0-d; np.ascontiguousarray would make them (1,).
            tensors[name] = torch.from_numpy(np.array(value, order="C", copy=True))
        elif name in ("__author__", "matching_heuristics", "lr", "iter"):
            continue
        else:
            raise ValueError(
                f"{local_path}: entry {name!r} is a {type(value).__name__}, not a numeric "
                "array; expected a dict of numpy arrays"
            )
    return {"model": tensors, "__author__": author, "matching_heuristics": True}

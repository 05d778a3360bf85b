"""Detectron2's R-CNN-family weight names -> ours (Faster R-CNN, Mask R-CNN, Panoptic FPN).

Detectron2's ``GeneralizedRCNN`` and ``PanopticFPN`` share our module tree (``backbone.
bottom_up``, ``proposal_generator.rpn_head``, ``roi_heads.box_predictor``,
``roi_heads.mask_head.{deconv,predictor}``, ``sem_seg_head.predictor`` have the same names
and shapes); four families of layers are named differently:

==========================================  ================================================
Detectron2                                  ours
==========================================  ================================================
``backbone.fpn_lateral{L}[.norm]``          ``backbone.fpn.inner_blocks.{i}.{0|1}``
``backbone.fpn_output{L}[.norm]``           ``backbone.fpn.layer_blocks.{i}.{0|1}``
``roi_heads.box_head.{conv,fc}{k}``         ``roi_heads.box_head.{convs,fcs}.{k-1}``
``roi_heads.mask_head.mask_fcn{k}``         ``roi_heads.mask_head.convs.{k-1}``
``sem_seg_head.p{L}.{j}``                   ``sem_seg_head.scale_heads.{i}.{j}``
==========================================  ================================================

``L`` is a pyramid level (``p{L}`` has stride ``2**L``) and ``i`` its rank among the levels
the checkpoint has, finest first: our FPN (torchvision's) and semantic head keep their
levels in lists ordered fine to coarse, Detectron2 names them by level. Index 0 of our FPN
blocks is the conv and 1 its norm (torchvision's ``Conv2dNormActivation``); Detectron2's
``Conv2d`` keeps the norm as its ``norm`` attribute.

Both Detectron2's ``.pth`` files (``{"model": state_dict, ...}``, as its
``DetectionCheckpointer`` writes) and its model-zoo ``.pkl`` files (``{"model": {name:
ndarray}, "__author__": "Detectron2 Model Zoo"}``) carry these names;
:func:`~panoptic2.checkpoint.weight_conversion.choose_and_align` picks this converter when it
loads more of the model's tensors than any other. Detectron's (Caffe2) blob names reach the
same table through :func:`~panoptic2.checkpoint.c2_model_loading.convert_c2_names` first
(the ``caffe2`` converter).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable

from panoptic2.registry import WEIGHT_CONVERTER_REGISTRY

__all__ = ["detectron2_rcnn", "rename_detectron2_rcnn"]

# "<prefix>fpn_lateral2.weight", "<prefix>fpn_output5.norm.bias"
_FPN = re.compile(
    r"^(?P<prefix>(?:.+\.)?)fpn_(?P<kind>lateral|output)(?P<level>\d+)\.(?P<rest>.+)$"
)
_FPN_BLOCKS = {"lateral": "inner_blocks", "output": "layer_blocks"}
# "<prefix>sem_seg_head.p3.0.weight"
_SEM_SEG = re.compile(r"^(?P<prefix>(?:.+\.)?sem_seg_head)\.p(?P<level>\d+)\.(?P<rest>.+)$")
# "<prefix>box_head.fc1.weight", "<prefix>box_head.conv2.norm.bias"
_BOX_HEAD = re.compile(
    r"^(?P<prefix>(?:.+\.)?box_head)\.(?P<kind>conv|fc)(?P<index>\d+)\.(?P<rest>.+)$"
)
_BOX_HEAD_LISTS = {"conv": "convs", "fc": "fcs"}
# "<prefix>mask_head.mask_fcn3.weight"
_MASK_HEAD = re.compile(r"^(?P<prefix>(?:.+\.)?mask_head)\.mask_fcn(?P<index>\d+)\.(?P<rest>.+)$")


def _ranks(levels: Iterable[int]) -> dict[int, int]:
    """``{level: its index among the levels, finest (smallest) first}``."""
    return {level: i for i, level in enumerate(sorted(set(levels)))}


def _fpn_part(rest: str) -> str:
    """``weight -> 0.weight`` (the conv), ``norm.bias -> 1.bias`` (its norm)."""
    return f"1.{rest[len('norm.') :]}" if rest.startswith("norm.") else f"0.{rest}"


def rename_detectron2_rcnn(keys: Iterable[str]) -> dict[str, str]:
    """Renames Detectron2 R-CNN / Panoptic FPN tensor names to ours (table in the module doc).

    Names outside the four renamed families, ours included, are kept, so a checkpoint
    already in our names passes through unchanged.

    Args:
        keys: the checkpoint's tensor names (any prefix before the renamed parts is kept).

    Returns:
        ``{their name: our name}`` for every key.
    """
    keys = list(keys)
    fpn_levels: dict[str, set[int]] = defaultdict(set)
    sem_seg_levels: dict[str, set[int]] = defaultdict(set)
    for key in keys:
        if (m := _FPN.match(key)) is not None:
            fpn_levels[m["prefix"]].add(int(m["level"]))
        elif (m := _SEM_SEG.match(key)) is not None:
            sem_seg_levels[m["prefix"]].add(int(m["level"]))
    fpn_rank = {prefix: _ranks(levels) for prefix, levels in fpn_levels.items()}
    sem_seg_rank = {prefix: _ranks(levels) for prefix, levels in sem_seg_levels.items()}

    renamed: dict[str, str] = {}
    for key in keys:
        new = key
        if (m := _FPN.match(key)) is not None:
            rank = fpn_rank[m["prefix"]][int(m["level"])]
            block = _FPN_BLOCKS[m["kind"]]
            new = f"{m['prefix']}fpn.{block}.{rank}.{_fpn_part(m['rest'])}"
        elif (m := _SEM_SEG.match(key)) is not None:
            rank = sem_seg_rank[m["prefix"]][int(m["level"])]
            new = f"{m['prefix']}.scale_heads.{rank}.{m['rest']}"
        elif (m := _BOX_HEAD.match(key)) is not None and int(m["index"]) >= 1:
            # Detectron2 numbers head layers from 1, our lists from 0.
            index = int(m["index"]) - 1
            new = f"{m['prefix']}.{_BOX_HEAD_LISTS[m['kind']]}.{index}.{m['rest']}"
        elif (m := _MASK_HEAD.match(key)) is not None and int(m["index"]) >= 1:
            new = f"{m['prefix']}.convs.{int(m['index']) - 1}.{m['rest']}"
        renamed[key] = new
    return renamed


@WEIGHT_CONVERTER_REGISTRY.register()
def detectron2_rcnn(keys: list[str]) -> dict[str, str]:
    """Detectron2 Faster R-CNN / Mask R-CNN / Panoptic FPN names -> ours; see
    :func:`rename_detectron2_rcnn`."""
    return rename_detectron2_rcnn(keys)

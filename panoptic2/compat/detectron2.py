"""Outputs of our R-CNN-family models in Detectron2's conventions, for code written for it.

Our models speak one id space, the label space's contiguous ids, in every output, and mark
void as -1 in panoptic id maps, the same for every meta-architecture; the evaluators, the
Visualizer, ``tools/demo.py`` and the prediction dumps read that. Detectron2's
``GeneralizedRCNN`` / ``PanopticFPN`` outputs differ in three places, which
:func:`to_detectron2_outputs` converts:

* ``instances.pred_classes``: ours is the contiguous id (an entry of
  ``label_space.thing_ids``), Detectron2's the thing index ``0..T-1``;
* the ``panoptic_seg`` id map: ours is (H, W) int64 with void -1, Detectron2's (H, W) int32
  with void 0;
* ``segments_info``: our ``category_id`` is the contiguous id and every segment has an
  ``area``; Detectron2's is the thing index for things and the separated semantic label
  ``1..S`` for stuff, and only stuff has an ``area``.

Segment ids (``1..N`` in placement order), scores, ``instance_id``, ``isthing``, masks, boxes
and the semantic logits (``sem_seg``: the separated ``(S + 1, H, W)`` map of Panoptic FPN,
label 0 "things") are the same. A model built with Detectron2's label space (things by
dataset id, then stuff by dataset id) has Detectron2's class order, so the converted outputs
equal Detectron2's for the same weights and input.

The fusion that builds ``panoptic_seg`` also never emits an empty segment (Detectron2 does
when ``OVERLAP_THRESH`` is 1 and an instance is fully covered, or ``STUFF_AREA_LIMIT`` is 0);
with Detectron2's defaults both produce the same segments.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from panoptic2.data.label_space import LabelSpace
from panoptic2.structures import Instances

__all__ = ["to_detectron2_instances", "to_detectron2_outputs", "to_detectron2_panoptic"]

# Void in our panoptic id maps and in Detectron2's.
_OUR_VOID = -1
_DETECTRON2_VOID = 0


def _thing_index(label_space: LabelSpace) -> dict[int, int]:
    return {c: i for i, c in enumerate(label_space.thing_ids)}


def to_detectron2_instances(instances: Instances, label_space: LabelSpace) -> Instances:
    """Our ``instances`` with Detectron2's classes (thing index ``0..T-1``).

    Args:
        instances: a model's ``instances``; ``pred_classes`` (N,) int64 contiguous thing ids.
        label_space: the model's label space.

    Returns:
        A new :class:`Instances` with the same fields, ``pred_classes`` (N,) int64 thing
        indices.

    Raises:
        ValueError: a predicted class is not a thing of the label space.
    """
    out = Instances(instances.image_size, **instances.get_fields())
    if not instances.has("pred_classes"):
        return out
    index = _thing_index(label_space)
    classes = instances.pred_classes
    if classes.numel() == 0:
        return out
    bad = sorted({int(c) for c in classes.tolist()} - set(index))
    if bad:
        raise ValueError(
            f"Predicted classes {bad} are not thing ids of the label space "
            f"{list(label_space.thing_ids)}: {label_space}"
        )
    lut = torch.full((max(index) + 1,), -1, dtype=torch.int64, device=classes.device)
    lut[list(index)] = torch.tensor(list(index.values()), dtype=torch.int64, device=classes.device)
    out.pred_classes = lut[classes.long()]
    return out


def to_detectron2_panoptic(
    panoptic_seg: tuple[torch.Tensor, Sequence[Mapping[str, Any]]], label_space: LabelSpace
) -> tuple[torch.Tensor, list[dict[str, Any]]]:
    """Our Panoptic FPN ``panoptic_seg`` in Detectron2's form (table in the module doc).

    Args:
        panoptic_seg: ``(id_map, segments_info)``: (H, W) int64 segment ids, -1 void; one
            dict per segment with ``id``, ``category_id`` (contiguous), ``isthing`` and, for
            things, ``score`` and ``instance_id``, for stuff ``area``.
        label_space: the model's label space.

    Returns:
        ``(id_map, segments_info)``: (H, W) int32 ids, 0 void; things ``{"id", "isthing":
        True, "score", "category_id": thing index, "instance_id"}``, stuff ``{"id",
        "isthing": False, "category_id": 1 + stuff index, "area"}``.

    Raises:
        ValueError: an id 0 in the map (it would become void), or a segment whose category
            is not a thing or stuff class of the label space (as its ``isthing`` says).
    """
    id_map, segments = panoptic_seg
    if bool((id_map == _DETECTRON2_VOID).any()):
        raise ValueError(
            "The panoptic id map uses id 0, which is Detectron2's void: it is not a map of our "
            "models (segments 1..N, void -1)"
        )
    things = _thing_index(label_space)
    stuff = {c: i + 1 for i, c in enumerate(label_space.panoptic_fpn_stuff_ids)}
    converted: list[dict[str, Any]] = []
    for segment in segments:
        category = int(segment["category_id"])
        isthing = bool(segment["isthing"])
        lookup = things if isthing else stuff
        if category not in lookup:
            kind = "thing" if isthing else "stuff"
            raise ValueError(
                f"Segment {segment['id']} has category {category}, which is not a {kind} "
                f"class of the label space {label_space}"
            )
        if isthing:
            converted.append(
                {
                    "id": int(segment["id"]),
                    "isthing": True,
                    "score": float(segment["score"]),
                    "category_id": lookup[category],
                    "instance_id": int(segment["instance_id"]),
                }
            )
        else:
            converted.append(
                {
                    "id": int(segment["id"]),
                    "isthing": False,
                    "category_id": lookup[category],
                    "area": int(segment["area"]),
                }
            )
    ids = torch.where(id_map == _OUR_VOID, _DETECTRON2_VOID, id_map).to(torch.int32)
    return ids, converted


def to_detectron2_outputs(outputs: Mapping[str, Any], label_space: LabelSpace) -> dict[str, Any]:
    """One image's outputs of our ``GeneralizedRCNN`` / ``PanopticFPN`` in Detectron2's form.

    Example::

        model.eval()
        ours = model([{"image": image}])[0]
        theirs = to_detectron2_outputs(ours, model.label_space)
        panoptic_seg, segments_info = theirs["panoptic_seg"]  # as Detectron2 returns them

    Args:
        outputs: ``{"instances", "sem_seg", "panoptic_seg"}`` (any subset) of one image.
        label_space: the model's label space (``model.label_space``).

    Returns:
        A new dict: ``instances`` by :func:`to_detectron2_instances`, ``panoptic_seg`` by
        :func:`to_detectron2_panoptic`; other entries (``sem_seg``) unchanged.
    """
    converted = dict(outputs)
    if "instances" in outputs:
        converted["instances"] = to_detectron2_instances(outputs["instances"], label_space)
    if "panoptic_seg" in outputs:
        converted["panoptic_seg"] = to_detectron2_panoptic(outputs["panoptic_seg"], label_space)
    return converted

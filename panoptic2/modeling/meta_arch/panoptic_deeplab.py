"""Panoptic-DeepLab (Cheng et al., CVPR 2020): backbone, semantic branch, instance branch,
and center-grouping post-processing into panoptic, semantic and instance outputs."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from panoptic2.config import configurable
from panoptic2.data.label_space import LabelSpace, label_space_from_config
from panoptic2.layers.argmax import argmax_over_classes
from panoptic2.structures import Boxes, ImageList, Instances, masks_to_boxes
from panoptic2.utils.xla import is_static_shape_device

from ..backbone import Backbone, build_backbone
from ..heads import build_ins_embed_head, build_sem_seg_head
from ..postprocessing import (
    INSTANCE_SCORE_RULES,
    get_instance_predictions,
    panoptic_from_maps,
)
from .base import LabelSpaceMixin, preprocess_images, sem_seg_postprocess
from .build import META_ARCH_REGISTRY

__all__ = ["VOID_LABEL", "PanopticDeepLab", "thing_class_table"]

# Label of void pixels in the output id map (Detectron2's Panoptic-DeepLab uses -1 too).
VOID_LABEL = -1


@META_ARCH_REGISTRY.register()
class PanopticDeepLab(LabelSpaceMixin, nn.Module):
    """Panoptic-DeepLab: a backbone shared by a semantic head and an instance head.

    Training (``model.train()``): ``forward(batched_inputs)`` returns ``{"loss_sem_seg",
    "loss_center", "loss_offset"}`` (each already multiplied by its weight).

    Inference: one dict per image, at the original size (``height``, ``width`` of the input
    dict, else the image size):

    * ``sem_seg``: (C, H, W) float logits;
    * ``panoptic_seg``: ``(id_map, segments_info)``, ``id_map`` (H, W) int64 with
      ``class * label_divisor + instance`` per pixel (instance 0 for stuff) and -1 for void,
      ``segments_info`` one dict per non-void id: ``id``, ``category_id`` (contiguous class),
      ``isthing`` and, for things, ``score``;
    * ``instances`` (with ``predict_instances``): an :class:`Instances` with ``pred_masks``
      (K, H, W) bool, ``pred_classes`` (K,) int64, ``scores`` (K,) float32 (mean semantic
      probability x center heatmap at the point ``instance_score_rule`` names) and
      ``pred_boxes`` (:class:`Boxes`, XYXY).

    Post-processing takes ``thing_ids``, ``label_divisor`` and ``ignore_label`` from the
    model's ``label_space``. The semantic argmax used by the post-processing never picks the
    ``ignore_label`` class (COCO-style label spaces, whose class 0 is void and never
    trained). ``last_postprocess_time`` holds the seconds the last inference forward spent in
    post-processing (synchronised on CUDA), so inference loops can report it apart.

    Args:
        backbone: the backbone.
        sem_seg_head: a semantic head, called as ``head(features, targets, weights)`` and
            returning ``(logits, losses)``.
        ins_embed_head: an instance head, called as ``head(features, center, center_weights,
            offset, offset_weights)`` and returning ``(center, offset, losses)``.
        pixel_mean: per-channel mean (0-255 scale, INPUT.FORMAT order).
        pixel_std: per-channel std.
        stuff_area: smallest area (pixels, original size) of a kept stuff segment.
        center_threshold: center heatmap threshold.
        nms_kernel: max-pooling kernel of center NMS.
        top_k: most centers per image (<= 0: no limit).
        predict_instances: also output ``instances``.
        instance_score_rule: where an instance's score reads the center heatmap:
            ``"center"`` (its own center) or ``"centroid"`` (its mask's centroid, as
            Detectron2); see :func:`get_instance_predictions`.
        size_divisibility: pad images to a multiple of this (-1: the backbone's).
        benchmark_network_speed: inference returns ``[]`` without post-processing.
        label_space: the classes the model predicts (None: set it before inference, e.g.
            by loading a checkpoint that stores one).
    """

    # What MODEL.COMPILE compiles, each part as one graph (panoptic2.modeling.compile): the
    # network, with its losses in training, and the tensor part of the post-processing.
    compiled_parts = ("backbone", "sem_seg_head", "ins_embed_head", "panoptic_maps")

    @configurable
    def __init__(
        self,
        *,
        backbone: Backbone,
        sem_seg_head: nn.Module,
        ins_embed_head: nn.Module,
        pixel_mean: Sequence[float],
        pixel_std: Sequence[float],
        stuff_area: int,
        center_threshold: float = 0.1,
        nms_kernel: int = 7,
        top_k: int = 200,
        predict_instances: bool = True,
        instance_score_rule: str = "center",
        size_divisibility: int = -1,
        benchmark_network_speed: bool = False,
        label_space: LabelSpace | None = None,
    ) -> None:
        super().__init__()
        if instance_score_rule not in INSTANCE_SCORE_RULES:
            raise ValueError(
                f"PanopticDeepLab: instance_score_rule must be one of {INSTANCE_SCORE_RULES}, "
                f"got {instance_score_rule!r}"
            )
        if len(pixel_mean) != len(pixel_std):
            raise ValueError(
                f"pixel_mean {list(pixel_mean)} and pixel_std {list(pixel_std)} differ in length"
            )
        self.backbone = backbone
        self.sem_seg_head = sem_seg_head
        self.ins_embed_head = ins_embed_head
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(-1, 1, 1), False)
        self.stuff_area = stuff_area
        self.center_threshold = center_threshold
        self.nms_kernel = nms_kernel
        self.top_k = top_k
        self.predict_instances = predict_instances
        self.instance_score_rule = instance_score_rule
        self.size_divisibility = (
            backbone.size_divisibility if size_divisibility < 0 else size_divisibility
        )
        self.benchmark_network_speed = benchmark_network_speed
        self.label_space = label_space
        self.last_postprocess_time = 0.0

    @classmethod
    def from_config(cls, cfg: Any) -> dict[str, Any]:
        backbone = build_backbone(cfg)
        shapes = backbone.output_shape()
        pd = cfg.MODEL.PANOPTIC_DEEPLAB
        return {
            "backbone": backbone,
            "sem_seg_head": build_sem_seg_head(cfg, shapes),
            "ins_embed_head": build_ins_embed_head(cfg, shapes),
            "pixel_mean": cfg.MODEL.PIXEL_MEAN,
            "pixel_std": cfg.MODEL.PIXEL_STD,
            "stuff_area": pd.STUFF_AREA,
            "center_threshold": pd.CENTER_THRESHOLD,
            "nms_kernel": pd.NMS_KERNEL,
            "top_k": pd.TOP_K_INSTANCE,
            "predict_instances": pd.PREDICT_INSTANCES,
            "instance_score_rule": pd.INSTANCE_SCORE_RULE,
            "size_divisibility": pd.SIZE_DIVISIBILITY,
            "benchmark_network_speed": pd.BENCHMARK_NETWORK_SPEED,
            "label_space": label_space_from_config(cfg),
        }

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    def _images(self, batched_inputs: Sequence[Mapping[str, Any]]) -> ImageList:
        """Normalised images padded to ``size_divisibility``."""
        return preprocess_images(
            batched_inputs, self.pixel_mean, self.pixel_std, self.size_divisibility
        )

    def _targets(
        self, batched_inputs: Sequence[Mapping[str, Any]], key: str, pad_value: float
    ) -> torch.Tensor | None:
        if not all(key in d for d in batched_inputs):
            return None
        targets = [d[key].to(self.device) for d in batched_inputs]
        return ImageList.from_tensors(targets, self.size_divisibility, pad_value).tensor

    def forward(self, batched_inputs: Sequence[Mapping[str, Any]]) -> Any:
        """Args:
            batched_inputs: mapper outputs: ``image`` (3, H, W) uint8/float in INPUT.FORMAT
                order, ``height``/``width`` (original size), optional ``dataset_name`` and,
                in training, ``sem_seg`` (H, W) int64, ``center`` (1, H, W), ``offset``
                (2, H, W), ``sem_seg_weights``, ``center_weights``, ``offset_weights``
                (H, W) float32.

        Returns:
            In training a dict of losses, in inference a list of per-image dicts (see the
            class docstring).
        """
        if self.training:
            images = self._images(batched_inputs).tensor
            return self._losses(batched_inputs, self.backbone(images))
        sem_logits, center, offset = self.predict_maps(batched_inputs)
        if self.benchmark_network_speed:
            return []
        return self.postprocess(batched_inputs, sem_logits, center, offset)

    def predict_maps(
        self, batched_inputs: Sequence[Mapping[str, Any]]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The network part of inference: the heads' outputs before post-processing.

        Args:
            batched_inputs: as for :meth:`forward`.

        Returns:
            ``(sem_logits, center, offset)`` at the padded input size: (N, C, H, W) float
            semantic logits, (N, 1, H, W) center heatmap, (N, 2, H, W) offsets in pixels.
        """
        features = self.backbone(self._images(batched_inputs).tensor)
        sem_logits, _ = self.sem_seg_head(features)
        center, offset, _ = self.ins_embed_head(features)
        return sem_logits, center, offset

    def _losses(
        self, batched_inputs: Sequence[Mapping[str, Any]], features: Mapping[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        ignore = self.sem_seg_head.ignore_value
        missing = [
            k
            for k in ("sem_seg", "center", "offset", "center_weights", "offset_weights")
            if not all(k in d for d in batched_inputs)
        ]
        if missing:
            names = sorted(
                {
                    str(d.get("file_name", "?"))
                    for d in batched_inputs
                    if any(k not in d for k in missing)
                }
            )
            raise ValueError(
                f"PanopticDeepLab training needs targets {missing} in every input (use "
                f"INPUT.DATASET_MAPPER_NAME PanopticDeepLabMapper); missing for {names}"
            )
        losses = {}
        _, sem_losses = self.sem_seg_head(
            features,
            self._targets(batched_inputs, "sem_seg", ignore),
            self._targets(batched_inputs, "sem_seg_weights", 0.0),
        )
        losses.update(sem_losses)
        _, _, ins_losses = self.ins_embed_head(
            features,
            self._targets(batched_inputs, "center", 0.0),
            self._targets(batched_inputs, "center_weights", 0.0),
            self._targets(batched_inputs, "offset", 0.0),
            self._targets(batched_inputs, "offset_weights", 0.0),
        )
        losses.update(ins_losses)
        return losses

    def postprocess(
        self,
        batched_inputs: Sequence[Mapping[str, Any]],
        sem_logits: torch.Tensor,
        center: torch.Tensor,
        offset: torch.Tensor,
    ) -> list[dict[str, Any]]:
        """The post-processing part of inference, on the outputs of :meth:`predict_maps`.

        Args:
            batched_inputs: the inputs ``predict_maps`` ran on (image and original sizes).
            sem_logits: (N, C, H, W) semantic logits.
            center: (N, 1, H, W) center heatmap.
            offset: (N, 2, H, W) offsets in pixels.

        Returns:
            One dict per image, as :meth:`forward` returns in inference; sets
            ``last_postprocess_time``.
        """
        space = self.require_label_space()
        if is_static_shape_device(sem_logits.device):
            # Grouping and merging have data-dependent shapes: they run on the host, after
            # one copy of the three outputs (one graph execution, one transfer).
            sem_logits, center, offset = _to_host(sem_logits, center, offset)
        results = []
        elapsed = 0.0
        for i, d in enumerate(batched_inputs):
            h, w = d["image"].shape[-2:]
            height, width = int(d.get("height", h)), int(d.get("width", w))
            logits = sem_seg_postprocess(sem_logits[i], (h, w), height, width)
            heatmap = sem_seg_postprocess(center[i], (h, w), height, width)
            offsets = sem_seg_postprocess(offset[i], (h, w), height, width)
            # Offsets are displacements in pixels: rescale them with the image.
            scale = torch.tensor([height / h, width / w], device=offsets.device).view(2, 1, 1)
            offsets = offsets * scale
            _synchronize(self.device)
            start = time.perf_counter()
            result = {"sem_seg": logits}
            result.update(self._panoptic(logits, heatmap, offsets, space))
            _synchronize(self.device)
            elapsed += time.perf_counter() - start
            results.append(result)
        self.last_postprocess_time = elapsed
        return results

    def _panoptic(
        self,
        logits: torch.Tensor,
        heatmap: torch.Tensor,
        offsets: torch.Tensor,
        space: LabelSpace,
    ) -> dict[str, Any]:
        """Post-processes one image's (C, H, W) logits, (1, H, W) heatmap, (2, H, W) offsets."""
        thing_ids = list(space.thing_ids)
        divisor = space.label_divisor
        panoptic, centers = self.panoptic_maps(
            logits, heatmap, offsets, thing_class_table(space, logits.shape[0], logits.device)
        )
        panoptic, centers = panoptic[None], centers[None]
        instances = []
        if self.predict_instances:
            instances = get_instance_predictions(
                panoptic,
                F.softmax(logits, dim=0),
                heatmap,
                centers,
                thing_ids,
                divisor,
                score_rule=self.instance_score_rule,
            )
        out: dict[str, Any] = {
            "panoptic_seg": (
                panoptic[0],
                _segments_info(panoptic[0], instances, thing_ids, divisor),
            )
        }
        if self.predict_instances:
            out["instances"] = _instances(instances, panoptic.shape[-2:], panoptic.device)
        return out

    def panoptic_maps(
        self,
        logits: torch.Tensor,
        heatmap: torch.Tensor,
        offsets: torch.Tensor,
        is_thing_class: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The tensor part of one image's post-processing: class argmax (never the
        ``ignore_label`` class), centers, grouping and merge.

        It has no host synchronisation and no Python branch on data, so it compiles as one
        graph (``MODEL.COMPILE``, see ``compiled_parts``) and exports whole, the number of
        centers being a data-dependent size.

        Args:
            logits: (C, H, W) float semantic logits.
            heatmap: (1, H, W) float center heatmap.
            offsets: (2, H, W) float offsets (dy, dx) in pixels.
            is_thing_class: (C,) bool, from :func:`thing_class_table`.

        Returns:
            ``(panoptic, centers)``: (H, W) int64 labels (``VOID_LABEL`` for void) and
            (K, 2) int64 centers (y, x).
        """
        space = self.require_label_space()
        scores = logits
        if 0 <= space.ignore_label < logits.shape[0]:
            scores = logits.clone()
            scores[space.ignore_label] = float("-inf")
        return panoptic_from_maps(
            argmax_over_classes(scores),
            heatmap[0],
            offsets,
            None,
            is_thing_class,
            label_divisor=space.label_divisor,
            stuff_area=self.stuff_area,
            void_label=VOID_LABEL,
            threshold=self.center_threshold,
            nms_kernel=self.nms_kernel,
            top_k=self.top_k if self.top_k > 0 else None,
        )


def thing_class_table(space: LabelSpace, num_classes: int, device: torch.device) -> torch.Tensor:
    """(num_classes,) bool on ``device``, True at the label space's thing classes."""
    table = torch.zeros(num_classes, dtype=torch.bool)
    table[list(space.thing_ids)] = True
    return table.to(device)


def _to_host(*maps: torch.Tensor) -> list[torch.Tensor]:
    """(N, C_i, H, W) device tensors copied to the CPU in one transfer."""
    joined = torch.cat([m.float() for m in maps], dim=1).cpu()
    return list(joined.split([m.shape[1] for m in maps], dim=1))


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _segments_info(
    id_map: torch.Tensor,
    instances: Iterable[Mapping[str, Any]],
    thing_ids: Sequence[int],
    divisor: int,
) -> list[dict[str, Any]]:
    """One entry per non-void id of ``id_map`` (increasing), things with their score."""
    things = set(thing_ids)
    ids = [i for i in torch.unique(id_map).tolist() if i != VOID_LABEL]
    # get_instance_predictions lists the thing segments in increasing label order.
    thing_labels = [i for i in ids if i % divisor > 0 and i // divisor in things]
    score_of = {label: inst["score"] for label, inst in zip(thing_labels, instances)}
    info = []
    for segment_id in ids:
        category = segment_id // divisor
        entry = {"id": segment_id, "category_id": category, "isthing": category in things}
        if segment_id in score_of:
            entry["score"] = score_of[segment_id]
        info.append(entry)
    return info


def _instances(
    instances: Sequence[Mapping[str, Any]], size: tuple[int, int], device: torch.device
) -> Instances:
    if instances:
        masks = torch.stack([inst["mask"] for inst in instances])
    else:
        masks = torch.zeros((0, *size), dtype=torch.bool, device=device)
    return Instances(
        (int(size[0]), int(size[1])),
        pred_masks=masks,
        pred_boxes=Boxes(masks_to_boxes(masks)),
        pred_classes=torch.tensor(
            [inst["class"] for inst in instances], dtype=torch.int64, device=device
        ),
        scores=torch.tensor(
            [inst["score"] for inst in instances], dtype=torch.float32, device=device
        ),
    )

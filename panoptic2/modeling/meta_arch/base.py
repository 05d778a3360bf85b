"""What every segmentation meta-architecture shares: its label space and input preprocessing.

A model's :class:`~panoptic2.data.label_space.LabelSpace` is given to its constructor
(``from_config`` builds it from ``DATASETS.TRAIN`` + ``DATASETS.TEST``), or set later, e.g.
by the checkpointer from a checkpoint that stores one; it is never looked up while the model
runs. Each model checks a new label space against its heads (number of classes) when it is
set, so a mismatch fails at construction or load time, not in the middle of an evaluation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch.nn import functional as F

from panoptic2.data.label_space import LabelSpace
from panoptic2.structures import ImageList

__all__ = ["LabelSpaceMixin", "preprocess_images", "sem_seg_postprocess"]


class LabelSpaceMixin:
    """Gives an ``nn.Module`` a checked ``label_space`` attribute (None until known).

    Subclasses override :meth:`check_label_space` to compare the label space with their
    heads. The attribute is stored in checkpoints by :class:`panoptic2.checkpoint.Checkpointer`.
    """

    _label_space: LabelSpace | None = None

    @property
    def label_space(self) -> LabelSpace | None:
        """The classes the model predicts, or None when not known yet."""
        return self._label_space

    @label_space.setter
    def label_space(self, space: LabelSpace | None) -> None:
        if space is not None:
            if not isinstance(space, LabelSpace):
                raise TypeError(f"label_space must be a LabelSpace, got {type(space).__name__}")
            self.check_label_space(space)
        self._label_space = space

    def check_label_space(self, space: LabelSpace) -> None:
        """Raises ValueError when ``space`` does not fit the model's heads.

        By default a model with a ``sem_seg_head`` that has ``num_classes`` must predict every
        class of the label space.
        """
        head = getattr(self, "sem_seg_head", None)
        num_classes = getattr(head, "num_classes", None)
        if num_classes is not None and space.num_classes != num_classes:
            raise ValueError(
                f"The label space has {space.num_classes} classes but the model predicts "
                f"{num_classes} (MODEL.SEM_SEG_HEAD.NUM_CLASSES): {space}"
            )

    def require_label_space(self) -> LabelSpace:
        """The label space, or a ValueError that says how to provide one."""
        if self._label_space is None:
            raise ValueError(
                f"{type(self).__name__} has no label space: build it with label_space=..., "
                "name a dataset in DATASETS.TRAIN or DATASETS.TEST, or load weights from a "
                "checkpoint that stores one"
            )
        return self._label_space


def preprocess_images(
    batched_inputs: Sequence[Mapping[str, Any]],
    pixel_mean: torch.Tensor,
    pixel_std: torch.Tensor,
    size_divisibility: int,
) -> ImageList:
    """Normalises each input's ``image`` and pads them into one batch.

    Args:
        batched_inputs: model inputs with ``image`` (C, H, W) uint8 or float, in the channel
            order of ``INPUT.FORMAT``.
        pixel_mean: (C, 1, 1) float32 mean on the model's device (0-255 scale).
        pixel_std: (C, 1, 1) float32 std.
        size_divisibility: the padded sides are multiples of this (<= 1: no rounding).

    Returns:
        An :class:`ImageList` of (N, C, H, W) float32 images. Padding is 0 after
        normalisation, i.e. the mean colour, as in Detectron2.
    """
    device = pixel_mean.device
    images = [(d["image"].to(device).float() - pixel_mean) / pixel_std for d in batched_inputs]
    return ImageList.from_tensors(images, size_divisibility)


def sem_seg_postprocess(
    result: torch.Tensor, img_size: tuple[int, int], output_height: int, output_width: int
) -> torch.Tensor:
    """Crops the padding off a prediction and resizes it to the original image size
    (Detectron2's ``sem_seg_postprocess``).

    Args:
        result: ``(C, H_pad, W_pad)`` float scores of the padded network input.
        img_size: ``(h, w)`` of the image inside the padded input (after test resizing).
        output_height: original image height.
        output_width: original image width.

    Returns:
        ``(C, output_height, output_width)`` float scores (bilinear, ``align_corners=False``;
        only the crop when the size already matches).
    """
    result = result[:, : img_size[0], : img_size[1]]
    if tuple(result.shape[-2:]) == (output_height, output_width):
        return result
    return F.interpolate(
        result[None], size=(output_height, output_width), mode="bilinear", align_corners=False
    )[0]

"""Anchor generators: reference boxes tiled over each feature map, Detectron2-style.

``MODEL.ANCHOR_GENERATOR.NAME`` picks one from :data:`ANCHOR_GENERATOR_REGISTRY`; a
registered object is called as ``obj(cfg, input_shape)`` with the shapes of the features
it tiles, in order.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from panoptic2.config import configurable
from panoptic2.layers import ShapeSpec
from panoptic2.registry import ANCHOR_GENERATOR_REGISTRY

__all__ = [
    "ANCHOR_GENERATOR_REGISTRY",
    "DefaultAnchorGenerator",
    "build_anchor_generator",
]


def _broadcast_params(params: Sequence, num_features: int, name: str) -> list[list[float]]:
    """One list of values per feature level: a single list is shared by all levels."""
    if not isinstance(params, Sequence) or not params:
        raise ValueError(f"{name} must be a non-empty list of lists, got {params!r}")
    if not isinstance(params[0], Sequence):
        raise ValueError(f"{name} must be a list of lists (one per level), got {params!r}")
    if len(params) == 1:
        return [[float(v) for v in params[0]]] * num_features
    if len(params) != num_features:
        raise ValueError(
            f"{name} has {len(params)} levels but there are {num_features} feature maps"
        )
    return [[float(v) for v in p] for p in params]


@ANCHOR_GENERATOR_REGISTRY.register()
class DefaultAnchorGenerator(nn.Module):
    """Axis-aligned anchors of several sizes and aspect ratios at every feature-map cell.

    At level ``l`` each cell ``(i, j)`` gets ``len(sizes[l]) * len(aspect_ratios[l])``
    anchors centred on ``((j + offset) * stride, (i + offset) * stride)`` in input pixels;
    an anchor of size ``s`` and ratio ``r = h / w`` has area ``s**2``: ``w = s / sqrt(r)``,
    ``h = r * w``. Anchors are ordered by cell (row-major), then size, then ratio, which is
    the order of an RPN head's (A, H, W) outputs flattened as (H, W, A).

    Args:
        sizes: per level, anchor sizes in input pixels (a single list is shared by all).
        aspect_ratios: per level, height / width ratios (a single list is shared by all).
        strides: stride of each feature level.
        offset: cell-relative position of the anchor centres, in [0, 1); 0.0 puts them on
            the cells' top-left corners (Detectron2 default), 0.5 on the cell centres.
    """

    box_dim: int = 4

    @configurable
    def __init__(
        self,
        *,
        sizes: Sequence[Sequence[float]],
        aspect_ratios: Sequence[Sequence[float]],
        strides: Sequence[int],
        offset: float = 0.0,
    ) -> None:
        super().__init__()
        self.strides = [int(s) for s in strides]
        self.num_features = len(self.strides)
        if not 0.0 <= offset < 1.0:
            raise ValueError(f"Anchor offset must be in [0, 1), got {offset}")
        self.offset = float(offset)
        sizes = _broadcast_params(sizes, self.num_features, "ANCHOR_GENERATOR.SIZES")
        ratios = _broadcast_params(
            aspect_ratios, self.num_features, "ANCHOR_GENERATOR.ASPECT_RATIOS"
        )
        cell_anchors = [self.generate_cell_anchors(s, r) for s, r in zip(sizes, ratios)]
        # Buffers (not persistent) so .to(device) moves them while checkpoints ignore them.
        for i, anchors in enumerate(cell_anchors):
            self.register_buffer(f"cell_anchors_{i}", anchors, persistent=False)

    @classmethod
    def from_config(cls, cfg, input_shape: Sequence[ShapeSpec]) -> dict:
        return {
            "sizes": cfg.MODEL.ANCHOR_GENERATOR.SIZES,
            "aspect_ratios": cfg.MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS,
            "strides": [s.stride for s in input_shape],
            "offset": cfg.MODEL.ANCHOR_GENERATOR.OFFSET,
        }

    @staticmethod
    def generate_cell_anchors(
        sizes: Sequence[float], aspect_ratios: Sequence[float]
    ) -> torch.Tensor:
        """Anchors centred on (0, 0) for one level.

        Args:
            sizes: anchor sizes (square root of the area).
            aspect_ratios: height / width ratios.

        Returns:
            (len(sizes) * len(aspect_ratios), 4) float32 XYXY, sizes outer, ratios inner.
        """
        anchors = []
        for size in sizes:
            area = size**2.0
            for ratio in aspect_ratios:
                w = math.sqrt(area / ratio)
                h = ratio * w
                anchors.append([-w / 2.0, -h / 2.0, w / 2.0, h / 2.0])
        return torch.tensor(anchors, dtype=torch.float32)

    @property
    def cell_anchors(self) -> list[torch.Tensor]:
        """Per level, the (A_l, 4) anchors centred on (0, 0)."""
        return [getattr(self, f"cell_anchors_{i}") for i in range(self.num_features)]

    @property
    def num_cell_anchors(self) -> list[int]:
        """Anchors per cell at each level (the A of an RPN head)."""
        return [len(a) for a in self.cell_anchors]

    num_anchors = num_cell_anchors

    def _grid_anchors(self, grid_sizes: list[tuple[int, int]]) -> list[torch.Tensor]:
        anchors = []
        for (height, width), stride, base in zip(grid_sizes, self.strides, self.cell_anchors):
            device = base.device
            shifts_x = (torch.arange(width, device=device, dtype=torch.float32) + self.offset) * (
                stride
            )
            shifts_y = (
                torch.arange(height, device=device, dtype=torch.float32) + self.offset
            ) * stride
            shift_y, shift_x = torch.meshgrid(shifts_y, shifts_x, indexing="ij")
            shift_x, shift_y = shift_x.reshape(-1), shift_y.reshape(-1)
            shifts = torch.stack((shift_x, shift_y, shift_x, shift_y), dim=1)
            anchors.append((shifts[:, None, :] + base[None, :, :]).reshape(-1, 4))
        return anchors

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        """Anchors for feature maps of these sizes.

        Args:
            features: per level, (N, C, H_l, W_l) feature maps (only the sizes are used).

        Returns:
            Per level, (H_l * W_l * A_l, 4) float32 XYXY anchors in input pixels, shared by
            all images of the batch.
        """
        if len(features) != self.num_features:
            raise ValueError(
                f"Anchor generator built for {self.num_features} levels got {len(features)}"
            )
        return self._grid_anchors([tuple(f.shape[-2:]) for f in features])


def build_anchor_generator(cfg, input_shape: Sequence[ShapeSpec]) -> nn.Module:
    """Builds the anchor generator named by ``cfg.MODEL.ANCHOR_GENERATOR.NAME``.

    Args:
        cfg: the config.
        input_shape: shapes (strides) of the feature maps it tiles, in order.

    Returns:
        The anchor generator module.
    """
    return ANCHOR_GENERATOR_REGISTRY.get(cfg.MODEL.ANCHOR_GENERATOR.NAME)(cfg, input_shape)

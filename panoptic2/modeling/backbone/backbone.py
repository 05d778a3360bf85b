"""The contract every backbone honours."""

from abc import ABCMeta, abstractmethod

import torch
from torch import nn

from panoptic2.layers.shape_spec import ShapeSpec


class Backbone(nn.Module, metaclass=ABCMeta):
    """A network that maps an image batch to named feature maps.

    Subclasses set ``_out_features`` (names in output order), ``_out_feature_channels``
    and ``_out_feature_strides`` (dicts keyed by name), and implement :meth:`forward`.
    One registry-driven test checks every registered backbone against this contract.
    """

    _out_features: list[str]
    _out_feature_channels: dict[str, int]
    _out_feature_strides: dict[str, int]

    @abstractmethod
    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Args:
            x: (N, C, H, W) float images, already normalised.

        Returns:
            Feature maps by name, each (N, channels, ceil(H / stride), ceil(W / stride)).
        """

    @property
    def size_divisibility(self) -> int:
        """Input sizes must be divisible by this for the features to align (0 = any)."""
        return 0

    def output_shape(self) -> dict[str, ShapeSpec]:
        """Returns the channels and stride of each output feature, by name."""
        return {
            name: ShapeSpec(
                channels=self._out_feature_channels[name],
                stride=self._out_feature_strides[name],
            )
            for name in self._out_features
        }

"""The contract every backbone honours."""

from __future__ import annotations

from abc import ABCMeta, abstractmethod
from collections.abc import Iterable, Sequence

import torch
from torch import nn

from panoptic2.layers.batch_norm import FrozenBatchNorm2d
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

    # Plumbing shared by the backbones' constructors, ``from_config`` and ``forward``.

    def _set_out_features(
        self, owner: str, out_features: Sequence[str], valid: Sequence[str]
    ) -> None:
        """Checks ``out_features`` (non-empty, all in ``valid``) and stores them.

        Args:
            owner: the backbone's name, for the error message.
            out_features: the requested output names.
            valid: the names this backbone can output (shown as given in the error).
        """
        unknown = [f for f in out_features if f not in valid]
        if unknown or not out_features:
            raise ValueError(
                f"{owner} out_features must be among {valid}, got {list(out_features)}"
            )
        self._out_features = list(out_features)

    @staticmethod
    def _check_input(owner: str, x: torch.Tensor) -> None:
        """Raises unless ``x`` is an (N, C, H, W) batch; ``owner`` names the backbone."""
        if x.dim() != 4:
            raise ValueError(f"{owner} takes (N, C, H, W) input, got shape {tuple(x.shape)}")

    @staticmethod
    def _frozen(module: nn.Module) -> nn.Module:
        """Stops gradients of ``module``'s parameters and freezes its BatchNorm layers.

        Returns:
            ``module`` (or its replacement if it is itself a BatchNorm layer).
        """
        for p in module.parameters():
            p.requires_grad_(False)
        return FrozenBatchNorm2d.convert_frozen_batchnorm(module)

    def _freeze_children(self, names: Iterable[str]) -> None:
        """Replaces each named child module by its :meth:`_frozen` version."""
        for name in names:
            setattr(self, name, self._frozen(getattr(self, name)))

    def _forward_stages(self, x: torch.Tensor, stages: Iterable[str]) -> dict[str, torch.Tensor]:
        """Runs ``self.stem`` then the named stages in order, keeping the requested outputs.

        Args:
            x: (N, C, H, W) float images.
            stages: names of the stage modules to run after the stem.

        Returns:
            ``{name: feature}`` for the names in ``_out_features`` that were run.
        """
        outputs = {}
        x = self.stem(x)
        if "stem" in self._out_features:
            outputs["stem"] = x
        for name in stages:
            x = getattr(self, name)(x)
            if name in self._out_features:
                outputs[name] = x
        return outputs

    @staticmethod
    def _input_channels(cfg, input_shape: ShapeSpec | None) -> int:
        """Image channels for ``from_config``: ``input_shape``'s, else one per pixel mean.

        Args:
            cfg: the config (``MODEL.PIXEL_MEAN`` has one value per channel).
            input_shape: the input shape, or None.
        """
        channels = input_shape.channels if input_shape is not None else None
        return channels or len(cfg.MODEL.PIXEL_MEAN)

"""The shape contract between a backbone and the heads that consume its features."""

from dataclasses import dataclass


@dataclass(frozen=True)
class ShapeSpec:
    """Channels and stride of one feature map (sizes are per image, so not part of it).

    Attributes:
        channels: number of channels, or None when unknown.
        stride: total stride with respect to the input image, or None when unknown.
        height: optional fixed height.
        width: optional fixed width.
    """

    channels: int | None = None
    stride: int | None = None
    height: int | None = None
    width: int | None = None

"""Colours of the visualizer: deterministic random colours and per-instance jitter.

Random and jittered colours are darkened to at most luma 190 (of 255), so that light label
text and the image's bright areas stand out against every segment.
"""

from __future__ import annotations

import colorsys
from collections.abc import Sequence

import numpy as np

__all__ = ["JITTER", "Color", "darker", "jitter_color", "lighter", "random_color"]

Color = tuple[int, int, int]

JITTER = 40
"""Largest per-channel offset of a thing's colour from its class colour."""

_MAX_LUMA = 190
_GOLDEN = 0.618033988749895  # hue step that keeps consecutive colours far apart


def _limit_luma(color: Sequence[float]) -> Color:
    luma = 0.299 * color[0] + 0.587 * color[1] + 0.114 * color[2]
    factor = min(1.0, _MAX_LUMA / max(luma, 1e-6))
    return tuple(int(round(v * factor)) for v in color)


def random_color(seed: int) -> Color:
    """A saturated colour determined by ``seed`` (consecutive seeds differ in hue).

    Args:
        seed: any integer, e.g. a class id or an instance index.

    Returns:
        RGB colour, never lighter than luma 190.
    """
    hue = (seed * _GOLDEN) % 1.0
    saturation = 0.55 + 0.35 * ((seed * 0.381966) % 1.0)
    value = 0.75 + 0.2 * ((seed * 0.7548776662) % 1.0)
    rgb = colorsys.hsv_to_rgb(hue, saturation, value)
    return _limit_luma([255 * v for v in rgb])


def jitter_color(color: Sequence[int], seed: int, amount: int = JITTER) -> Color:
    """A colour near ``color`` determined by ``seed``, to tell instances of a class apart.

    Args:
        color: RGB base colour.
        seed: e.g. a segment id; the same seed always gives the same colour.
        amount: largest offset per channel.

    Returns:
        RGB colour within ``amount`` of ``color`` in each channel, darkened further only when
        it would be lighter than luma 190.
    """
    rng = np.random.default_rng(int(seed) % (1 << 64))
    offset = rng.integers(-amount, amount + 1, size=3)
    return _limit_luma(np.clip(np.asarray(color) + offset, 0, 255).tolist())


def darker(color: Sequence[int]) -> Color:
    """A darker shade of ``color`` (outlines)."""
    return tuple(int(v * 0.55) for v in color)


def lighter(color: Sequence[int]) -> Color:
    """A lighter shade of ``color`` (label text)."""
    return tuple(int(v + (255 - v) * 0.65) for v in color)

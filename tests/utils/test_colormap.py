"""Tests of panoptic2/utils/colormap.py: deterministic colours that never get too light."""

import numpy as np

from panoptic2.utils.colormap import JITTER, darker, jitter_color, lighter, random_color


def test_colour_helpers_deterministic_and_not_white():
    for seed in range(200):
        color = random_color(seed)
        assert color == random_color(seed)
        assert 0.299 * color[0] + 0.587 * color[1] + 0.114 * color[2] <= 191
    assert len({random_color(s) for s in range(20)}) == 20
    base = (100, 120, 80)
    jittered = [jitter_color(base, s) for s in range(50)]
    assert jittered == [jitter_color(base, s) for s in range(50)]
    assert all(np.abs(np.subtract(c, base)).max() <= JITTER for c in jittered)
    assert len(set(jittered)) > 40
    white = jitter_color((255, 255, 255), 3)
    assert 0.299 * white[0] + 0.587 * white[1] + 0.114 * white[2] <= 191


def test_shades():
    assert darker((200, 100, 0)) == (110, 55, 0)
    assert all(a >= b for a, b in zip(lighter((200, 100, 0)), (200, 100, 0)))

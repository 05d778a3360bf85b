"""DefaultAnchorGenerator: cell anchors, grid coordinates, counts and ordering, by hand."""

import math

import pytest
import torch

from panoptic2.config import get_cfg
from panoptic2.layers import ShapeSpec
from panoptic2.modeling.anchor_generator import DefaultAnchorGenerator, build_anchor_generator


def _features(*sizes):
    return [torch.zeros(2, 1, h, w) for h, w in sizes]


def test_cell_anchors_sizes_and_ratios():
    cell = DefaultAnchorGenerator.generate_cell_anchors([32.0, 64.0], [0.5, 1.0, 2.0])
    assert cell.shape == (6, 4) and cell.dtype == torch.float32
    # Ratio 0.5 (h / w) at size 32: w = sqrt(1024 / 0.5) = 45.2548, h = 22.6274.
    w, h = math.sqrt(2048.0), math.sqrt(2048.0) / 2
    torch.testing.assert_close(cell[0], torch.tensor([-w / 2, -h / 2, w / 2, h / 2]))
    torch.testing.assert_close(cell[1], torch.tensor([-16.0, -16.0, 16.0, 16.0]))
    torch.testing.assert_close(cell[4], torch.tensor([-32.0, -32.0, 32.0, 32.0]))
    widths, heights = cell[:, 2] - cell[:, 0], cell[:, 3] - cell[:, 1]
    # Sizes outer, ratios inner: area = size^2 and h / w = ratio.
    torch.testing.assert_close(widths * heights, torch.tensor([1024.0] * 3 + [4096.0] * 3))
    torch.testing.assert_close(heights / widths, torch.tensor([0.5, 1.0, 2.0] * 2))
    # Centred on (0, 0).
    torch.testing.assert_close(cell[:, :2] + cell[:, 2:], torch.zeros(6, 2))


def test_grid_coordinates_small_grid():
    gen = DefaultAnchorGenerator(sizes=[[8]], aspect_ratios=[[1.0]], strides=[4])
    (anchors,) = gen(_features((2, 3)))
    # Centres at (j * 4, i * 4), row-major: (0,0) (4,0) (8,0) (0,4) (4,4) (8,4).
    expected = torch.tensor(
        [
            [-4, -4, 4, 4],
            [0, -4, 8, 4],
            [4, -4, 12, 4],
            [-4, 0, 4, 8],
            [0, 0, 8, 8],
            [4, 0, 12, 8],
        ],
        dtype=torch.float32,
    )
    torch.testing.assert_close(anchors, expected)


def test_offset_moves_centres_to_cell_centres():
    gen = DefaultAnchorGenerator(sizes=[[8]], aspect_ratios=[[1.0]], strides=[4], offset=0.5)
    (anchors,) = gen(_features((2, 3)))
    centres = (anchors[:, :2] + anchors[:, 2:]) / 2
    expected = torch.tensor([[2.0, 2.0], [6, 2], [10, 2], [2, 6], [6, 6], [10, 6]])
    torch.testing.assert_close(centres, expected)


def test_counts_and_order_per_level():
    gen = DefaultAnchorGenerator(
        sizes=[[32], [64]], aspect_ratios=[[0.5, 1.0, 2.0]], strides=[4, 8]
    )
    assert gen.num_cell_anchors == [3, 3]
    level0, level1 = gen(_features((8, 8), (4, 5)))
    assert level0.shape == (8 * 8 * 3, 4) and level1.shape == (4 * 5 * 3, 4)
    # (H, W, A) order: the A anchors of a cell are consecutive and share its centre.
    cell = level1.view(4, 5, 3, 4)
    centres = (cell[..., :2] + cell[..., 2:]) / 2
    torch.testing.assert_close(centres[2, 3], torch.tensor([[24.0, 16.0]] * 3))
    torch.testing.assert_close(cell[2, 3] - torch.tensor([24.0, 16, 24, 16]), gen.cell_anchors[1])
    widths = level1[:, 2] - level1[:, 0]
    heights = level1[:, 3] - level1[:, 1]
    torch.testing.assert_close(widths * heights, torch.full((60,), 4096.0))


def test_broadcast_and_level_mismatch():
    gen = DefaultAnchorGenerator(sizes=[[16, 32]], aspect_ratios=[[1.0]], strides=[4, 8, 16])
    assert gen.num_cell_anchors == [2, 2, 2]
    with pytest.raises(ValueError, match="3 feature maps"):
        DefaultAnchorGenerator(sizes=[[16], [32]], aspect_ratios=[[1.0]], strides=[4, 8, 16])
    with pytest.raises(ValueError, match="list of lists"):
        DefaultAnchorGenerator(sizes=[16, 32], aspect_ratios=[[1.0]], strides=[4, 8])
    with pytest.raises(ValueError, match="levels"):
        gen(_features((2, 2)))


def test_from_config_fpn_defaults():
    cfg = get_cfg()
    shapes = [ShapeSpec(channels=8, stride=s) for s in (4, 8, 16, 32, 64)]
    gen = build_anchor_generator(cfg, shapes)
    assert isinstance(gen, DefaultAnchorGenerator)
    assert gen.num_cell_anchors == [3] * 5
    assert gen.strides == [4, 8, 16, 32, 64]
    # Level l's square anchor has side 32 * 2**l.
    for level, cell in enumerate(gen.cell_anchors):
        torch.testing.assert_close(cell[1, 2] - cell[1, 0], torch.tensor(32.0 * 2**level))
    # Buffers follow the module but are not saved in checkpoints.
    assert gen.state_dict() == {}

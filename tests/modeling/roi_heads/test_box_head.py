"""The fully connected box head (panoptic2/modeling/roi_heads/box_head.py)."""

import pytest
import torch

from panoptic2.layers import ShapeSpec
from panoptic2.modeling.roi_heads.box_head import FastRCNNConvFCHead


def test_two_fc_head_shapes_and_relu():
    head = FastRCNNConvFCHead(ShapeSpec(channels=8, height=7, width=7), num_fc=2, fc_dim=32)
    assert [fc.in_features for fc in head.fcs] == [8 * 49, 32]
    out = head(torch.randn(5, 8, 7, 7))
    assert out.shape == (5, 32) and head.output_size == 32
    assert (out >= 0).all()


def test_conv_then_fc():
    head = FastRCNNConvFCHead(
        ShapeSpec(channels=4, height=7, width=7), num_conv=2, conv_dim=6, num_fc=1, fc_dim=10
    )
    assert head.fcs[0].in_features == 6 * 49
    assert head(torch.randn(2, 4, 7, 7)).shape == (2, 10)


def test_no_layers_is_an_error():
    with pytest.raises(ValueError, match="at least one"):
        FastRCNNConvFCHead(ShapeSpec(channels=4, height=7, width=7), num_conv=0, num_fc=0)

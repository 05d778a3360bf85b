import torch
from torch import nn

from panoptic2.layers.separable_conv import DepthwiseSeparableConv2d


def test_equals_depthwise_then_pointwise_reference():
    torch.manual_seed(0)
    conv = DepthwiseSeparableConv2d(4, 6, kernel_size=5, padding=2)
    x = torch.randn(2, 4, 9, 11)
    dw = nn.functional.conv2d(x, conv.depthwise.weight, conv.depthwise.bias, padding=2, groups=4)
    ref = nn.functional.conv2d(dw, conv.pointwise.weight, conv.pointwise.bias)
    torch.testing.assert_close(conv(x), ref)
    assert conv.depthwise.weight.shape == (4, 1, 5, 5)
    assert conv.pointwise.weight.shape == (6, 4, 1, 1)


def test_norm_and_activation_and_dilation_keep_size():
    conv = DepthwiseSeparableConv2d(
        8, 32, kernel_size=3, dilation=4, norm1="BN", activation1=torch.relu, norm2="GN"
    )
    assert isinstance(conv.depthwise.norm, nn.BatchNorm2d)
    assert isinstance(conv.pointwise.norm, nn.GroupNorm)
    assert conv.depthwise.bias is None  # the norm's shift replaces the bias
    assert conv(torch.randn(2, 8, 13, 7)).shape == (2, 32, 13, 7)

"""Switchable atrous convolution against a direct formula."""

import math

import pytest
import torch
from torch.nn import functional as F

from panoptic2.layers.sac import GlobalContext, SAConv2d


def _valid_mean_5x5(x: torch.Tensor) -> torch.Tensor:
    # Mean over the valid pixels of each 5x5 window (TF "same" average pooling), computed
    # as a windowed sum divided by a windowed count.
    ones = torch.ones(1, 1, 5, 5)
    c = x.shape[1]
    sums = F.conv2d(x, ones.expand(c, 1, 5, 5), padding=2, groups=c)
    counts = F.conv2d(torch.ones(1, 1, *x.shape[-2:]), ones, padding=2)
    return sums / counts


def test_untrained_sac_is_a_plain_convolution():
    torch.manual_seed(0)
    sac = SAConv2d(4, 6, 3, dilation=2)
    x = torch.randn(2, 4, 11, 13)
    expected = F.conv2d(x, sac.weight, padding=2, dilation=2)
    torch.testing.assert_close(sac(x), expected)


def test_sac_formula_with_trained_switch_and_context():
    torch.manual_seed(0)
    sac = SAConv2d(3, 5, 3, dilation=1, norm=torch.nn.BatchNorm2d(5), activation=F.relu).eval()
    with torch.no_grad():
        for p in [sac.switch.weight, sac.switch.bias, *sac.pre_context.parameters(),
                  *sac.post_context.parameters()]:  # fmt: skip
            p.normal_(0, 0.3)
        sac.norm.running_mean.uniform_(-0.2, 0.2)
    x = torch.randn(2, 3, 9, 10)

    def context(module, t):
        pooled = t.mean(dim=(2, 3), keepdim=True)
        return t + F.conv2d(pooled, module.conv.weight, module.conv.bias)

    with torch.no_grad():
        y = context(sac.pre_context, x)
        s = F.conv2d(_valid_mean_5x5(y), sac.switch.weight, sac.switch.bias)
        small = F.conv2d(y, sac.weight, padding=1, dilation=1)
        large = F.conv2d(y, sac.weight, padding=3, dilation=3)
        out = context(sac.post_context, s * large + (1 - s) * small)
        expected = F.relu(sac.norm(out))
        torch.testing.assert_close(sac(x), expected)


@pytest.mark.parametrize("size", [(9, 10), (8, 7)])
def test_strided_sac_has_no_switch_and_halves_with_ceil(size):
    sac = SAConv2d(3, 4, 3, stride=2)
    assert sac.switch is None and sac.pre_context is not None
    out = sac(torch.randn(1, 3, *size))
    assert out.shape[-2:] == tuple(math.ceil(s / 2) for s in size)


def test_global_context_starts_as_identity_and_adds_a_per_channel_term():
    gc = GlobalContext(3)
    x = torch.randn(1, 3, 4, 4)
    torch.testing.assert_close(gc(x), x)
    with torch.no_grad():
        gc.conv.bias.fill_(1.0)
    torch.testing.assert_close(gc(x), x + 1.0)


def test_even_kernel_rejected():
    with pytest.raises(ValueError, match="odd"):
        SAConv2d(3, 3, 2)

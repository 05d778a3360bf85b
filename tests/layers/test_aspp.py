import pytest
import torch
from torch.nn import functional as F

from panoptic2.layers.aspp import ASPP


def test_branches_shapes_and_rates():
    aspp = ASPP(16, 8, [2, 4, 6], norm="BN", dropout=0.1)
    assert len(aspp.convs) == 5  # 1x1, three atrous, pooling
    assert [c.dilation for c in aspp.convs[1:4]] == [(2, 2), (4, 4), (6, 6)]
    assert aspp.project.in_channels == 5 * 8
    assert aspp(torch.randn(2, 16, 7, 9)).shape == (2, 8, 7, 9)


def test_eval_output_equals_hand_composed_branches():
    torch.manual_seed(0)
    aspp = ASPP(6, 4, [1, 3], norm="", dropout=0.5).eval()
    x = torch.randn(1, 6, 5, 6)
    outs = [F.relu(F.conv2d(x, aspp.convs[0].weight, aspp.convs[0].bias))]
    for conv, d in zip(aspp.convs[1:3], [1, 3]):
        outs.append(F.relu(F.conv2d(x, conv.weight, conv.bias, padding=d, dilation=d)))
    pool = aspp.convs[3][1]
    pooled = F.relu(F.conv2d(x.mean(dim=(2, 3), keepdim=True), pool.weight, pool.bias))
    outs.append(pooled.expand(-1, -1, 5, 6))
    ref = F.relu(F.conv2d(torch.cat(outs, 1), aspp.project.weight, aspp.project.bias))
    torch.testing.assert_close(aspp(x), ref)  # no dropout in eval


def test_dropout_only_in_training_and_pool_kernel():
    torch.manual_seed(0)
    aspp = ASPP(4, 4, [1], norm="", dropout=0.9, pool_kernel_size=(2, 2))
    x = torch.randn(1, 4, 6, 6)
    assert (aspp.train()(x) == 0).float().mean() > 0.5
    out = aspp.eval()(x)
    assert torch.equal(out, aspp(x))
    # An input smaller than the pooling kernel falls back to global pooling.
    assert aspp(torch.randn(1, 4, 1, 1)).shape == (1, 4, 1, 1)


def test_invalid_arguments():
    with pytest.raises(ValueError, match="atrous"):
        ASPP(4, 4, [], norm="")
    with pytest.raises(ValueError, match="dropout"):
        ASPP(4, 4, [1], norm="", dropout=1.0)

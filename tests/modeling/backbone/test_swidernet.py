"""Wide-ResNet-41 / SWideRNet-SAC: layout, parameter counts and atrous rates vs DeepLab2."""

import pytest
import torch

from panoptic2.layers.sac import SAConv2d
from panoptic2.modeling.backbone.swidernet import SWideRNet


def _num_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _deeplab2_param_count(layer_multiplier: float, sac_in_res5: bool, output_stride: int) -> int:
    """Parameters of DeepLab2's ``swidernet`` / ``wide_resnet41`` encoder (multipliers 1, 1, x).

    Hand arithmetic from DeepLab2's definition (``axial_resnet.py`` with ``wider_resnet``,
    ``axial_blocks.py``, ``convolutions.py``), independent of our module: conv weights have
    no bias, every norm has a scale and an offset, a block has a 1x1 projection shortcut
    when its channels change. A SAC 3x3 conv adds a global-context 1x1 conv (with bias)
    before (C_in^2 + C_in) and after (C_out^2 + C_out), and, when not strided, a 1x1 switch
    to one channel (C_in + 1).

    DeepLab2's model zoo and the SWideRNet paper publish no backbone-only parameter count
    that we could check offline, so this derivation is the reference figure. Values:
    Wide-ResNet-41 109,014,080; SWideRNet-SAC-(1, 1, 1) 112,952,387; (1, 1, 3) 345,060,425;
    (1, 1, 4.5) 504,519,757 (output stride 16).
    """

    def conv(cin, cout, k):
        return cin * cout * k * k + 2 * cout  # weights + norm

    def sac_extra(cin, cout, stride):
        return cin * cin + cin + cout * cout + cout + (cin + 1 if stride == 1 else 0)

    total = conv(3, 64, 3)  # stem
    cin = 64
    blocks = [3] + [int(n * layer_multiplier) for n in (3, 6, 3, 3)]
    for stage, channels in enumerate((128, 256, 512, 1024)):
        for _ in range(blocks[stage]):
            total += conv(cin, channels, 3) + conv(channels, channels, 3)
            if cin != channels:
                total += conv(cin, channels, 1)
            cin = channels
    for b in range(blocks[4]):
        stride = 2 if b == 0 and output_stride == 32 else 1
        total += conv(cin, 512, 1) + conv(512, 1024, 3) + conv(1024, 2048, 1)
        if sac_in_res5:
            total += sac_extra(512, 1024, stride)
        if cin != 2048:
            total += conv(cin, 2048, 1)
        cin = 2048
    return total


@pytest.mark.parametrize(
    "layer_multiplier, sac, blocks, published",
    [
        (1.0, False, (3, 3, 6, 3, 3), 109_014_080),  # Wide-ResNet-41
        (1.0, True, (3, 3, 6, 3, 3), 112_952_387),  # SWideRNet-SAC-(1, 1, 1)
        (3.0, True, (3, 9, 18, 9, 9), 345_060_425),  # SWideRNet-SAC-(1, 1, 3)
        (4.5, True, (3, 13, 27, 13, 13), 504_519_757),  # SWideRNet-SAC-(1, 1, 4.5)
    ],
)
def test_parameter_counts(layer_multiplier, sac, blocks, published):
    # Built on the meta device: no memory for the 500M-parameter variant, no forward.
    with torch.device("meta"):
        model = SWideRNet(layer_multiplier=layer_multiplier, use_sac_beyond_stride=32 if sac else 0)
    assert model.num_blocks == blocks
    expected = _deeplab2_param_count(layer_multiplier, sac, output_stride=16)
    assert expected == published
    assert _num_params(model) == expected


def test_sac_only_in_res5_and_no_squeeze_excitation():
    with torch.device("meta"):
        model = SWideRNet(use_sac_beyond_stride=32, output_stride=32)
    sac_stages = {
        name.split(".")[0] for name, m in model.named_modules() if isinstance(m, SAConv2d)
    }
    assert sac_stages == {"res5"}
    assert all(isinstance(b.conv2, SAConv2d) for b in model.res5)
    # Strided SAC (first res5 block at output stride 32) has no switch, as in DeepLab2.
    assert model.res5[0].conv2.switch is None and model.res5[1].conv2.switch is not None
    assert _num_params(model) == _deeplab2_param_count(1.0, True, output_stride=32)
    assert not any("excit" in type(m).__name__.lower() for m in model.modules())


def _rates(block):
    convs = [block.conv1, block.conv2] if hasattr(block, "conv3") is False else [block.conv2]
    return [c.dilation if isinstance(c, SAConv2d) else c.dilation[0] for c in convs]


def test_atrous_rates_follow_deeplab2():
    # DeepLab2 BlockGroup: rate = current_stride // output_stride beyond the output stride;
    # the first basic block of a stage keeps the previous rate in its first conv only.
    with torch.device("meta"):
        os16 = SWideRNet(output_stride=16)
        os8 = SWideRNet(output_stride=8)
    assert [_rates(b) for b in os16.res4] == [[1, 1]] * 3
    assert [_rates(b) for b in os16.res5] == [[1], [2], [2]]
    assert os16.res5[0].conv2.stride == (1, 1) and os16.res5[0].shortcut.stride == (1, 1)
    assert [_rates(b) for b in os8.res4] == [[1, 2], [2, 2], [2, 2]]
    assert [_rates(b) for b in os8.res5] == [[2], [4], [4]]
    assert {n: s.stride for n, s in os8.output_shape().items()} == {
        "res2": 4, "res3": 8, "res4": 8, "res5": 8,
    }  # fmt: skip


def test_channels_and_names():
    with torch.device("meta"):
        model = SWideRNet(out_features=["stem", "res1", "res2", "res3", "res4", "res5"])
    assert {n: s.channels for n, s in model.output_shape().items()} == {
        "stem": 64, "res1": 128, "res2": 256, "res3": 512, "res4": 1024, "res5": 2048,
    }  # fmt: skip


def test_last_norm_of_each_block_starts_at_zero_so_blocks_start_as_shortcuts():
    torch.manual_seed(0)
    model = SWideRNet(
        stem_width_multiplier=0.25, width_multiplier=0.125, layer_multiplier=0.34
    ).eval()
    block = model.res3[1]  # identity shortcut, no stride
    x = torch.randn(1, block.conv1.in_channels, 9, 11).relu()
    with torch.no_grad():
        torch.testing.assert_close(block(x), x)


def test_drop_path_schedule_and_training_behaviour():
    torch.manual_seed(0)
    model = SWideRNet(
        stem_width_multiplier=0.25,
        width_multiplier=0.125,
        layer_multiplier=0.34,  # blocks (3, 1, 2, 1, 1)
        drop_path_keep_prob=0.5,
        drop_path_schedule="linear",
    )
    # DeepLab2's linear schedule: 1 - stage / 4 * (1 - p) with stage = log2(stride) - 1 for
    # the block's current original stride, from stride 4 on (res2's first block works at 2).
    assert model.res1[0].drop_path_keep_prob == 1.0
    assert model.res2[0].drop_path_keep_prob == 1.0
    assert model.res3[1].drop_path_keep_prob == pytest.approx(1 - 2 / 4 * 0.5)
    assert model.res5[0].drop_path_keep_prob == pytest.approx(1 - 3 / 4 * 0.5)

    block = model.res3[1]  # identity shortcut: a dropped sample outputs relu(x)
    block.drop_path_keep_prob = 0.5
    for m in block.modules():  # give the residual branch a non-zero output
        if isinstance(m, torch.nn.BatchNorm2d):
            torch.nn.init.ones_(m.weight)
    x = torch.randn(16, block.conv1.in_channels, 5, 5)
    block.train()
    with torch.no_grad():
        out = block(x)
    dropped = [torch.equal(out[i], x[i].relu()) for i in range(len(x))]
    assert any(dropped) and not all(dropped)
    block.eval()
    with torch.no_grad():
        assert not any(torch.equal(o, xi.relu()) for o, xi in zip(block(x), x))

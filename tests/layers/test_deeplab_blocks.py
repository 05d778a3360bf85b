import pytest
import torch

from panoptic2.layers import ShapeSpec
from panoptic2.layers.deeplab_blocks import DeepLabV3PlusDecoder

SHAPES = {
    "res2": ShapeSpec(channels=8, stride=4),
    "res3": ShapeSpec(channels=12, stride=8),
    "res5": ShapeSpec(channels=20, stride=32),
}


def _features(n=2, h=64, w=96):
    return {k: torch.randn(n, s.channels, h // s.stride, w // s.stride) for k, s in SHAPES.items()}


@pytest.mark.parametrize("depthwise", [False, True])
def test_panoptic_deeplab_branch_output_and_structure(depthwise):
    dec = DeepLabV3PlusDecoder(
        SHAPES,
        in_features=["res2", "res3", "res5"],
        project_channels=[4, 6],
        decoder_channels=[10, 14, 16],
        aspp_dilations=[1, 2, 3],
        aspp_dropout=0.1,
        norm="BN",
        use_depthwise_separable_conv=depthwise,
    )
    assert dec.out_channels == 10 and dec.out_stride == 4
    assert dec.decoder["res2"]["project_conv"].out_channels == 4
    assert dec.decoder["res3"]["project_conv"].out_channels == 6
    assert dec.decoder["res5"]["project_conv"].project.out_channels == 16  # ASPP
    assert dec(_features()).shape == (2, 10, 16, 24)


def test_v3_single_feature_is_aspp_only():
    dec = DeepLabV3PlusDecoder(
        SHAPES,
        in_features=["res5"],
        project_channels=[],
        decoder_channels=[16],
        aspp_dilations=[1],
        aspp_dropout=0.0,
        norm="",
    ).eval()
    feats = _features()
    torch.testing.assert_close(dec(feats), dec.decoder["res5"]["project_conv"](feats["res5"]))


def test_invalid_configurations_name_the_problem():
    common = dict(aspp_dilations=[1], aspp_dropout=0.0, norm="")
    with pytest.raises(ValueError, match="res4"):
        DeepLabV3PlusDecoder(
            SHAPES,
            in_features=["res2", "res4"],
            project_channels=[4],
            decoder_channels=[4, 4],
            **common,
        )
    with pytest.raises(ValueError, match="shallow to deep"):
        DeepLabV3PlusDecoder(
            SHAPES,
            in_features=["res5", "res2"],
            project_channels=[4],
            decoder_channels=[4, 4],
            **common,
        )
    with pytest.raises(ValueError, match="project_channels"):
        DeepLabV3PlusDecoder(
            SHAPES,
            in_features=["res2", "res5"],
            project_channels=[],
            decoder_channels=[4, 4],
            **common,
        )

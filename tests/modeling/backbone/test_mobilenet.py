"""MobileNetV3: parameter counts, taps and weights against torchvision's own network."""

import pytest
import torch
import torchvision

from panoptic2.checkpoint import Checkpointer
from panoptic2.modeling.backbone.mobilenet import MobileNetV3


def _num_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("variant", ["small", "large"])
@pytest.mark.parametrize("output_stride", [32, 16])
def test_parameter_count_equals_torchvision_features(variant, output_stride):
    reference = getattr(torchvision.models, f"mobilenet_v3_{variant}")()
    # The reference: torchvision's network without its classifier (avgpool has no weights).
    expected = _num_params(reference) - _num_params(reference.classifier)
    assert _num_params(MobileNetV3(variant=variant, output_stride=output_stride)) == expected


def test_taps_channels_and_strides():
    large = MobileNetV3(variant="large", output_stride=16)
    assert {n: (s.channels, s.stride) for n, s in large.output_shape().items()} == {
        "res2": (24, 4), "res3": (40, 8), "res4": (112, 16), "res5": (960, 16),
    }  # fmt: skip
    # Output stride 16: torchvision's dilated table runs the last stage at rate 2, no stride.
    depthwise = large.features[13].block[1][0]
    assert depthwise.stride == (1, 1) and depthwise.dilation == (2, 2)
    small = MobileNetV3(variant="small", out_features=["res3", "res5"])
    assert {n: (s.channels, s.stride) for n, s in small.output_shape().items()} == {
        "res3": (24, 8), "res5": (576, 32),
    }  # fmt: skip


def test_loads_torchvision_weights_and_matches_its_features(tmp_path):
    torch.manual_seed(0)
    reference = torchvision.models.mobilenet_v3_small()
    for m in reference.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    path = tmp_path / "mobilenet_v3_small.pth"
    torch.save(reference.state_dict(), path)

    ours = MobileNetV3(variant="small")
    Checkpointer(ours).load(str(path))
    ref_state, state = reference.state_dict(), ours.state_dict()
    assert set(state) == {k for k in ref_state if not k.startswith("classifier.")}
    for name, value in state.items():
        assert torch.equal(value, ref_state[name]), name

    reference.eval()
    ours.eval()
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        got = ours(x)
        torch.testing.assert_close(got["res5"], reference.features(x))
        torch.testing.assert_close(got["res3"], reference.features[:4](x))


def test_invalid_arguments():
    with pytest.raises(ValueError, match="output_stride"):
        MobileNetV3(output_stride=8)
    with pytest.raises(ValueError, match="variant"):
        MobileNetV3(variant="medium")
    with pytest.raises(ValueError, match="out_features"):
        MobileNetV3(out_features=["res6"])


def test_freeze_at():
    model = MobileNetV3(variant="small", freeze_at=1)
    assert all(not p.requires_grad for i in range(2) for p in model.features[i].parameters())
    assert all(p.requires_grad for p in model.features[2].parameters())

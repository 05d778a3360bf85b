"""ResNet: parameter counts against torchvision, atrous rates, and foreign weight loading."""

import pickle

import numpy as np
import pytest
import torch
import torchvision
from torchvision.models.resnet import BasicBlock as TVBasicBlock
from torchvision.models.resnet import Bottleneck as TVBottleneck

from panoptic2.checkpoint import Checkpointer
from panoptic2.layers import FrozenBatchNorm2d
from panoptic2.modeling.backbone.resnet import ResNet


def _num_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _tv_backbone_params(model: torch.nn.Module) -> int:
    # The reference: torchvision's classification network without its classifier.
    return _num_params(model) - _num_params(model.fc)


@pytest.mark.parametrize(
    "depth, factory",
    [(18, torchvision.models.resnet18), (50, torchvision.models.resnet50),
     (101, torchvision.models.resnet101)],
)  # fmt: skip
def test_parameter_count_equals_torchvision(depth, factory):
    ours = ResNet(depth=depth, res2_out_channels=64 if depth < 50 else 256)
    assert _num_params(ours) == _tv_backbone_params(factory())


def test_resnet50_beta_parameter_count():
    # ResNet-50 with the 7x7 stem (3*64*49 weights + 64-channel BN) replaced by three 3x3
    # convs 3->64->64->128 (+BN), so res2's first block (1x1 conv and shortcut) sees 128
    # input channels instead of 64. Hand arithmetic on torchvision's ResNet-50 count.
    r50 = _tv_backbone_params(torchvision.models.resnet50())
    old_stem = 3 * 64 * 49 + 2 * 64
    new_stem = 3 * 64 * 9 + 64 * 64 * 9 + 64 * 128 * 9 + 2 * (64 + 64 + 128)
    wider_res2_input = (128 - 64) * 64 + (128 - 64) * 256
    ours = ResNet(depth=50, stem_type="deeplab", stem_out_channels=128)
    assert _num_params(ours) == r50 - old_stem + new_stem + wider_res2_input
    assert [n for n, _ in ours.stem.named_children()] == ["conv1", "conv2", "conv3"]


def _rates(stage):
    return [block.conv2.dilation[0] for block in stage]


def test_output_stride_and_multi_grid_rates():
    os16 = ResNet(depth=50, res5_dilation=2, res5_multi_grid=(1, 2, 4))
    assert _rates(os16.res4) == [1] * 6 and _rates(os16.res5) == [2, 4, 8]
    assert os16.res5[0].conv2.stride == (1, 1) and os16.res5[0].shortcut.stride == (1, 1)
    assert os16.output_shape()["res5"].stride == 16
    os8 = ResNet(depth=50, res4_dilation=2, res5_dilation=4, res5_multi_grid=(1, 2, 4))
    assert _rates(os8.res4) == [2] * 6 and _rates(os8.res5) == [4, 8, 16]
    assert {n: s.stride for n, s in os8.output_shape().items()} == {
        "res2": 4, "res3": 8, "res4": 8, "res5": 8,
    }  # fmt: skip
    x = torch.randn(1, 3, 33, 47)
    with torch.no_grad():
        assert os8.eval()(x)["res5"].shape[-2:] == (5, 6)
    with pytest.raises(ValueError, match="res4_dilation"):
        ResNet(depth=50, res4_dilation=2, res5_dilation=2)
    with pytest.raises(ValueError, match="multi_grid"):
        ResNet(depth=50, res5_multi_grid=(1, 2))


def test_stride_in_1x1():
    a = ResNet(depth=50, stride_in_1x1=True).res3[0]
    b = ResNet(depth=50, stride_in_1x1=False).res3[0]
    assert (a.conv1.stride, a.conv2.stride) == ((2, 2), (1, 1))
    assert (b.conv1.stride, b.conv2.stride) == ((1, 1), (2, 2))


def test_freeze_at():
    model = ResNet(depth=18, res2_out_channels=64, freeze_at=2)
    for name in ("stem", "res2"):
        part = getattr(model, name)
        assert all(not p.requires_grad for p in part.parameters())
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in part.modules())
        assert any(isinstance(m, FrozenBatchNorm2d) for m in part.modules())
    assert all(p.requires_grad for p in model.res3.parameters())


@pytest.mark.parametrize(
    "block, layers, depth, kwargs",
    [
        (TVBasicBlock, [1, 1, 1, 1], 18, {"res2_out_channels": 64}),
        # A narrow bottleneck net keeps the checkpoint file small; the names are R-50's.
        (TVBottleneck, [1, 1, 1, 1], 50, {"width_per_group": 16}),
    ],
)
def test_loads_torchvision_checkpoint_and_matches_its_forward(
    tmp_path, block, layers, depth, kwargs
):
    torch.manual_seed(0)
    reference = torchvision.models.resnet.ResNet(
        block, layers, width_per_group=kwargs.get("width_per_group", 64)
    )
    # Non-trivial BN statistics so a wrongly mapped buffer shows up in the outputs.
    for m in reference.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
    path = tmp_path / "tv_resnet.pth"
    torch.save(reference.state_dict(), path)

    ours = ResNet(depth=depth, num_blocks_per_stage=layers, **kwargs)
    checkpointer = Checkpointer(ours)
    checkpointer.load(str(path))
    ref_state = reference.state_dict()
    from panoptic2.checkpoint.weight_conversion import torchvision_resnet

    mapping = torchvision_resnet(list(ref_state))
    ours_state = ours.state_dict()
    for theirs, mine in mapping.items():
        if mine.startswith("linear"):
            continue
        assert torch.equal(ours_state[mine], ref_state[theirs]), (mine, theirs)
    assert {m for t, m in mapping.items() if not m.startswith("linear")} == set(ours_state)

    reference.eval()
    ours.eval()
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        r = reference.maxpool(reference.relu(reference.bn1(reference.conv1(x))))
        expected = {}
        for i, layer in enumerate(
            [reference.layer1, reference.layer2, reference.layer3, reference.layer4]
        ):
            r = layer(r)
            expected[f"res{i + 2}"] = r
        got = ours(x)
    for name, value in expected.items():
        torch.testing.assert_close(got[name], value, rtol=1e-4, atol=1e-5)


def _detectron2_names(blocks):
    """Detectron2's R-50 parameter names, from its naming scheme (not from our module)."""
    norm = ("weight", "bias", "running_mean", "running_var")
    names = ["stem.conv1.weight"] + [f"stem.conv1.norm.{a}" for a in norm]
    for stage, n in zip(range(2, 6), blocks):
        for b in range(n):
            prefix = f"res{stage}.{b}"
            convs = ["conv1", "conv2", "conv3"] + (["shortcut"] if b == 0 else [])
            for conv in convs:
                names.append(f"{prefix}.{conv}.weight")
                names += [f"{prefix}.{conv}.norm.{a}" for a in norm]
    return names


def test_loads_detectron2_pkl(tmp_path):
    blocks = [1, 1, 1, 1]
    model = ResNet(depth=50, num_blocks_per_stage=blocks, width_per_group=16, norm="FrozenBN")
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    rng = np.random.default_rng(0)
    weights = {}
    for name in _detectron2_names(blocks):
        assert name in shapes, f"Detectron2 name {name} missing from our model"
        weights[name] = rng.standard_normal(shapes[name]).astype(np.float32)
    path = tmp_path / "model_final.pkl"
    with open(path, "wb") as f:
        pickle.dump({"model": weights, "__author__": "Detectron2 test"}, f)

    Checkpointer(model).load(str(path))
    state = model.state_dict()
    # FrozenBN has no num_batches_tracked, so every tensor of ours comes from the file.
    assert set(state) == set(weights)
    for name, value in weights.items():
        assert torch.equal(state[name], torch.from_numpy(value)), name


def test_loads_caffe2_blob_names(tmp_path):
    model = ResNet(depth=50, num_blocks_per_stage=[1, 1, 1, 1], width_per_group=16, norm="FrozenBN")
    state = model.state_dict()
    branch = {"conv1": "branch2a", "conv2": "branch2b", "conv3": "branch2c", "shortcut": "branch1"}
    suffix = {"weight": "s", "bias": "b", "running_mean": "rm", "running_var": "riv"}
    blobs = {}
    for name, value in state.items():
        parts = name.split(".")
        if parts[0] == "stem":
            blob = "conv1_w" if parts[-2] == "conv1" else f"res_conv1_bn_{suffix[parts[-1]]}"
        else:
            base = f"{parts[0]}_{parts[1]}_{branch[parts[2]]}"
            blob = f"{base}_w" if len(parts) == 4 else f"{base}_bn_{suffix[parts[-1]]}"
        blobs[blob] = torch.randn(value.shape).numpy()
    path = tmp_path / "R-50.pkl"
    with open(path, "wb") as f:
        pickle.dump({"blobs": blobs}, f)
    Checkpointer(model).load(str(path))
    loaded = model.state_dict()
    assert torch.equal(
        loaded["res3.0.shortcut.norm.running_var"], torch.from_numpy(blobs["res3_0_branch1_bn_riv"])
    )
    assert torch.equal(loaded["stem.conv1.norm.weight"], torch.from_numpy(blobs["res_conv1_bn_s"]))
    assert torch.equal(loaded["res5.0.conv2.weight"], torch.from_numpy(blobs["res5_0_branch2b_w"]))

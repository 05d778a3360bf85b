"""Tests of panoptic2/checkpoint/weight_conversion.py."""

import pytest
import torch
import torchvision
from torch import nn

from panoptic2.checkpoint import (
    WEIGHT_CONVERTER_REGISTRY,
    Checkpointer,
    align_state_dicts,
    choose_and_align,
)


def module_with(shapes: dict[str, tuple[int, ...]]) -> nn.Module:
    """A module holding one zero parameter per dotted name (``a.b.weight``)."""
    root = nn.Module()
    for name, shape in shapes.items():
        *path, leaf = name.split(".")
        module = root
        for part in path:
            if not hasattr(module, part):
                module.add_module(part, nn.Module())
            module = getattr(module, part)
        module.register_parameter(leaf, nn.Parameter(torch.zeros(shape)))
    return root


class Wrapper(nn.Module):
    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.backbone = nn.Module()
        self.backbone.body = body


def test_torchvision_resnet18_file_loads_into_prefixed_module(tmp_path):
    source = torchvision.models.resnet18(weights=None)
    with torch.no_grad():  # make BN buffers non-default so loading them is checked too
        for module in source.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_()
                module.running_var.uniform_(1, 2)
                module.num_batches_tracked.fill_(7)
    theirs = source.state_dict()
    torch.save(theirs, tmp_path / "r18.pth")

    model = Wrapper(torchvision.models.resnet18(weights=None))
    assert not torch.equal(model.backbone.body.conv1.weight, theirs["conv1.weight"])
    Checkpointer(model, "").load(str(tmp_path / "r18.pth"))
    ours = model.state_dict()
    assert len(ours) == len(theirs)
    for key, value in theirs.items():
        assert torch.equal(ours[f"backbone.body.{key}"], value), key


def test_torchvision_resnet_converter_names():
    keys = [
        "conv1.weight",
        "bn1.running_var",
        "layer1.0.conv2.weight",
        "layer1.0.downsample.0.weight",
        "layer1.0.downsample.1.running_mean",
        "layer4.1.bn3.bias",
        "fc.weight",
    ]
    assert WEIGHT_CONVERTER_REGISTRY.get("torchvision_resnet")(keys) == {
        "conv1.weight": "stem.conv1.weight",
        "bn1.running_var": "stem.conv1.norm.running_var",
        "layer1.0.conv2.weight": "res2.0.conv2.weight",
        "layer1.0.downsample.0.weight": "res2.0.shortcut.weight",
        "layer1.0.downsample.1.running_mean": "res2.0.shortcut.norm.running_mean",
        "layer4.1.bn3.bias": "res5.1.conv3.norm.bias",
        "fc.weight": "linear.weight",
    }


def test_torchvision_resnet_into_detectron2_style_names_is_chosen_automatically():
    theirs = {
        "conv1.weight": torch.randn(4, 3, 7, 7),
        "bn1.weight": torch.randn(4),
        "layer1.0.conv1.weight": torch.randn(4, 4, 1, 1),
        "layer1.0.bn1.bias": torch.randn(4),
        "layer2.0.downsample.0.weight": torch.randn(8, 4, 1, 1),
        "fc.bias": torch.randn(10),
    }
    model = module_with(
        {
            "backbone.stem.conv1.weight": (4, 3, 7, 7),
            "backbone.stem.conv1.norm.weight": (4,),
            "backbone.res2.0.conv1.weight": (4, 4, 1, 1),
            "backbone.res2.0.conv1.norm.bias": (4,),
            "backbone.res3.0.shortcut.weight": (8, 4, 1, 1),
        }
    )
    result = choose_and_align(model.state_dict(), theirs)
    assert result.converter == "torchvision_resnet"
    assert result.missing == [] and result.unexpected == ["fc.bias"]
    assert torch.equal(result.state_dict["backbone.stem.conv1.norm.weight"], theirs["bn1.weight"])
    assert torch.equal(
        result.state_dict["backbone.res3.0.shortcut.weight"],
        theirs["layer2.0.downsample.0.weight"],
    )


def test_torchvision_mobilenet_v3_features_load_under_any_name():
    source = torchvision.models.mobilenet_v3_small(weights=None)
    model = Wrapper(torchvision.models.mobilenet_v3_small(weights=None).features)
    result = choose_and_align(model.state_dict(), source.state_dict())
    assert result.converter == "torchvision_mobilenet_v3"
    assert result.missing == []
    assert sorted(result.unexpected) == sorted(
        k for k in source.state_dict() if k.startswith("classifier.")
    )
    for key, value in source.features.state_dict().items():
        assert torch.equal(result.state_dict[f"backbone.body.{key}"], value), key


def test_longest_suffix_wins():
    model = {"a.b.conv.weight": torch.zeros(1), "a.conv.weight": torch.zeros(2)}
    theirs = {"b.conv.weight": torch.ones(1), "conv.weight": torch.ones(2)}
    result = align_state_dicts(model, theirs)
    assert sorted(result.matched) == [
        ("a.b.conv.weight", "b.conv.weight", (1,)),
        ("a.conv.weight", "conv.weight", (2,)),
    ]
    assert result.ambiguous == {}


def test_ambiguous_match_is_an_error_naming_candidates():
    model = {"head.conv1.weight": torch.zeros(2), "body.conv1.weight": torch.zeros(2)}
    with pytest.raises(ValueError, match=r"'conv1.weight'.*body.conv1.weight.*head.conv1.weight"):
        choose_and_align(model, {"conv1.weight": torch.ones(2)})


def test_tied_weights_are_not_ambiguous():
    shared = torch.zeros(3)
    model = {"enc.emb.weight": shared, "dec.emb.weight": shared}
    result = choose_and_align(model, {"emb.weight": torch.ones(3)})
    assert sorted(result.state_dict) == ["dec.emb.weight", "enc.emb.weight"]


def test_unknown_forced_format_lists_registered():
    with pytest.raises(KeyError, match="torchvision_resnet"):
        choose_and_align({}, {}, ["no_such_format"])

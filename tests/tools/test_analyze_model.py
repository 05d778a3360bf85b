"""Tests of tools/analyze_model.py: parameter totals and FLOPs of a backbone from a config."""

from __future__ import annotations

import importlib.util
import os

import torch
import torchvision

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOOL = os.path.join(REPO, "tools", "analyze_model.py")


def _load_tool():
    spec = importlib.util.spec_from_file_location("analyze_model", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _write_config(tmp_path) -> str:
    path = tmp_path / "r18.yaml"
    path.write_text(
        "MODEL:\n"
        "  BACKBONE:\n"
        "    NAME: build_resnet_backbone\n"
        "  RESNETS:\n"
        "    DEPTH: 18\n"
        "    RES2_OUT_CHANNELS: 64\n"
    )
    return str(path)


def test_backbone_parameters_and_flops(tmp_path, capsys):
    tool = _load_tool()
    totals = tool.main(
        [
            "--config-file", _write_config(tmp_path),
            "--plugin", "panoptic2.modeling.backbone.resnet",
            "--backbone-only", "--tasks", "parameter", "flop",
            "--height", "64", "--width", "96",
        ]
    )  # fmt: skip
    out = capsys.readouterr().out
    reference = torchvision.models.resnet18()
    expected = sum(p.numel() for p in reference.parameters()) - sum(
        p.numel() for p in reference.fc.parameters()
    )
    assert totals["parameters"] == expected
    assert f"Total parameters: {expected}" in out
    assert "| res5 " in out  # the per-module table
    # Multiply-adds of the first conv alone: 64 out channels x 3 x 7 x 7 x (32 x 48) pixels,
    # so the total must exceed it; and an overall sanity bound for ResNet-18 at 64x96
    # (1.8 GMACs at 224x224 scaled by the pixel ratio, within a factor of 1.5).
    stem = 64 * 3 * 49 * 32 * 48
    scaled = 1.82e9 * (64 * 96) / (224 * 224)
    assert stem < totals["flops"] < 1.5 * scaled and totals["flops"] > scaled / 1.5
    assert "Total FLOPs" in out


def test_overrides_and_parameter_task_only(capsys):
    tool = _load_tool()
    totals = tool.main(
        [
            "--tasks", "parameter",  # before other flags: --tasks takes several values
            "--plugin", "panoptic2.modeling.backbone.mobilenet", "--backbone-only",
            "MODEL.BACKBONE.NAME", "build_mobilenetv3_backbone",
            "MODEL.MOBILENET.VARIANT", "small",
        ]
    )  # fmt: skip
    reference = torchvision.models.mobilenet_v3_small()
    assert totals == {"parameters": sum(p.numel() for p in reference.features.parameters())}
    assert "FLOPs" not in capsys.readouterr().out
    assert torch.get_default_dtype() == torch.float32


def test_whole_model_parameters(capsys):
    # The whole-model path, on the toy MLP plugin (the only meta-architecture that exists
    # without the model issue): two Linear layers, DIM -> HIDDEN -> NUM_CLASSES.
    from panoptic2.testing import toy

    tool = _load_tool()
    totals = tool.main(
        ["--config-file", os.path.join(REPO, "configs", "toy", "mlp.yaml"), "--tasks", "parameter"]
    )
    from panoptic2.config import load_config

    hidden = load_config(os.path.join(REPO, "configs", "toy", "mlp.yaml")).TOY.HIDDEN
    expected = toy.DIM * hidden + hidden + hidden * toy.NUM_CLASSES + toy.NUM_CLASSES
    assert totals == {"parameters": expected}
    assert "ToyClassifier" in capsys.readouterr().out


def test_whole_model_flops_follow_tensor_outputs_only(capsys):
    """Whole models output Python objects too (panoptic segments_info); the tool counts
    through their tensors, and a model costs more than its backbone."""
    tool = _load_tool()
    config = os.path.join(REPO, "configs", "shapes", "panoptic_fpn_R18_1x.yaml")
    size = ["--height", "128", "--width", "160"]
    whole = tool.main(["--config-file", config, "--tasks", "flop", *size])
    backbone = tool.main(["--config-file", config, "--tasks", "flop", "--backbone-only", *size])
    assert whole["flops"] > backbone["flops"] > 0
    assert "FLOPs of PanopticFPN at 128x160" in capsys.readouterr().out

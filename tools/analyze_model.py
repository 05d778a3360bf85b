#!/usr/bin/env python
"""Prints a model's (or only its backbone's) parameter counts and FLOPs, with fvcore.

    python tools/analyze_model.py --config-file CFG.yaml                      # whole model
    python tools/analyze_model.py --config-file CFG.yaml --backbone-only \\
        --tasks parameter flop --height 1025 --width 2049
    python tools/analyze_model.py --backbone-only MODEL.BACKBONE.NAME build_swidernet_backbone \\
        MODEL.SWIDERNET.LAYER_MULTIPLIER 4.5 MODEL.SWIDERNET.USE_SAC_BEYOND_STRIDE 32

``parameter`` prints fvcore's per-module ``parameter_count_table`` and the exact total;
``flop`` runs one (1, C, H, W) zero image in eval mode through ``FlopCountAnalysis`` and
prints the per-module table and the total (fvcore counts one fused multiply-add as one flop).
A whole model receives Detectron2-style inputs, ``[{"image": (C, H, W), "height", "width"}]``.
The model is built on CPU and never trained or loaded with weights.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

import torch
from fvcore.nn import FlopCountAnalysis, flop_count_table, parameter_count, parameter_count_table
from torch import nn

from panoptic2.config import load_config

logger = logging.getLogger("panoptic2.analyze_model")

_TASKS = ("parameter", "flop")


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser (exposed for tests and ``--help``)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config-file", default="", metavar="FILE", help="path to a config file")
    parser.add_argument(
        "--plugin",
        action="append",
        default=[],
        metavar="MODULE",
        help="module to import first (registers models, config keys); may repeat",
    )
    parser.add_argument(
        "--tasks",
        nargs="+",
        choices=_TASKS,
        default=list(_TASKS),
        help="what to print; put another flag after it, or the overrides would be read as tasks",
    )
    parser.add_argument(
        "--backbone-only",
        action="store_true",
        help="analyze build_backbone(cfg) instead of the whole model",
    )
    parser.add_argument("--height", type=int, default=512, help="input height for FLOPs")
    parser.add_argument("--width", type=int, default=1024, help="input width for FLOPs")
    parser.add_argument("--max-depth", type=int, default=3, help="module depth shown in the tables")
    parser.add_argument(
        "opts", nargs=argparse.REMAINDER, default=[], help="config overrides: KEY VALUE ..."
    )
    return parser


def build_target(cfg, backbone_only: bool) -> nn.Module:
    """Builds the backbone or the whole model on CPU, in eval mode.

    Args:
        cfg: the config.
        backbone_only: only ``build_backbone(cfg)``.

    Returns:
        The module.
    """
    from panoptic2.modeling import build_backbone, build_model

    if backbone_only:
        module = build_backbone(cfg)
    else:
        cfg = cfg.clone()
        cfg.defrost()
        cfg.MODEL.DEVICE = "cpu"
        cfg.freeze()
        module = build_model(cfg)
    return module.to("cpu").eval()


def _tensors(obj) -> list[torch.Tensor]:
    """Every tensor inside nested dicts, lists and tuples, in a stable order."""
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, dict):
        return [t for key in sorted(obj, key=str) for t in _tensors(obj[key])]
    if isinstance(obj, (list, tuple)):
        return [t for item in obj for t in _tensors(item)]
    return []


class _TensorOutputs(nn.Module):
    """Runs a model and returns only the tensors of its outputs.

    fvcore's tracer fails on outputs that also hold Python objects (e.g. the
    ``segments_info`` lists of ``panoptic_seg``); the tensors are what it must follow.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, inputs):
        return tuple(_tensors(self.model(inputs)))


def _flop_inputs(module: nn.Module, cfg, backbone_only: bool, height: int, width: int):
    channels = len(cfg.MODEL.PIXEL_MEAN)
    image = torch.zeros(channels, height, width)
    if backbone_only:
        return (image[None],)
    return ([{"image": image, "height": height, "width": width}],)


def analyze(
    module: nn.Module,
    cfg,
    *,
    tasks: Sequence[str],
    backbone_only: bool,
    height: int,
    width: int,
    max_depth: int,
) -> dict[str, float]:
    """Prints the requested analyses and returns their totals.

    Args:
        module: what to analyze.
        cfg: the config (input channels).
        tasks: among ``"parameter"``, ``"flop"``.
        backbone_only: whether ``module`` is a backbone (takes a tensor).
        height: FLOP input height.
        width: FLOP input width.
        max_depth: module depth of the tables.

    Returns:
        ``{"parameters": count, "flops": count}`` for the tasks run.
    """
    totals: dict[str, float] = {}
    name = type(module).__name__
    if "parameter" in tasks:
        total = parameter_count(module)[""]
        totals["parameters"] = total
        print(f"Parameters of {name}:\n{parameter_count_table(module, max_depth=max_depth)}")
        print(f"Total parameters: {total} ({total / 1e6:.2f} M)")
    if "flop" in tasks:
        inputs = _flop_inputs(module, cfg, backbone_only, height, width)
        # Counted on a zero image: data-dependent parts (the number of proposals that
        # reach the ROI heads) cost less than on a real image.
        flops = FlopCountAnalysis(module if backbone_only else _TensorOutputs(module), inputs)
        flops.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        with torch.no_grad():
            total = flops.total()
        totals["flops"] = total
        print(f"FLOPs of {name} at {height}x{width}:\n{flop_count_table(flops, max_depth)}")
        print(f"Total FLOPs (fused multiply-adds): {total} ({total / 1e9:.2f} G)")
        skipped = flops.unsupported_ops()
        if skipped:
            print(f"Operators not counted: {dict(skipped)}")
    return totals


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    """Runs the tool.

    Args:
        argv: command-line arguments (``sys.argv[1:]`` when None).

    Returns:
        The totals printed, see :func:`analyze`.
    """
    args = build_parser().parse_args(argv)
    cfg = load_config(args.config_file or None, args.opts, plugins=args.plugin)
    module = build_target(cfg, args.backbone_only)
    return analyze(
        module,
        cfg,
        tasks=args.tasks,
        backbone_only=args.backbone_only,
        height=args.height,
        width=args.width,
        max_depth=args.max_depth,
    )


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    main(sys.argv[1:])

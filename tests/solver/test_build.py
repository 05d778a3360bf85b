"""Tests of panoptic2/solver/build.py."""

import math

import pytest
import torch
from torch import nn
from torchvision.ops import FrozenBatchNorm2d

from panoptic2.config import get_cfg
from panoptic2.solver import build_optimizer, clip_gradients, get_default_optimizer_params


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.gn = nn.GroupNorm(2, 4)
        self.ln = nn.LayerNorm(4)
        self.frozen = FrozenBatchNorm2d(4)  # buffers only: contributes nothing
        self.fc = nn.Linear(4, 2)
        self.fc_again = self.fc  # shared module: its parameters must appear once
        self.special = nn.Parameter(torch.zeros(2))
        self.fixed = nn.Linear(2, 2)
        self.fixed.requires_grad_(False)


def _hyper_by_name(model: nn.Module, groups: list[dict]) -> dict[str, dict]:
    names = {id(p): n for n, p in model.named_parameters()}
    seen: dict[str, dict] = {}
    for group in groups:
        for p in group["params"]:
            name = names[id(p)]
            assert name not in seen, f"{name} is in two groups"
            seen[name] = {k: v for k, v in group.items() if k != "params"}
    return seen


def test_param_groups_norm_bias_overrides():
    model = Net()
    groups = get_default_optimizer_params(
        model,
        base_lr=0.1,
        weight_decay=1e-4,
        weight_decay_norm=0.0,
        weight_decay_bias=1e-5,
        bias_lr_factor=2.0,
        overrides={"special": {"weight_decay": 0.5}, "fc.weight": {"lr": 0.01}},
    )
    weight = {"lr": 0.1, "weight_decay": 1e-4}
    bias = {"lr": pytest.approx(0.2), "weight_decay": 1e-5}
    norm = {"lr": 0.1, "weight_decay": 0.0}
    assert _hyper_by_name(model, groups) == {
        "conv.weight": weight,
        "conv.bias": bias,
        "bn.weight": norm,
        "bn.bias": bias,  # the bias rule is more specific than the norm rule
        "gn.weight": norm,
        "gn.bias": bias,
        "ln.weight": norm,
        "ln.bias": bias,
        "fc.weight": {"lr": 0.01, "weight_decay": 1e-4},
        "fc.bias": bias,
        "special": {"lr": 0.1, "weight_decay": 0.5},
    }
    # One group per distinct setting, each parameter once.
    assert len(groups) == 5
    assert sum(len(g["params"]) for g in groups) == 11


def test_param_groups_without_bias_decay_keep_norm_decay():
    model = Net()
    groups = get_default_optimizer_params(
        model, base_lr=0.1, weight_decay=1e-4, weight_decay_norm=0.0
    )
    hyper = _hyper_by_name(model, groups)
    assert hyper["bn.bias"] == {"lr": 0.1, "weight_decay": 0.0}
    assert hyper["conv.bias"] == {"lr": 0.1, "weight_decay": 1e-4}


def test_param_groups_errors():
    with pytest.raises(ValueError, match="base_lr"):
        get_default_optimizer_params(Net(), bias_lr_factor=2.0)
    with pytest.raises(ValueError, match="typo"):
        get_default_optimizer_params(Net(), overrides={"typo": {"lr": 1.0}})


@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW"])
def test_build_optimizer(name):
    cfg = get_cfg()
    cfg.SOLVER.OPTIMIZER = name
    cfg.SOLVER.BASE_LR = 0.05
    cfg.SOLVER.NESTEROV = True
    cfg.SOLVER.BETAS = [0.8, 0.99]
    model = Net()
    opt = build_optimizer(cfg, model)
    assert type(opt).__name__ == name
    hyper = _hyper_by_name(model, opt.param_groups)
    assert hyper["conv.weight"]["lr"] == 0.05
    assert hyper["conv.weight"]["weight_decay"] == cfg.SOLVER.WEIGHT_DECAY
    assert hyper["bn.weight"]["weight_decay"] == cfg.SOLVER.WEIGHT_DECAY_NORM == 0.0
    # WEIGHT_DECAY_BIAS=None: biases outside norms decay like weights.
    assert hyper["conv.bias"]["weight_decay"] == cfg.SOLVER.WEIGHT_DECAY
    if name == "SGD":
        assert hyper["conv.weight"]["momentum"] == 0.9 and hyper["conv.weight"]["nesterov"]
    else:
        assert hyper["conv.weight"]["betas"] == (0.8, 0.99)


def test_build_optimizer_unknown_name_lists_valid():
    cfg = get_cfg()
    cfg.SOLVER.OPTIMIZER = "Adamw"
    with pytest.raises(KeyError, match=r"\['Adam', 'AdamW', 'SGD'\].*'AdamW'"):
        build_optimizer(cfg, Net())


def _clip_cfg(clip_type: str, value: float, norm_type: float = 2.0, enabled: bool = True):
    cfg = get_cfg().SOLVER.CLIP_GRADIENTS
    cfg.ENABLED = enabled
    cfg.CLIP_TYPE = clip_type
    cfg.CLIP_VALUE = value
    cfg.NORM_TYPE = norm_type
    return cfg


def _params_with_grads() -> list[nn.Parameter]:
    a, b, c = (nn.Parameter(torch.zeros(n)) for n in (2, 1, 1))
    a.grad = torch.tensor([3.0, 4.0])
    b.grad = torch.tensor([-12.0])
    return [a, b, c]  # c has no gradient


def test_clip_by_value():
    params = _params_with_grads()
    assert clip_gradients(params, _clip_cfg("value", 3.5)) is None
    assert params[0].grad.tolist() == [3.0, 3.5]
    assert params[1].grad.tolist() == [-3.5]


def test_clip_by_norm_returns_total_norm():
    params = _params_with_grads()
    total = clip_gradients(iter(params), _clip_cfg("norm", 1.0))
    assert isinstance(total, torch.Tensor) and total.dim() == 0  # no host sync forced
    assert float(total) == pytest.approx(13.0)  # sqrt(9 + 16 + 144)
    scale = 1.0 / 13.0
    assert params[0].grad.tolist() == pytest.approx([3 * scale, 4 * scale], rel=1e-5)
    assert params[1].grad.tolist() == pytest.approx([-12 * scale], rel=1e-5)


def test_clip_by_inf_norm_and_below_threshold():
    params = _params_with_grads()
    assert float(clip_gradients(params, _clip_cfg("norm", 100.0, math.inf))) == pytest.approx(12.0)
    assert params[0].grad.tolist() == [3.0, 4.0]  # below the threshold: untouched


def test_clip_disabled_and_bad_type():
    params = _params_with_grads()
    assert clip_gradients(params, _clip_cfg("norm", 0.1, enabled=False)) is None
    assert params[1].grad.tolist() == [-12.0]
    with pytest.raises(ValueError, match=r"'nrom'.*\['norm', 'value'\]"):
        clip_gradients(params, _clip_cfg("nrom", 1.0))

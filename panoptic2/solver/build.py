"""Building the optimizer, its parameter groups, gradient clipping and the LR scheduler.

Typical use in a training loop::

    optimizer = build_optimizer(cfg, model)
    scheduler = build_lr_scheduler(cfg, optimizer)
    for it in range(start_iter, cfg.SOLVER.MAX_ITER):
        loss.backward()                    # with AMP float16: scaler.unscale_(optimizer) first
        clip_gradients(model.parameters(), cfg.SOLVER.CLIP_GRADIENTS)
        optimizer.step()
        scheduler.step()
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from panoptic2.registry import OPTIMIZER_REGISTRY

from .lr_scheduler import LR_SCHEDULER_REGISTRY, LRMultiplier, WarmupParamScheduler

__all__ = [
    "OPTIMIZER_REGISTRY",
    "build_lr_scheduler",
    "build_optimizer",
    "clip_gradients",
    "get_default_optimizer_params",
    "norm_module_types",
]


def norm_module_types() -> tuple[type[nn.Module], ...]:
    """The module classes whose parameters get ``SOLVER.WEIGHT_DECAY_NORM``.

    Every ``_NormBase`` (BatchNorm*, SyncBatchNorm, InstanceNorm*), GroupNorm, LayerNorm,
    LocalResponseNorm, RMSNorm where torch has it, and the FrozenBatchNorm2d classes of
    torchvision and of :mod:`panoptic2.layers.batch_norm` (frozen, but a user may unfreeze).
    """
    types: list[type[nn.Module]] = [
        nn.modules.batchnorm._NormBase,
        nn.GroupNorm,
        nn.LayerNorm,
        nn.LocalResponseNorm,
    ]
    if hasattr(nn, "RMSNorm"):
        types.append(nn.RMSNorm)
    from torchvision.ops import FrozenBatchNorm2d as TVFrozenBatchNorm2d

    types.append(TVFrozenBatchNorm2d)
    try:  # imported lazily: layers may import the solver's users, never the other way
        from panoptic2.layers.batch_norm import FrozenBatchNorm2d
    except ImportError:
        pass
    else:
        types.append(FrozenBatchNorm2d)
    return tuple(types)


def get_default_optimizer_params(
    model: nn.Module,
    base_lr: float | None = None,
    weight_decay: float | None = None,
    weight_decay_norm: float | None = None,
    weight_decay_bias: float | None = None,
    bias_lr_factor: float = 1.0,
    overrides: dict[str, dict[str, float]] | None = None,
) -> list[dict[str, Any]]:
    """Splits a model's trainable parameters into optimizer param groups.

    Each parameter appears exactly once (shared parameters are taken under their first
    name) and frozen ones (``requires_grad=False``) not at all. Hyper-parameters are
    resolved from the least to the most specific rule, the later winning:

    1. ``lr=base_lr``, ``weight_decay=weight_decay``;
    2. parameters of norm modules (:func:`norm_module_types`): ``weight_decay_norm``;
    3. parameters named ``bias``: ``lr=base_lr * bias_lr_factor`` and ``weight_decay_bias``;
    4. ``overrides[local name]`` (e.g. ``"pos_embed"``), then ``overrides[full name]``
       (e.g. ``"backbone.stem.conv1.weight"``).

    A ``None`` value leaves that rule out (the optimizer's default applies when ``base_lr``
    or ``weight_decay`` is ``None``).

    Args:
        model: the model.
        base_lr: the base learning rate.
        weight_decay: the default weight decay.
        weight_decay_norm: weight decay of norm-layer parameters.
        weight_decay_bias: weight decay of biases.
        bias_lr_factor: LR multiplier of biases (needs ``base_lr``).
        overrides: ``{parameter name: {"lr": ..., "weight_decay": ...}}``.

    Returns:
        Param groups ``{"params": [...], "lr": ..., "weight_decay": ...}``; parameters with
        identical hyper-parameters share one group, groups in first-seen order.

    Raises:
        ValueError: ``bias_lr_factor`` without ``base_lr``, or an override that names no
            trainable parameter.
    """
    overrides = dict(overrides or {})
    if bias_lr_factor != 1.0 and base_lr is None:
        raise ValueError("bias_lr_factor != 1.0 needs base_lr")
    defaults: dict[str, float] = {}
    if base_lr is not None:
        defaults["lr"] = base_lr
    if weight_decay is not None:
        defaults["weight_decay"] = weight_decay
    norm_types = norm_module_types()

    used_overrides: set[str] = set()
    memo: set[int] = set()
    groups: dict[tuple[tuple[str, float], ...], dict[str, Any]] = {}
    for module_name, module in model.named_modules():
        is_norm = isinstance(module, norm_types)
        for local_name, param in module.named_parameters(recurse=False):
            if not param.requires_grad or id(param) in memo:
                continue
            memo.add(id(param))
            full_name = f"{module_name}.{local_name}" if module_name else local_name
            hyper = dict(defaults)
            if is_norm and weight_decay_norm is not None:
                hyper["weight_decay"] = weight_decay_norm
            if local_name == "bias":
                if bias_lr_factor != 1.0:
                    hyper["lr"] = base_lr * bias_lr_factor  # type: ignore[operator]
                if weight_decay_bias is not None:
                    hyper["weight_decay"] = weight_decay_bias
            for key in (local_name, full_name):
                if key in overrides:
                    hyper.update(overrides[key])
                    used_overrides.add(key)
            group_key = tuple(sorted(hyper.items()))
            groups.setdefault(group_key, {"params": [], **hyper})["params"].append(param)
    unused = sorted(set(overrides) - used_overrides)
    if unused:
        raise ValueError(f"Optimizer overrides name no trainable parameter: {unused}")
    return list(groups.values())


@OPTIMIZER_REGISTRY.register()
def SGD(cfg: Any, params: list[dict[str, Any]]) -> torch.optim.Optimizer:  # noqa: N802
    """SGD with ``SOLVER.MOMENTUM`` and ``SOLVER.NESTEROV``."""
    return torch.optim.SGD(
        params,
        lr=cfg.SOLVER.BASE_LR,
        momentum=cfg.SOLVER.MOMENTUM,
        nesterov=bool(cfg.SOLVER.NESTEROV),
    )


@OPTIMIZER_REGISTRY.register()
def Adam(cfg: Any, params: list[dict[str, Any]]) -> torch.optim.Optimizer:  # noqa: N802
    """Adam with ``SOLVER.BETAS`` (L2 weight decay added to the gradient)."""
    return torch.optim.Adam(params, lr=cfg.SOLVER.BASE_LR, betas=tuple(cfg.SOLVER.BETAS))


@OPTIMIZER_REGISTRY.register()
def AdamW(cfg: Any, params: list[dict[str, Any]]) -> torch.optim.Optimizer:  # noqa: N802
    """AdamW with ``SOLVER.BETAS`` (decoupled weight decay)."""
    return torch.optim.AdamW(params, lr=cfg.SOLVER.BASE_LR, betas=tuple(cfg.SOLVER.BETAS))


def build_optimizer(cfg: Any, model: nn.Module) -> torch.optim.Optimizer:
    """Builds ``SOLVER.OPTIMIZER`` over :func:`get_default_optimizer_params` of the model.

    Args:
        cfg: the config (``SOLVER.*`` keys).
        model: the model to train.

    Returns:
        The optimizer.

    Raises:
        KeyError: ``SOLVER.OPTIMIZER`` is not registered; the message lists the valid names.
        ValueError: ``SOLVER.BASE_LR`` is negative or not finite, or the model has no
            trainable parameter.
    """
    base_lr = float(cfg.SOLVER.BASE_LR)
    if not math.isfinite(base_lr) or base_lr < 0:
        raise ValueError(f"SOLVER.BASE_LR must be a finite learning rate >= 0, got {base_lr}")
    factory = OPTIMIZER_REGISTRY.get(cfg.SOLVER.OPTIMIZER)
    params = get_default_optimizer_params(
        model,
        base_lr=cfg.SOLVER.BASE_LR,
        weight_decay=cfg.SOLVER.WEIGHT_DECAY,
        weight_decay_norm=cfg.SOLVER.WEIGHT_DECAY_NORM,
        weight_decay_bias=cfg.SOLVER.WEIGHT_DECAY_BIAS,
        bias_lr_factor=cfg.SOLVER.BIAS_LR_FACTOR,
    )
    if not params:
        raise ValueError(f"{type(model).__name__} has no trainable parameter to optimize")
    return factory(cfg, params)


def clip_gradients(
    parameters: Iterable[torch.Tensor] | torch.Tensor, cfg_clip: Any
) -> torch.Tensor | None:
    """Clips gradients in place as ``SOLVER.CLIP_GRADIENTS`` says; call after backward.

    The trainer calls it between ``backward()`` and ``optimizer.step()``; with a float16
    ``GradScaler`` it must call ``scaler.unscale_(optimizer)`` first so the thresholds apply
    to true gradients. ``"norm"`` clips the total norm over all parameters together (unlike
    Detectron2, which clips each parameter's norm separately).

    Args:
        parameters: the parameters (or one tensor) whose ``.grad`` is clipped.
        cfg_clip: the ``SOLVER.CLIP_GRADIENTS`` node: ``ENABLED``, ``CLIP_TYPE`` (``"value"``
            or ``"norm"``), ``CLIP_VALUE``, ``NORM_TYPE``.

    Returns:
        The total gradient norm before clipping (``"norm"``) as a 0-dim tensor on the
        gradients' device, left there so that clipping forces no device sync (CUDA) and does
        not split an XLA step; else ``None``.

    Raises:
        ValueError: an unknown ``CLIP_TYPE`` or a non-positive ``CLIP_VALUE``.
    """
    if not cfg_clip.ENABLED:
        return None
    clip_value = float(cfg_clip.CLIP_VALUE)
    if not clip_value > 0:
        raise ValueError(f"SOLVER.CLIP_GRADIENTS.CLIP_VALUE must be positive, got {clip_value}")
    if isinstance(parameters, torch.Tensor):
        parameters = [parameters]
    params = [p for p in parameters if p.grad is not None]
    clip_type = cfg_clip.CLIP_TYPE
    if clip_type == "value":
        torch.nn.utils.clip_grad_value_(params, clip_value)
        return None
    if clip_type == "norm":
        norm_type = float(cfg_clip.NORM_TYPE)
        if not params:
            return torch.zeros(())
        return torch.nn.utils.clip_grad_norm_(params, max_norm=clip_value, norm_type=norm_type)
    raise ValueError(
        f"Unknown SOLVER.CLIP_GRADIENTS.CLIP_TYPE {clip_type!r}; valid: ['norm', 'value']"
    )


def build_lr_scheduler(cfg: Any, optimizer: torch.optim.Optimizer) -> LRMultiplier:
    """Builds the LR scheduler ``SOLVER.LR_SCHEDULER_NAME`` with ``SOLVER.WARMUP_*``.

    Step it once per iteration. With warmup (``WARMUP_ITERS > 0``) the LR starts at
    ``BASE_LR * WARMUP_FACTOR`` and, for ``"linear"``, rises linearly to the schedule's
    value at ``WARMUP_ITERS``. The poly and cosine end value ``BASE_LR_END`` is relative
    to ``BASE_LR``: a group whose LR is twice ``BASE_LR`` (``BIAS_LR_FACTOR=2``) ends at
    twice ``BASE_LR_END``.

    Args:
        cfg: the config (``SOLVER.*`` keys).
        optimizer: the optimizer, built by :func:`build_optimizer` or not.

    Returns:
        An :class:`~panoptic2.solver.lr_scheduler.LRMultiplier`.

    Raises:
        KeyError: an unregistered ``SOLVER.LR_SCHEDULER_NAME`` (lists the valid names).
        ValueError: ``MAX_ITER`` is not positive, ``WARMUP_ITERS`` is not below it, or the
            warmup method is unknown.
    """
    if int(cfg.SOLVER.MAX_ITER) <= 0:
        raise ValueError(
            f"SOLVER.MAX_ITER must be a positive number of iterations, got {cfg.SOLVER.MAX_ITER}"
        )
    name = cfg.SOLVER.LR_SCHEDULER_NAME
    schedule = LR_SCHEDULER_REGISTRY.get(name)(cfg)
    max_iter = int(cfg.SOLVER.MAX_ITER)
    warmup_iters = int(cfg.SOLVER.WARMUP_ITERS)
    if warmup_iters < 0 or warmup_iters >= max_iter:
        raise ValueError(
            f"SOLVER.WARMUP_ITERS ({warmup_iters}) must be in [0, SOLVER.MAX_ITER={max_iter})"
        )
    if warmup_iters > 0:
        factor = float(cfg.SOLVER.WARMUP_FACTOR)
        if not math.isfinite(factor):
            raise ValueError(f"SOLVER.WARMUP_FACTOR must be finite, got {factor}")
        schedule = WarmupParamScheduler(
            schedule, factor, warmup_iters / max_iter, cfg.SOLVER.WARMUP_METHOD
        )
    return LRMultiplier(optimizer, multiplier=schedule, max_iter=max_iter)

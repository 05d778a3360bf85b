"""Learning-rate schedules: fvcore param schedulers driven once per iteration.

A schedule is a multiplier ``m(where)`` of the base LR, with ``where = iter / max_iter`` in
``[0, 1]`` (an fvcore :class:`~fvcore.common.param_scheduler.ParamScheduler`).
:class:`LRMultiplier` applies it to every param group of an optimizer as a regular
``torch.optim.lr_scheduler.LRScheduler``. Schedules are registered by name in
:data:`LR_SCHEDULER_REGISTRY` (``SOLVER.LR_SCHEDULER_NAME``); plugins may add their own.
"""

from __future__ import annotations

import logging
from typing import Any

from fvcore.common.param_scheduler import (
    CompositeParamScheduler,
    ConstantParamScheduler,
    CosineParamScheduler,
    LinearParamScheduler,
    MultiStepParamScheduler,
    ParamScheduler,
)
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from panoptic2.registry import LR_SCHEDULER_REGISTRY

__all__ = [
    "LR_SCHEDULER_REGISTRY",
    "LRMultiplier",
    "PolyParamScheduler",
    "WarmupParamScheduler",
]

logger = logging.getLogger(__name__)


class PolyParamScheduler(ParamScheduler):
    """Polynomial decay to an end value: ``(start - end) * (1 - where) ** power + end``."""

    def __init__(self, start_value: float, end_value: float, power: float) -> None:
        """
        Args:
            start_value: the value at ``where = 0``.
            end_value: the value at ``where = 1``.
            power: the polynomial's power (DeepLab uses 0.9).
        """
        self._start_value = start_value
        self._end_value = end_value
        self._power = power

    def __call__(self, where: float) -> float:
        return (self._start_value - self._end_value) * (1.0 - where) ** self._power + (
            self._end_value
        )


class WarmupParamScheduler(CompositeParamScheduler):
    """Prepends a warmup to a schedule.

    During the first ``warmup_length`` fraction of training the multiplier is either
    constant at ``warmup_factor * scheduler(0)`` or rises linearly from there to
    ``scheduler(warmup_length)``; afterwards it is ``scheduler(where)``, evaluated at the
    global ``where`` (the main schedule is not shifted by the warmup).
    """

    def __init__(
        self,
        scheduler: ParamScheduler,
        warmup_factor: float,
        warmup_length: float,
        warmup_method: str = "linear",
    ) -> None:
        """
        Args:
            scheduler: the main schedule.
            warmup_factor: the multiplier at the first iteration, relative to the schedule.
            warmup_length: the warmup's fraction of training, in ``(0, 1)``.
            warmup_method: ``"linear"`` or ``"constant"``.

        Raises:
            ValueError: an unknown ``warmup_method`` or a length outside ``(0, 1)``.
        """
        if not 0.0 < warmup_length < 1.0:
            raise ValueError(
                f"Warmup length must be a fraction of training in (0, 1), got {warmup_length} "
                "(SOLVER.WARMUP_ITERS must be below SOLVER.MAX_ITER)"
            )
        start = warmup_factor * scheduler(0.0)
        if warmup_method == "linear":
            warmup: ParamScheduler = LinearParamScheduler(start, scheduler(warmup_length))
        elif warmup_method == "constant":
            warmup = ConstantParamScheduler(start)
        else:
            raise ValueError(
                f"Unknown SOLVER.WARMUP_METHOD {warmup_method!r}; valid: ['constant', 'linear']"
            )
        super().__init__(
            [warmup, scheduler],
            interval_scaling=["rescaled", "fixed"],
            lengths=[warmup_length, 1.0 - warmup_length],
        )


class LRMultiplier(LRScheduler):
    """Sets each param group's LR to ``base_lr * multiplier(iter / max_iter)``.

    Step it once per iteration, after ``optimizer.step()``. Iterations past ``max_iter``
    keep the final multiplier. ``state_dict()`` holds plain numbers only (the schedule is
    rebuilt from the config), so it loads with ``torch.load(weights_only=True)``, and a
    scheduler loaded from it continues exactly where the saved one stopped.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        multiplier: ParamScheduler,
        max_iter: int,
        last_iter: int = -1,
    ) -> None:
        """
        Args:
            optimizer: the optimizer whose param groups' ``lr`` is set.
            multiplier: the schedule, a function of ``where`` in ``[0, 1]``.
            max_iter: the number of iterations of the whole schedule (> 0).
            last_iter: the last finished iteration (-1 for a fresh start).
        """
        if not isinstance(multiplier, ParamScheduler):
            raise TypeError(
                f"multiplier must be an fvcore ParamScheduler, got {type(multiplier).__name__}"
            )
        if max_iter <= 0:
            raise ValueError(f"max_iter must be positive, got {max_iter}")
        self._multiplier = multiplier
        self._max_iter = max_iter
        super().__init__(optimizer, last_epoch=last_iter)

    def state_dict(self) -> dict[str, Any]:
        """Returns the plain-data state (iteration, base and last LRs, step count)."""
        return {
            k: v
            for k, v in self.__dict__.items()
            if k not in ("optimizer", "_multiplier") and isinstance(v, int | float | list)
        }

    def get_lr(self) -> list[float]:
        where = min(max(self.last_epoch / self._max_iter, 0.0), 1.0)
        multiplier = self._multiplier(where)
        return [base_lr * multiplier for base_lr in self.base_lrs]


def _end_ratio(cfg: Any) -> float:
    """``SOLVER.BASE_LR_END`` as a multiplier of ``SOLVER.BASE_LR``."""
    base, end = float(cfg.SOLVER.BASE_LR), float(cfg.SOLVER.BASE_LR_END)
    if base == 0.0:
        return 0.0
    return end / base


@LR_SCHEDULER_REGISTRY.register()
def WarmupPolyLR(cfg: Any) -> ParamScheduler:  # noqa: N802 (registered under this name)
    """``lr = (base - end) * (1 - iter / max_iter) ** SOLVER.POLY_LR_POWER + end``."""
    return PolyParamScheduler(1.0, _end_ratio(cfg), float(cfg.SOLVER.POLY_LR_POWER))


@LR_SCHEDULER_REGISTRY.register()
def WarmupCosineLR(cfg: Any) -> ParamScheduler:  # noqa: N802
    """Half a cosine from ``SOLVER.BASE_LR`` at iteration 0 to ``SOLVER.BASE_LR_END``."""
    return CosineParamScheduler(1.0, _end_ratio(cfg))


@LR_SCHEDULER_REGISTRY.register()
def WarmupMultiStepLR(cfg: Any) -> ParamScheduler:  # noqa: N802
    """Multiplies the LR by ``SOLVER.GAMMA`` at each iteration in ``SOLVER.STEPS``.

    Steps at or beyond ``SOLVER.MAX_ITER`` never take effect; they are dropped with a
    warning.
    """
    max_iter = int(cfg.SOLVER.MAX_ITER)
    steps = [int(s) for s in cfg.SOLVER.STEPS]
    if sorted(steps) != steps or len(set(steps)) != len(steps):
        raise ValueError(f"SOLVER.STEPS must be strictly increasing, got {steps}")
    kept = [s for s in steps if 0 < s < max_iter]
    if len(kept) != len(steps):
        logger.warning(
            f"SOLVER.STEPS {steps} has values outside (0, SOLVER.MAX_ITER={max_iter}); "
            f"they are ignored, using {kept}"
        )
    gamma = float(cfg.SOLVER.GAMMA)
    return MultiStepParamScheduler(
        values=[gamma**k for k in range(len(kept) + 1)], milestones=kept, num_updates=max_iter
    )

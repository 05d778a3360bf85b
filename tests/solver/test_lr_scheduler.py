"""Tests of panoptic2/solver/lr_scheduler.py (built through build_lr_scheduler)."""

import io
import logging
import math

import pytest
import torch
from torch import nn

from panoptic2.config import get_cfg
from panoptic2.solver import LRMultiplier, build_lr_scheduler, build_optimizer

BASE, END, MAX_ITER = 0.1, 0.001, 100


def _cfg(name: str, warmup_iters: int = 0, method: str = "linear"):
    cfg = get_cfg()
    cfg.SOLVER.LR_SCHEDULER_NAME = name
    cfg.SOLVER.BASE_LR = BASE
    cfg.SOLVER.BASE_LR_END = END
    cfg.SOLVER.MAX_ITER = MAX_ITER
    cfg.SOLVER.POLY_LR_POWER = 0.9
    cfg.SOLVER.STEPS = [30, 60]
    cfg.SOLVER.GAMMA = 0.5
    cfg.SOLVER.WARMUP_ITERS = warmup_iters
    cfg.SOLVER.WARMUP_FACTOR = 0.01
    cfg.SOLVER.WARMUP_METHOD = method
    cfg.SOLVER.BIAS_LR_FACTOR = 2.0
    return cfg


def _run(cfg, iters: int = MAX_ITER):
    """LR of the weight group and of the bias group used at each iteration."""
    model = nn.Linear(2, 2)
    opt = build_optimizer(cfg, model)
    sched = build_lr_scheduler(cfg, opt)
    assert isinstance(sched, LRMultiplier)
    lrs = []
    for _ in range(iters):
        lrs.append([g["lr"] for g in opt.param_groups])
        opt.step()
        sched.step()
    return lrs


def poly(it):
    return (BASE - END) * (1 - it / MAX_ITER) ** 0.9 + END


def cosine(it):
    return END + 0.5 * (BASE - END) * (1 + math.cos(math.pi * it / MAX_ITER))


def multistep(it):
    return BASE * 0.5 ** sum(it >= s for s in (30, 60))


def linear_warmup(schedule, warmup=10, factor=0.01):
    def lr(it):
        if it >= warmup:
            return schedule(it)
        start = factor * BASE
        return start + (schedule(warmup) - start) * it / warmup

    return lr


def constant_warmup(schedule, warmup=10, factor=0.01):
    return lambda it: factor * BASE if it < warmup else schedule(it)


CASES = {
    "poly": ("WarmupPolyLR", 0, "linear", poly),
    "cosine": ("WarmupCosineLR", 0, "linear", cosine),
    "multistep": ("WarmupMultiStepLR", 0, "linear", multistep),
    "poly_linear_warmup": ("WarmupPolyLR", 10, "linear", linear_warmup(poly)),
    "cosine_linear_warmup": ("WarmupCosineLR", 10, "linear", linear_warmup(cosine)),
    "multistep_linear_warmup": ("WarmupMultiStepLR", 10, "linear", linear_warmup(multistep)),
    "poly_constant_warmup": ("WarmupPolyLR", 10, "constant", constant_warmup(poly)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_schedule_matches_formula(case):
    name, warmup, method, formula = CASES[case]
    lrs = _run(_cfg(name, warmup, method))
    for it in [0, 1, 5, 9, 10, 11, 29, 30, 31, 59, 60, 75, 99]:
        weight_lr, bias_lr = lrs[it]
        assert weight_lr == pytest.approx(formula(it), rel=1e-9, abs=1e-12), it
        # BIAS_LR_FACTOR scales the whole schedule of the bias group.
        assert bias_lr == pytest.approx(2 * formula(it), rel=1e-9, abs=1e-12), it


def test_poly_reaches_end_value_and_stays():
    model = nn.Linear(1, 1)
    cfg = _cfg("WarmupPolyLR")
    cfg.SOLVER.BIAS_LR_FACTOR = 1.0
    opt = build_optimizer(cfg, model)
    sched = build_lr_scheduler(cfg, opt)
    for _ in range(MAX_ITER + 5):
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(END)


def test_steps_beyond_max_iter_warn(caplog):
    cfg = _cfg("WarmupMultiStepLR")
    cfg.SOLVER.STEPS = [30, 60, 200]
    logger = logging.getLogger("panoptic2")
    logger.addHandler(caplog.handler)
    try:
        lrs = _run(cfg, iters=61)
    finally:
        logger.removeHandler(caplog.handler)
    assert any("200" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)
    assert lrs[60][0] == pytest.approx(BASE * 0.25)


def test_state_dict_round_trip_continues_identically():
    cfg = _cfg("WarmupCosineLR", warmup_iters=10)
    model = nn.Linear(2, 2)
    opt = build_optimizer(cfg, model)
    sched = build_lr_scheduler(cfg, opt)
    for _ in range(37):
        opt.step()
        sched.step()

    buf = io.BytesIO()
    torch.save({"optimizer": opt.state_dict(), "scheduler": sched.state_dict()}, buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)

    model2 = nn.Linear(2, 2)
    opt2 = build_optimizer(cfg, model2)
    sched2 = build_lr_scheduler(cfg, opt2)
    opt2.load_state_dict(state["optimizer"])
    sched2.load_state_dict(state["scheduler"])
    assert sched2.last_epoch == 37
    assert sched2.get_last_lr() == sched.get_last_lr()
    for _ in range(40):
        assert [g["lr"] for g in opt2.param_groups] == [g["lr"] for g in opt.param_groups]
        opt.step()
        sched.step()
        opt2.step()
        sched2.step()


def test_bad_scheduler_configs():
    opt = torch.optim.SGD(nn.Linear(1, 1).parameters(), lr=0.1)
    with pytest.raises(KeyError, match=r"WarmupCosineLR.*WarmupMultiStepLR.*WarmupPolyLR"):
        build_lr_scheduler(_cfg("StepLR"), opt)
    with pytest.raises(ValueError, match="WARMUP_ITERS"):
        build_lr_scheduler(_cfg("WarmupPolyLR", warmup_iters=MAX_ITER), opt)
    with pytest.raises(ValueError, match=r"'cubic'.*constant.*linear"):
        build_lr_scheduler(_cfg("WarmupPolyLR", warmup_iters=5, method="cubic"), opt)
    cfg = _cfg("WarmupMultiStepLR")
    cfg.SOLVER.STEPS = [60, 30]
    with pytest.raises(ValueError, match="increasing"):
        build_lr_scheduler(cfg, opt)

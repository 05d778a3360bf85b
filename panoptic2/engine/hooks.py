"""The default training hooks, one small class each, and the registry of custom hooks."""

from __future__ import annotations

import datetime
import itertools
import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from fvcore.common.timer import Timer
from fvcore.nn.precise_bn import get_bn_modules, update_bn_stats
from torch import nn

from panoptic2.registry import HOOK_REGISTRY
from panoptic2.utils import comm
from panoptic2.utils.events import EventWriter

from .train_loop import HookBase, Priority

__all__ = [
    "HOOK_REGISTRY",
    "BestCheckpointer",
    "CallbackHook",
    "EvalHook",
    "IterationTimer",
    "LRScheduler",
    "PeriodicCheckpointer",
    "PeriodicWriter",
    "PreciseBN",
    "ValidationLoss",
    "flatten_results",
]

logger = logging.getLogger(__name__)


def flatten_results(results: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """Flattens nested evaluation results: ``{"panoptic_seg": {"PQ": 61.2}}`` ->
    ``{"panoptic_seg/PQ": 61.2}``. Non-numeric leaves are dropped."""
    flat: dict[str, float] = {}
    for key, value in results.items():
        name = f"{prefix}/{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            flat.update(flatten_results(value, name))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            flat[name] = float(value)
    return flat


class CallbackHook(HookBase):
    """A hook made of plain functions, each called with the trainer."""

    def __init__(
        self,
        *,
        name: str = "CallbackHook",
        priority: int = Priority.NORMAL,
        before_train: Callable | None = None,
        after_train: Callable | None = None,
        before_step: Callable | None = None,
        after_step: Callable | None = None,
    ) -> None:
        self._name = name
        self.priority = priority
        self._callbacks = {
            "before_train": before_train,
            "after_train": after_train,
            "before_step": before_step,
            "after_step": after_step,
        }

    @property
    def name(self) -> str:
        return self._name

    def _call(self, event: str) -> None:
        if self._callbacks[event] is not None:
            self._callbacks[event](self.trainer)

    def before_train(self) -> None:
        self._call("before_train")

    def after_train(self) -> None:
        self._call("after_train")

    def before_step(self) -> None:
        self._call("before_step")

    def after_step(self) -> None:
        self._call("after_step")


class IterationTimer(HookBase):
    """Records the time of each iteration as ``time`` and logs the total at the end.

    The first ``warmup_iter`` iterations are left out of the summary (allocation, caches).
    """

    priority = Priority.VERY_HIGH

    def __init__(self, warmup_iter: int = 3) -> None:
        self._warmup_iter = warmup_iter
        self._step_timer = Timer()
        self._start_time = time.perf_counter()
        self._total_timer = Timer()

    def before_train(self) -> None:
        self._start_time = time.perf_counter()
        self._total_timer.reset()
        self._total_timer.pause()

    def after_train(self) -> None:
        total_time = time.perf_counter() - self._start_time
        timed_time = self._total_timer.seconds()
        num_iter = self.trainer.storage.iter + 1 - self.trainer.start_iter - self._warmup_iter
        if num_iter > 0 and timed_time > 0:
            logger.info(
                "Overall training speed: %d iterations in %s (%.4f s / it)",
                num_iter,
                datetime.timedelta(seconds=int(timed_time)),
                timed_time / num_iter,
            )
        logger.info(
            "Total training time: %s (%s on hooks)",
            datetime.timedelta(seconds=int(total_time)),
            datetime.timedelta(seconds=int(total_time - timed_time)),
        )

    def before_step(self) -> None:
        self._step_timer.reset()
        self._total_timer.resume()

    def after_step(self) -> None:
        # Warm-up iterations are recorded (for the printer) but not in the summary.
        iter_done = self.trainer.iter - self.trainer.start_iter + 1
        if iter_done > self._warmup_iter:
            self.trainer.storage.put_scalars(time=self._step_timer.seconds())
        else:
            self._start_time = time.perf_counter()
            self._total_timer.reset()
        self._total_timer.pause()


class LRScheduler(HookBase):
    """Records the learning rate as ``lr`` and steps the scheduler after each iteration.

    The scheduler's state is checkpointed through this hook.
    """

    priority = Priority.HIGH

    def __init__(self, optimizer: torch.optim.Optimizer, scheduler) -> None:
        self._optimizer = optimizer
        self.scheduler = scheduler

    def _best_param_group_id(self) -> int:
        # The group with the most parameters is the "main" LR (others may use factors).
        sizes = [sum(p.numel() for p in g["params"]) for g in self._optimizer.param_groups]
        return max(range(len(sizes)), key=sizes.__getitem__)

    def before_train(self) -> None:
        self._group_id = self._best_param_group_id()

    def after_step(self) -> None:
        lr = self._optimizer.param_groups[self._group_id]["lr"]
        self.trainer.storage.put_scalar("lr", lr, smoothing_hint=False)
        self.scheduler.step()

    def state_dict(self) -> dict[str, Any]:
        return self.scheduler.state_dict()

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        self.scheduler.load_state_dict(dict(state_dict))


class PeriodicCheckpointer(HookBase):
    """Saves a checkpoint every ``period`` iterations and at the end (``model_final``).

    Args:
        periodic_checkpointer: a :class:`panoptic2.checkpoint.PeriodicCheckpointer`, which
            writes atomically and keeps the last N files.
    """

    priority = Priority.NORMAL

    def __init__(self, periodic_checkpointer) -> None:
        self._periodic = periodic_checkpointer

    def before_train(self) -> None:
        self._periodic.max_iter = self.trainer.max_iter

    def after_step(self) -> None:
        # The periodic checkpointer also writes model_final at max_iter - 1.
        self._periodic.step(self.trainer.iter)


class EvalHook(HookBase):
    """Evaluates every ``eval_period`` iterations and after the last one.

    ``eval_function()`` returns nested results (``{"panoptic_seg": {"PQ": ...}}``); they are
    flattened into the event storage (``panoptic_seg/PQ``), so writers log them and
    :class:`BestCheckpointer` can read them.
    """

    priority = Priority.BELOW_NORMAL

    def __init__(
        self,
        eval_period: int,
        eval_function: Callable[[], Mapping],
        *,
        eval_after_train: bool = True,
    ) -> None:
        self._period = eval_period
        self._func = eval_function
        self._eval_after_train = eval_after_train
        self.latest_results: Mapping | None = None

    def _do_eval(self) -> None:
        # Evaluation (its loaders' seeds) must not shift the training RNG stream.
        with torch.random.fork_rng(devices=[]):
            results = self._func()
        self.latest_results = results
        if results:
            # NaN is a legitimate value ("not applicable", e.g. COCO's APl on a dataset
            # without large objects), as in Detectron2; it is recorded like any other.
            self.trainer.storage.put_scalars(**flatten_results(results), smoothing_hint=False)
        # Evaluation may take different times on different ranks; wait for all.
        comm.synchronize()

    def after_step(self) -> None:
        next_iter = self.trainer.iter + 1
        if (
            self._period > 0
            and next_iter % self._period == 0
            and next_iter != self.trainer.max_iter
        ):
            self._do_eval()

    def after_train(self) -> None:
        # Only after a completed run: evaluating a model that crashed is not useful.
        if self._eval_after_train and self.trainer.iter >= self.trainer.max_iter:
            self._do_eval()


class BestCheckpointer(HookBase):
    """Saves ``model_best.pth`` whenever the tracked metric improves.

    Runs after :class:`EvalHook` (lower priority) and reads the metric from the storage.

    Args:
        checkpointer: a :class:`panoptic2.checkpoint.Checkpointer`.
        val_metric: flattened metric name, e.g. ``"panoptic_seg/PQ"``.
        mode: "max" or "min".
        file_prefix: name of the saved file (without ``.pth``).
    """

    priority = Priority.LOW

    def __init__(
        self, checkpointer, val_metric: str, mode: str = "max", file_prefix: str = "model_best"
    ) -> None:
        if mode not in ("max", "min"):
            raise ValueError(f"BestCheckpointer mode must be 'max' or 'min', got {mode!r}")
        self._checkpointer = checkpointer
        self._val_metric = val_metric
        self._mode = mode
        self._file_prefix = file_prefix
        self.best_metric: float | None = None
        self.best_iter: int | None = None
        self._last_seen_iter: int | None = None

    def _is_better(self, value: float) -> bool:
        if self.best_metric is None:
            return True
        return value > self.best_metric if self._mode == "max" else value < self.best_metric

    def _check(self) -> None:
        latest = self.trainer.storage.latest().get(self._val_metric)
        if latest is None:
            return
        value, metric_iter = latest
        if metric_iter == self._last_seen_iter:
            return  # not re-evaluated since we last looked
        self._last_seen_iter = metric_iter
        if not math.isfinite(value):
            logger.warning(
                "BestCheckpointer: %s is %s at iteration %d; not compared",
                self._val_metric,
                value,
                metric_iter,
            )
            return
        if self._is_better(value):
            previous = self.best_metric
            self.best_metric, self.best_iter = float(value), int(metric_iter)
            # Not tagged as last_checkpoint: --resume must continue from the latest state.
            self._checkpointer.save(
                self._file_prefix, iteration=metric_iter, tag_last_checkpoint=False
            )
            logger.info(
                "Saved %s: %s = %.5f at iteration %d (previous best: %s)",
                self._file_prefix,
                self._val_metric,
                value,
                metric_iter,
                previous,
            )

    def after_step(self) -> None:
        self._check()

    def after_train(self) -> None:
        self._check()

    def state_dict(self) -> dict[str, Any]:
        if self.best_metric is None:
            return {}
        return {"best_metric": self.best_metric, "best_iter": self.best_iter}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        self.best_metric = float(state_dict["best_metric"])
        self.best_iter = int(state_dict["best_iter"])


class PeriodicWriter(HookBase):
    """Calls every writer every ``period`` iterations and at the end; runs last so it sees
    the scalars every other hook recorded in the same iteration."""

    priority = Priority.LOWEST

    def __init__(self, writers: Iterable[EventWriter], period: int = 20) -> None:
        self._writers = list(writers)
        for writer in self._writers:
            if not isinstance(writer, EventWriter):
                raise TypeError(f"{writer!r} is not an EventWriter")
        self._period = period

    def after_step(self) -> None:
        next_iter = self.trainer.iter + 1
        if next_iter % self._period == 0 or next_iter == self.trainer.max_iter:
            for writer in self._writers:
                writer.write()

    def after_train(self) -> None:
        for writer in self._writers:
            # Final evaluation results are recorded in after_train; write them too.
            writer.write()
            writer.close()


class PreciseBN(HookBase):
    """Recomputes BatchNorm population statistics over ``num_iter`` batches.

    Running averages drift while weights change; precise statistics (Wu & Johnson, 2021)
    are the true averages under the final weights. Runs every ``period`` iterations and at
    the end, before the checkpointer so the updated statistics are saved.

    Args:
        period: iterations between updates (0 = only at the end).
        model: the model; a no-op when it has no BatchNorm in training mode.
        data_loader_factory: returns a fresh iterable of training batches.
        num_iter: batches to average over.
    """

    priority = Priority.ABOVE_NORMAL

    def __init__(
        self,
        period: int,
        model: nn.Module,
        data_loader_factory: Callable[[], Iterable],
        num_iter: int,
    ) -> None:
        self._period = period
        self._model = model
        self._data_loader_factory = data_loader_factory
        self._num_iter = num_iter
        self._disabled = len(get_bn_modules(model)) == 0
        if self._disabled:
            logger.info("PreciseBN is disabled: the model has no BatchNorm layer in training mode")

    def after_step(self) -> None:
        next_iter = self.trainer.iter + 1
        is_final = next_iter == self.trainer.max_iter
        if is_final or (self._period > 0 and next_iter % self._period == 0):
            self.update_stats()

    def update_stats(self) -> None:
        """Runs the model over ``num_iter`` batches and sets the exact BN statistics."""
        if self._disabled:
            return
        data_iter = iter(self._data_loader_factory())

        def batches():
            for num, batch in enumerate(itertools.islice(data_iter, self._num_iter), 1):
                if num % 100 == 0:
                    logger.info("PreciseBN: %d/%d batches", num, self._num_iter)
                yield batch

        logger.info("Recomputing BatchNorm statistics over %d batches", self._num_iter)
        # Data-dependent randomness of the model (dropout) must not shift the trainer's RNG
        # stream, or a resumed run would diverge from a straight one.
        with torch.random.fork_rng(devices=[]):
            update_bn_stats(self._model, batches(), self._num_iter)


class ValidationLoss(HookBase):
    """Records the average loss on a validation loader as ``val_*`` scalars.

    The model computes losses only in training mode, so it runs in training mode under
    ``torch.no_grad()`` with its normalisation layers switched to eval mode, so that
    validation batches do not change BatchNorm statistics.

    Args:
        period: iterations between evaluations.
        model: the (possibly DDP-wrapped) model.
        data_loader_factory: returns a finite iterable of training-format batches.
    """

    priority = Priority.BELOW_NORMAL

    def __init__(
        self, period: int, model: nn.Module, data_loader_factory: Callable[[], Iterable]
    ) -> None:
        self._period = period
        self._model = model
        self._data_loader_factory = data_loader_factory

    @torch.no_grad()
    def compute(self) -> dict[str, float]:
        """Returns the mean of each loss (and their sum as ``val_total_loss``) over ranks."""
        norms = [m for m in self._model.modules() if isinstance(m, nn.modules.batchnorm._NormBase)]
        was_training = [m.training for m in norms]
        for m in norms:
            m.eval()
        totals: dict[str, float] = {}
        count = 0
        try:
            with torch.random.fork_rng(devices=[]):
                for batch in self._data_loader_factory():
                    loss_dict = self._model(batch)
                    for key, value in loss_dict.items():
                        totals[key] = totals.get(key, 0.0) + float(value.detach().float().cpu())
                    count += 1
        finally:
            for m, mode in zip(norms, was_training):
                m.train(mode)
        gathered = comm.all_gather((totals, count))
        total_count = sum(c for _, c in gathered)
        if total_count == 0:
            raise RuntimeError("ValidationLoss: the validation loader yielded no batch")
        keys = sorted(set().union(*(t.keys() for t, _ in gathered)))
        means = {f"val_{k}": sum(t.get(k, 0.0) for t, _ in gathered) / total_count for k in keys}
        means["val_total_loss"] = sum(means.values())
        return means

    def after_step(self) -> None:
        next_iter = self.trainer.iter + 1
        if self._period > 0 and (
            next_iter % self._period == 0 or next_iter == self.trainer.max_iter
        ):
            losses = self.compute()
            if comm.is_main_process():
                self.trainer.storage.put_scalars(**losses, smoothing_hint=False)

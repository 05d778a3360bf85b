"""The training loop: a small trainer that runs steps and calls hooks around them.

Everything a run needs beyond "forward, backward, step" (LR schedules, checkpoints,
evaluation, logging) is a hook, so the loop stays small and device-agnostic: nothing here
assumes CUDA, which keeps the loop usable by the ``torch_xla`` runner.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from enum import IntEnum
from typing import Any

import torch
from torch import nn

from panoptic2.utils import comm
from panoptic2.utils.events import EventStorage, get_event_storage

__all__ = ["AMPTrainer", "HookBase", "Priority", "SimpleTrainer", "TrainerBase"]

logger = logging.getLogger(__name__)


class Priority(IntEnum):
    """Named hook priorities: lower runs first; equal priorities keep registration order."""

    HIGHEST = 0
    VERY_HIGH = 10
    HIGH = 30
    ABOVE_NORMAL = 40
    NORMAL = 50
    BELOW_NORMAL = 60
    LOW = 70
    VERY_LOW = 90
    LOWEST = 100


def _priority_name(priority: int) -> str:
    try:
        return Priority(priority).name
    except ValueError:
        return str(priority)


class HookBase:
    """Base class of the callbacks a :class:`TrainerBase` runs around each step.

    Override any of the ``before_*``/``after_*`` methods. ``self.trainer`` is set (as a weak
    proxy) when the hook is registered. A hook that must survive a resume returns its state
    from :meth:`state_dict`; the trainer stores it in the checkpoint under :attr:`name`.

    Attributes:
        priority: where the hook runs relative to others (see :class:`Priority`).
        name: the key of the hook's state in checkpoints and the name by which
            configs disable or replace a default hook; defaults to the class name.
    """

    priority: int = Priority.NORMAL
    trainer: TrainerBase

    @property
    def name(self) -> str:
        return type(self).__name__

    def before_train(self) -> None:
        """Called once before the first iteration."""

    def after_train(self) -> None:
        """Called once after the last iteration (also when training raised)."""

    def before_step(self) -> None:
        """Called before each iteration."""

    def after_backward(self) -> None:
        """Called after the backward pass, before the optimizer step."""

    def after_step(self) -> None:
        """Called after each iteration."""

    def state_dict(self) -> dict[str, Any]:
        """Returns the state to checkpoint (empty: nothing to save)."""
        return {}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restores what :meth:`state_dict` returned."""


class TrainerBase:
    """Runs ``run_step`` from ``start_iter`` to ``max_iter - 1`` with hooks around it.

    Attributes:
        iter: the current iteration.
        start_iter: the first iteration of this run.
        max_iter: the iteration to stop at (exclusive).
        storage: the :class:`EventStorage` open during training.
    """

    def __init__(self) -> None:
        self._hooks: list[HookBase] = []
        self.iter: int = 0
        self.start_iter: int = 0
        self.max_iter: int = 0
        self.storage: EventStorage

    def register_hooks(self, hooks: Iterable[HookBase | None]) -> None:
        """Adds hooks and re-sorts all of them by priority (stable), logging the order."""
        hooks = [h for h in hooks if h is not None]
        for hook in hooks:
            if not isinstance(hook, HookBase):
                raise TypeError(f"{hook!r} is not a HookBase")
            # A weak proxy avoids a reference cycle trainer <-> hook, so a trainer is freed
            # (with its data loader workers) as soon as the user drops it.
            hook.trainer = weakref.proxy(self)
        self._hooks = sorted(self._hooks + hooks, key=lambda h: int(h.priority))
        names = [h.name for h in self._hooks]
        if len(set(names)) != len(names):
            raise ValueError(f"Two hooks have the same name: {names}; give them distinct names")
        logger.info(
            "Hooks in run order: %s",
            ", ".join(f"{h.name}({_priority_name(h.priority)})" for h in self._hooks),
        )

    @property
    def hooks(self) -> list[HookBase]:
        """The registered hooks in run order."""
        return list(self._hooks)

    def train(self, start_iter: int, max_iter: int) -> None:
        """Runs iterations ``start_iter .. max_iter - 1``."""
        logger.info("Starting training from iteration %d", start_iter)
        self.iter = self.start_iter = start_iter
        self.max_iter = max_iter
        with EventStorage(start_iter) as self.storage:
            try:
                self.before_train()
                for self.iter in range(start_iter, max_iter):
                    self.before_step()
                    self.run_step()
                    self.after_step()
                # After the loop `iter` names the last finished iteration; hooks that run in
                # after_train (final evaluation, final checkpoint) see the next one, as a
                # loop that ran to completion would.
                self.iter += 1
            except Exception:
                logger.exception("Exception during training:")
                raise
            finally:
                self.after_train()

    def before_train(self) -> None:
        for h in self._hooks:
            h.before_train()

    def after_train(self) -> None:
        self.storage.iter = self.iter
        for h in self._hooks:
            h.after_train()

    def before_step(self) -> None:
        # Keep the storage's iteration in sync so hooks' scalars are logged at this step.
        self.storage.iter = self.iter
        for h in self._hooks:
            h.before_step()

    def after_backward(self) -> None:
        for h in self._hooks:
            h.after_backward()

    def after_step(self) -> None:
        for h in self._hooks:
            h.after_step()

    def run_step(self) -> None:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """The iteration and the state of every hook that has one."""
        hooks_state = {}
        for h in self._hooks:
            state = h.state_dict()
            if state:
                hooks_state[h.name] = state
        return {"iteration": self.iter, "hooks": hooks_state}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        self.iter = int(state_dict["iteration"])
        by_name = {h.name: h for h in self._hooks}
        for name, state in state_dict.get("hooks", {}).items():
            if name in by_name:
                by_name[name].load_state_dict(state)
            else:
                logger.warning("Checkpoint has state for hook %r, which is not registered", name)


class SimpleTrainer(TrainerBase):
    """One optimizer step per iteration on the losses the model returns.

    The model is called as ``model(batch) -> dict[str, Tensor]`` of scalar losses, which
    are summed. A non-finite loss stops training with :class:`FloatingPointError`.

    Args:
        model: a module in training mode returning a dict of losses.
        data_loader: an iterable of batches; may be set later (``trainer.data_loader``)
            so that a resumed run can build its loader at the resumed position.
        optimizer: the optimizer.
        grad_clipper: optional ``f(parameters)`` called after backward, before stepping.
        zero_grad_before_forward: zero gradients before the forward pass instead of
            after it (lets a hook inspect gradients between steps).
    """

    def __init__(
        self,
        model: nn.Module,
        data_loader: Iterable | None,
        optimizer: torch.optim.Optimizer,
        *,
        grad_clipper: Callable[[Iterable[torch.Tensor]], Any] | None = None,
        zero_grad_before_forward: bool = False,
    ) -> None:
        super().__init__()
        model.train()
        self.model = model
        self.optimizer = optimizer
        self.grad_clipper = grad_clipper
        self.zero_grad_before_forward = zero_grad_before_forward
        self._data_loader = data_loader
        self._data_loader_iter_obj = None

    @property
    def data_loader(self) -> Iterable | None:
        return self._data_loader

    @data_loader.setter
    def data_loader(self, loader: Iterable) -> None:
        self._data_loader = loader
        self._data_loader_iter_obj = None

    @property
    def _data_loader_iter(self):
        # Created on first use so that no loader worker starts before training does.
        if self._data_loader_iter_obj is None:
            if self._data_loader is None:
                raise RuntimeError("The trainer has no data loader; set trainer.data_loader")
            # A DataLoader draws its workers' base seed from the global RNG when its iterator
            # is created; fork so that this does not shift the training RNG stream (a resumed
            # run creates its iterator at a different point than a straight run).
            with torch.random.fork_rng(devices=[]):
                self._data_loader_iter_obj = iter(self._data_loader)
        return self._data_loader_iter_obj

    def _next_batch(self) -> tuple[Any, float]:
        start = time.perf_counter()
        data = next(self._data_loader_iter)
        return data, time.perf_counter() - start

    @staticmethod
    def _sum_losses(loss_dict: Mapping[str, torch.Tensor] | torch.Tensor) -> torch.Tensor:
        if isinstance(loss_dict, torch.Tensor):
            return loss_dict
        if not loss_dict:
            raise ValueError("The model returned no losses in training mode")
        return sum(loss_dict.values())  # type: ignore[return-value]

    def _parameters(self) -> list[torch.Tensor]:
        return [p for group in self.optimizer.param_groups for p in group["params"]]

    def run_step(self) -> None:
        if not self.model.training:
            raise RuntimeError(f"{type(self).__name__} needs the model in training mode")
        data, data_time = self._next_batch()
        if self.zero_grad_before_forward:
            self.optimizer.zero_grad()
        with self._forward_context():
            loss_dict = self.model(data)
            losses = self._sum_losses(loss_dict)
        if not self.zero_grad_before_forward:
            self.optimizer.zero_grad()
        self._backward_and_step(losses, loss_dict, data_time)

    def _forward_context(self) -> contextlib.AbstractContextManager:
        """Context of the forward pass (autocast in :class:`AMPTrainer`)."""
        return contextlib.nullcontext()

    def _backward_and_step(
        self, losses: torch.Tensor, loss_dict: Mapping[str, torch.Tensor], data_time: float
    ) -> None:
        losses.backward()
        self.after_backward()
        if self.grad_clipper is not None:
            self.grad_clipper(self._parameters())
        self._write_metrics(loss_dict, data_time)
        self.optimizer.step()

    def _write_metrics(
        self, loss_dict: Mapping[str, torch.Tensor] | torch.Tensor, data_time: float
    ) -> None:
        """Checks the losses are finite and records them (averaged over ranks)."""
        if isinstance(loss_dict, torch.Tensor):
            loss_dict = {"total_loss": loss_dict}
        metrics = {k: float(v.detach().float().cpu()) for k, v in loss_dict.items()}
        self._record_metrics(metrics, data_time, self.iter)

    @staticmethod
    def _record_metrics(metrics: dict[str, float], data_time: float, iteration: int) -> None:
        """Checks that the losses of ``iteration`` are finite and puts them, averaged over
        ranks, into the event storage at that iteration (with ``total_loss``, ``data_time``)."""
        # Checked on every rank, before gathering, so a bad rank stops instead of hanging
        # the others in a collective that will never complete.
        bad = [k for k, v in metrics.items() if not math.isfinite(v)]
        if bad:
            raise FloatingPointError(
                f"Loss became non-finite at iteration {iteration}: "
                + ", ".join(f"{k}={metrics[k]}" for k in bad)
                + f" (all losses: {metrics})"
            )
        metrics = {**metrics, "data_time": data_time}
        all_metrics = comm.gather(metrics)
        if comm.is_main_process():
            storage = get_event_storage()
            # data_time across ranks: the slowest rank is the one that stalls training.
            storage.put_scalar(
                "data_time", max(m.pop("data_time") for m in all_metrics), cur_iter=iteration
            )
            averaged = {
                k: sum(m[k] for m in all_metrics) / len(all_metrics) for k in all_metrics[0]
            }
            storage.put_scalar("total_loss", sum(averaged.values()), cur_iter=iteration)
            if len(averaged) > 1:
                storage.put_scalars(cur_iter=iteration, **averaged)

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["optimizer"] = self.optimizer.state_dict()
        return state

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self.optimizer.load_state_dict(state_dict["optimizer"])


_AMP_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16}


class AMPTrainer(SimpleTrainer):
    """:class:`SimpleTrainer` with automatic mixed precision on any device.

    float16 needs a gradient scaler and is supported on CUDA; bfloat16 has float32's range,
    needs no scaler and runs on CPU and CUDA (and XLA).

    Args:
        precision: ``torch.float16``/``torch.bfloat16`` or their names.
        grad_scaler: a ``torch.amp.GradScaler`` to use with float16 (one is created when
            None and the precision is float16).
        **kwargs: see :class:`SimpleTrainer`.
    """

    def __init__(
        self,
        model: nn.Module,
        data_loader: Iterable | None,
        optimizer: torch.optim.Optimizer,
        *,
        precision: torch.dtype | str = torch.bfloat16,
        grad_scaler: torch.amp.GradScaler | None = None,
        **kwargs,
    ) -> None:
        super().__init__(model, data_loader, optimizer, **kwargs)
        if isinstance(precision, str):
            if precision not in _AMP_DTYPES:
                raise ValueError(
                    f"Unknown AMP precision {precision!r}; use one of {sorted(_AMP_DTYPES)}"
                )
            precision = _AMP_DTYPES[precision]
        param = next(model.parameters(), None)
        self.device_type = param.device.type if param is not None else "cpu"
        if precision == torch.float16:
            if self.device_type != "cuda":
                raise ValueError(
                    f"float16 AMP needs a CUDA device (the model is on {self.device_type!r}); "
                    "use SOLVER.AMP.DTYPE bfloat16 on CPU and XLA"
                )
            if grad_scaler is None:
                grad_scaler = torch.amp.GradScaler("cuda")
        elif grad_scaler is not None:
            raise ValueError("A grad scaler is only used with float16 AMP")
        self.precision = precision
        self.grad_scaler = grad_scaler

    def _forward_context(self) -> contextlib.AbstractContextManager:
        return torch.autocast(device_type=self.device_type, dtype=self.precision)

    def _backward_and_step(
        self, losses: torch.Tensor, loss_dict: Mapping[str, torch.Tensor], data_time: float
    ) -> None:
        if self.grad_scaler is None:
            super()._backward_and_step(losses, loss_dict, data_time)
            return
        self.grad_scaler.scale(losses).backward()
        self.after_backward()
        if self.grad_clipper is not None:
            # Clip the true gradients, not the scaled ones.
            self.grad_scaler.unscale_(self.optimizer)
            self.grad_clipper(self._parameters())
        self._write_metrics(loss_dict, data_time)
        self.grad_scaler.step(self.optimizer)
        self.grad_scaler.update()

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        if self.grad_scaler is not None:
            state["grad_scaler"] = self.grad_scaler.state_dict()
        return state

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        super().load_state_dict(state_dict)
        if self.grad_scaler is not None and "grad_scaler" in state_dict:
            self.grad_scaler.load_state_dict(state_dict["grad_scaler"])

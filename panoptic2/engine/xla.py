"""DefaultTrainer on XLA devices (TPUs; XLA:CPU in tests) through torch_xla.

Importing this module imports torch_xla; :class:`~panoptic2.engine.DefaultTrainer` imports
it only for ``MODEL.DEVICE xla``. What differs from the eager loop:

* **Static shapes.** torch_xla traces each step into a graph and compiles it once per set of
  shapes, so training needs fixed-size inputs (``INPUT.CROP``, checked here) and a model
  without data-dependent shapes (Panoptic-DeepLab and the DeepLab plugin's models choose
  static-shape losses and resizing on XLA; box-based models are refused, see
  :func:`check_model`). Compilations and host fallbacks are counted every step; a
  compilation after ``SOLVER.XLA.WARMUP_ITERS`` iterations is logged as a warning.
* **One graph per iteration.** Batches are copied to the device in the background by
  torch_xla's ``ParallelLoader`` (closed, with the data loader's workers, when training
  ends); forward, backward, gradient clipping and the optimizer step are cut into one
  graph by one ``torch_xla.sync()``. Losses stay on the device and are fetched every
  ``LOG_PERIOD`` iterations, since each fetch waits for the device; their finiteness is
  checked then.
* **RNG.** XLA's dropout does not use torch's generator, and torch_xla advances its seed
  at every ``sync`` (the loader's included), so its running state depends on how a run
  was cut into graphs. Each iteration therefore seeds it from ``(run seed, iteration)``;
  the run seed is saved in checkpoints (``trainer/xla_rng_seed``), so a resumed run draws
  the same dropout masks as an uninterrupted one.
* **SPMD data parallel** (``SOLVER.XLA.SPMD``): one process drives every device of a 1-D
  mesh ``("data",)``. Each batch that :meth:`ImageList.from_tensors` builds during a step
  (images and targets) is sharded along its first dimension, parameters are replicated,
  and the XLA partitioner inserts the collectives: BatchNorm statistics and losses are
  global over the mesh, so an N-device run equals a 1-device run with the same batch.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
import torch_xla
import torch_xla.core.xla_model as xm
import torch_xla.debug.metrics as met
import torch_xla.distributed.spmd as xs
import torch_xla.runtime as xr
from torch import nn
from torch_xla.distributed.parallel_loader import ParallelLoader

from panoptic2.data.common import derive_seed
from panoptic2.structures.image_list import batch_layout
from panoptic2.utils import comm
from panoptic2.utils.events import get_event_storage

from .train_loop import HookBase, Priority, SimpleTrainer

__all__ = [
    "XLAMonitor",
    "XLATrainer",
    "build_trainer",
    "check_config",
    "check_model",
    "compilation_count",
    "enable_spmd",
    "fallback_counts",
    "materialize_optimizer_state",
    "prepare_runtime",
]

logger = logging.getLogger(__name__)

# Batches queued on the host and on the device by the ParallelLoader: enough to overlap the
# copy with the step, small enough not to hold many batches in device memory.
_HOST_PREFETCH = 4
_DEVICE_PREFETCH = 2
_MESH_AXIS = "data"


def compilation_count() -> int:
    """Graphs torch_xla has compiled in this process so far."""
    data = met.metric_data("CompileTime")
    return int(data[0]) if data else 0


def fallback_counts() -> dict[str, int]:
    """How often each ATen op ran on the host instead of the device, so far.

    Returns:
        ``{"aten::nonzero": 2, ...}`` from torch_xla's counters (empty: no fallback).
    """
    return {
        name: int(met.counter_value(name))
        for name in met.counter_names()
        if name.startswith("aten::")
    }


def enable_spmd() -> xs.Mesh:
    """Switches torch_xla to SPMD and returns the 1-D data mesh over all its devices.

    Must run before any XLA tensor exists (i.e. before the model is built).
    """
    xr.use_spmd()
    mesh = xs.get_1d_mesh(_MESH_AXIS)
    logger.info("XLA SPMD: a %s mesh over %d devices", _MESH_AXIS, mesh.size())
    return mesh


def check_config(cfg: Any, num_devices: int) -> None:
    """Raises ValueError for settings that XLA training cannot run with static shapes.

    Args:
        cfg: the config.
        num_devices: devices the batch is split over (1 without SPMD).
    """
    if not cfg.INPUT.CROP.ENABLED:
        raise ValueError(
            "XLA training compiles one graph per input size, so it needs fixed-size training "
            "inputs: set INPUT.CROP.ENABLED True and INPUT.CROP.SIZE (images smaller than the "
            "crop are padded to it)"
        )
    if cfg.SOLVER.AMP.ENABLED and cfg.SOLVER.AMP.DTYPE != "bfloat16":
        raise ValueError(
            f"SOLVER.AMP.DTYPE {cfg.SOLVER.AMP.DTYPE!r} is not supported on XLA: use bfloat16 "
            "(no gradient scaler needed)"
        )
    if comm.get_world_size() > 1:
        raise ValueError(
            "MODEL.DEVICE xla runs one process per host (found "
            f"{comm.get_world_size()} processes): use SOLVER.XLA.SPMD True for data parallel "
            "training over the host's devices, and --num-gpus 1"
        )
    if cfg.SOLVER.IMS_PER_BATCH % num_devices != 0:
        raise ValueError(
            f"SOLVER.IMS_PER_BATCH {cfg.SOLVER.IMS_PER_BATCH} must be divisible by the "
            f"{num_devices} devices of the SPMD mesh"
        )


def prepare_runtime(cfg: Any) -> xs.Mesh | None:
    """Checks ``cfg`` for XLA training and switches on SPMD when ``SOLVER.XLA.SPMD``.

    Call before the model is built (SPMD must be on before any XLA tensor exists).

    Returns:
        The data mesh under SPMD, else None.
    """
    mesh = enable_spmd() if cfg.SOLVER.XLA.SPMD else None
    check_config(cfg, 1 if mesh is None else int(mesh.size()))
    return mesh


def build_trainer(
    cfg: Any,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    *,
    grad_clipper: Callable[[Iterable[torch.Tensor]], Any] | None = None,
    mesh: xs.Mesh | None = None,
) -> XLATrainer:
    """The :class:`XLATrainer` of a config (``SOLVER.AMP``; XLA RNG seeded from the seed
    that ``default_setup`` gave torch).

    Raises:
        NotImplementedError: the model cannot train with static shapes.
    """
    check_model(model)
    precision = torch.bfloat16 if cfg.SOLVER.AMP.ENABLED else None
    device = next(model.parameters()).device
    return XLATrainer(
        model,
        None,
        optimizer,
        device=device,
        grad_clipper=grad_clipper,
        precision=precision,
        mesh=mesh,
        seed=torch.initial_seed() % 2**63,
    )


def materialize_optimizer_state(optimizer: torch.optim.Optimizer) -> bool:
    """Creates the state that Adam, AdamW and SGD with momentum create at their first step.

    Their first step otherwise traces a different graph (state created inside it) from all
    later ones (state read), i.e. one more compilation of the whole step. The state made
    here is what they would make: zero moments and a step count of 0 (Adam, AdamW), a zero
    momentum buffer (SGD, whose first update ``0 * momentum + grad`` then equals its own
    ``clone(grad)`` exactly because dampening must be 0). Other optimizers, and these with
    fused, capturable or differentiable options, keep their lazy state.

    Returns:
        Whether the state was created.
    """
    kind = type(optimizer)
    groups = optimizer.param_groups
    flags_off = all(not g.get(k) for g in groups for k in ("fused", "capturable", "differentiable"))
    step_dtype = torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32
    params = [p for g in groups for p in g["params"] if p.requires_grad]
    if kind in (torch.optim.Adam, torch.optim.AdamW) and flags_off:
        amsgrad = {p: bool(g.get("amsgrad")) for g in groups for p in g["params"]}
        for p in params:
            state = optimizer.state[p]
            if state:
                continue
            state["step"] = torch.tensor(0.0, dtype=step_dtype)
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            if amsgrad[p]:
                state["max_exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        return True
    if (
        kind is torch.optim.SGD
        and flags_off
        and all(g["momentum"] != 0 and g["dampening"] == 0 for g in groups)
    ):
        for p in params:
            optimizer.state[p].setdefault("momentum_buffer", torch.zeros_like(p))
        return True
    return False


def check_model(model: nn.Module) -> None:
    """Raises NotImplementedError when the model declares that it cannot train with static
    shapes (its ``dynamic_shape_reason`` attribute, e.g. two-stage detectors)."""
    reason = getattr(model, "dynamic_shape_reason", None)
    if reason:
        raise NotImplementedError(
            f"{type(model).__name__} cannot be trained on XLA devices: {reason}. Train it "
            "with MODEL.DEVICE cpu or cuda; on XLA, Panoptic-DeepLab and the DeepLab "
            "plugin's SemanticSegmentor train with static shapes."
        )


class XLATrainer(SimpleTrainer):
    """:class:`SimpleTrainer` for XLA devices: one graph per step, losses fetched lazily.

    Args:
        model: the model, already on the XLA device.
        data_loader: a loader of host batches (may be set later); batches are copied to
            ``device`` by a ``ParallelLoader``.
        optimizer: the optimizer.
        device: the XLA device (the virtual device of the mesh under SPMD).
        grad_clipper: as in :class:`SimpleTrainer`; it must not read values back (e.g.
            ``float(norm)``), which would split the step.
        precision: ``torch.bfloat16`` for mixed precision, or None.
        mesh: the SPMD mesh whose first axis shards every batch; None without SPMD.
        seed: run seed of the XLA RNG (dropout); iteration ``i`` uses a seed derived from
            ``(seed, i)``.
    """

    def __init__(
        self,
        model: nn.Module,
        data_loader: Iterable | None,
        optimizer: torch.optim.Optimizer,
        *,
        device: torch.device,
        grad_clipper: Callable[[Iterable[torch.Tensor]], Any] | None = None,
        precision: torch.dtype | None = None,
        mesh: xs.Mesh | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(model, data_loader, optimizer, grad_clipper=grad_clipper)
        if precision not in (None, torch.bfloat16):
            raise ValueError(f"XLA mixed precision supports bfloat16 only, got {precision}")
        self.device = device
        self.precision = precision
        self.mesh = mesh
        self._parallel_loader: ParallelLoader | None = None
        # (iteration, detached losses on the device, data time) not yet in the storage.
        self._pending: list[tuple[int, dict[str, torch.Tensor], float]] = []
        self.last_step_compilations = 0
        self.last_step_fallbacks: dict[str, int] = {}
        self.seed = int(seed)
        if materialize_optimizer_state(optimizer):
            torch_xla.sync()

    # -- data -----------------------------------------------------------------------------
    @property
    def _data_loader_iter(self):
        if self._data_loader_iter_obj is None:
            if self._data_loader is None:
                raise RuntimeError("The trainer has no data loader; set trainer.data_loader")
            self.close()
            # As in SimpleTrainer: creating the loader's iterator must not shift the RNG.
            with torch.random.fork_rng(devices=[]):
                self._parallel_loader = ParallelLoader(
                    self._data_loader,
                    [self.device],
                    loader_prefetch_size=_HOST_PREFETCH,
                    device_prefetch_size=_DEVICE_PREFETCH,
                )
                self._data_loader_iter_obj = self._parallel_loader.per_device_loader(self.device)
        return self._data_loader_iter_obj

    def close(self) -> None:
        """Stops the background copy threads and the data loader's worker processes."""
        if self._parallel_loader is None:
            return
        self._parallel_loader.close()
        self._parallel_loader = None
        self._data_loader_iter_obj = None
        # A persistent-worker DataLoader keeps its worker processes in `_iterator`; left
        # alive, they race the interpreter's shutdown (an abort at exit).
        iterator = getattr(self._data_loader, "_iterator", None)
        if iterator is not None and hasattr(iterator, "_shutdown_workers"):
            iterator._shutdown_workers()
            self._data_loader._iterator = None

    # -- step -----------------------------------------------------------------------------
    def _forward_context(self) -> contextlib.AbstractContextManager:
        # Entered after the batch is fetched (whose sync would advance the seed).
        xm.set_rng_state(derive_seed(self.seed, self.iter) % 2**63, str(self.device))
        stack = contextlib.ExitStack()
        if self.precision is not None:
            stack.enter_context(torch.autocast(device_type="xla", dtype=self.precision))
        if self.mesh is not None:
            stack.enter_context(batch_layout(self._shard_batch))
        return stack

    def _shard_batch(self, batch: torch.Tensor) -> torch.Tensor:
        xs.mark_sharding(batch, self.mesh, (_MESH_AXIS,) + (None,) * (batch.dim() - 1))
        return batch

    def run_step(self) -> None:
        compiled = compilation_count()
        fallbacks = fallback_counts()
        super().run_step()
        # Everything the step traced (forward, backward, clipping, optimizer update and the
        # detached losses) becomes one graph, compiled on the first iterations only.
        torch_xla.sync()
        self.last_step_compilations = compilation_count() - compiled
        after = fallback_counts()
        self.last_step_fallbacks = {
            k: v - fallbacks.get(k, 0) for k, v in after.items() if v > fallbacks.get(k, 0)
        }

    def _write_metrics(
        self, loss_dict: Mapping[str, torch.Tensor] | torch.Tensor, data_time: float
    ) -> None:
        # Reading a loss would execute the half-built graph; keep it for flush_metrics.
        if isinstance(loss_dict, torch.Tensor):
            loss_dict = {"total_loss": loss_dict}
        detached = {k: v.detach() for k, v in loss_dict.items()}
        self._pending.append((self.iter, detached, data_time))

    def flush_metrics(self) -> None:
        """Copies the pending losses to the host and records them at their iterations.

        Raises:
            FloatingPointError: a loss is not finite (names the first such iteration).
        """
        pending, self._pending = self._pending, []
        for iteration, losses, data_time in pending:
            values = {k: float(v.float().cpu()) for k, v in losses.items()}
            self._record_metrics(values, data_time, iteration)

    # -- checkpointed state ---------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["xla_rng_seed"] = self.seed
        return state

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        super().load_state_dict(state_dict)
        if "xla_rng_seed" in state_dict:
            self.seed = int(state_dict["xla_rng_seed"])
        else:
            logger.warning(
                "The checkpoint has no XLA RNG seed (written by a CPU/CUDA run): dropout "
                "masks come from this run's seed %d",
                self.seed,
            )


class XLAMonitor(HookBase):
    """Records the losses of an :class:`XLATrainer` every ``period`` iterations and reports
    XLA compilations and host fallbacks; closes the trainer's loader at the end.

    Runs after every other hook but the writers, so a checkpoint or evaluation in the same
    iteration does not wait for the losses. Records ``xla/compilations`` (graphs compiled
    during training steps so far) with the losses.

    Args:
        xla_trainer: the trainer running the steps.
        period: iterations between fetches (``LOG_PERIOD``).
        warmup_iters: iterations from the start of the run allowed to compile.
    """

    priority = Priority.VERY_LOW

    def __init__(self, xla_trainer: XLATrainer, period: int, warmup_iters: int = 3) -> None:
        self._xla_trainer = xla_trainer
        self._period = max(int(period), 1)
        self._warmup_iters = int(warmup_iters)
        self.step_compilations = 0
        self._window_compilations = 0
        self._window_fallbacks: dict[str, int] = {}

    def before_train(self) -> None:
        # Weights and optimizer state just loaded from a checkpoint are pending copies; made
        # device data here, they do not enter (and change) the first step's graph.
        torch_xla.sync()

    def after_step(self) -> None:
        inner = self._xla_trainer
        iteration = self.trainer.iter
        new = inner.last_step_compilations
        self.step_compilations += new
        self._window_compilations += new
        for op, count in inner.last_step_fallbacks.items():
            self._window_fallbacks[op] = self._window_fallbacks.get(op, 0) + count
        if new and iteration >= self.trainer.start_iter + self._warmup_iters:
            logger.warning(
                "XLA compiled %d graph(s) for iteration %d, after the %d warm-up iterations: "
                "an input shape or a value traced into the step changed (each change "
                "compiles and slows training)",
                new,
                iteration,
                self._warmup_iters,
            )
        next_iter = iteration + 1
        if next_iter % self._period == 0 or next_iter == self.trainer.max_iter:
            self._flush(iteration)

    def _flush(self, iteration: int) -> None:
        self._xla_trainer.flush_metrics()
        if comm.is_main_process():
            get_event_storage().put_scalar(
                "xla/compilations", self.step_compilations, smoothing_hint=False
            )
        fallbacks = ", ".join(f"{k} x{v}" for k, v in sorted(self._window_fallbacks.items()))
        logger.info(
            "XLA up to iteration %d: %d graph(s) compiled in the last steps (%d in all); host "
            "fallbacks: %s",
            iteration,
            self._window_compilations,
            self.step_compilations,
            fallbacks or "none",
        )
        self._window_compilations = 0
        self._window_fallbacks = {}

    def after_train(self) -> None:
        try:
            if self._xla_trainer._pending:
                self._xla_trainer.flush_metrics()
        finally:
            self._xla_trainer.close()

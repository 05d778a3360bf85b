"""The inference loop shared by ``--eval-only``, ``DefaultTrainer.test`` and the EvalHook."""

import datetime
import logging
import time
from collections.abc import Iterable
from contextlib import ExitStack, contextmanager
from typing import Any

import torch
from torch import nn

from panoptic2.utils import comm

from .evaluator import DatasetEvaluator, DatasetEvaluators

logger = logging.getLogger(__name__)


@contextmanager
def inference_context(model: nn.Module):
    """Puts ``model`` in eval mode for the block and restores its previous mode after."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _synchronize_device(model: nn.Module) -> None:
    # Timing an asynchronous device without a sync would only measure the kernel launches.
    param = next(iter(model.parameters()), None)
    if param is not None and param.device.type == "cuda":
        torch.cuda.synchronize(param.device)
    elif param is not None and param.device.type == "xla":
        # Runs the traced forward once and keeps its outputs on the device; otherwise every
        # evaluator read of an output would re-run the network. torch_xla is imported
        # already: the model lives on its device.
        import torch_xla

        torch_xla.sync(wait=True)


def _postprocess_time(model: nn.Module) -> float | None:
    """The model's ``last_postprocess_time`` (seconds of its last forward), if it reports one.

    Looks through wrappers such as DistributedDataParallel (``.module``).
    """
    for m in (model, getattr(model, "module", None)):
        value = getattr(m, "last_postprocess_time", None) if m is not None else None
        if value is not None:
            return float(value)
    return None


class _Timings:
    """Per-rank sums of the four phases, over the timed iterations."""

    PHASES = ("data", "network", "postprocess", "evaluator")

    def __init__(self) -> None:
        self.totals = dict.fromkeys(self.PHASES, 0.0)
        self.iters = 0
        self.images = 0
        self.postprocess_known = True  # False once a forward did not report it

    def add(self, data: float, compute: float, post: float | None, evaluator: float, n: int):
        if post is None:
            self.postprocess_known = False
            post = 0.0
        post = min(post, compute)  # a clock mismatch must not give negative network time
        self.totals["data"] += data
        self.totals["network"] += compute - post
        self.totals["postprocess"] += post
        self.totals["evaluator"] += evaluator
        self.iters += 1
        self.images += n

    def per_image(self) -> dict[str, float | None]:
        n = max(self.images, 1)
        out: dict[str, float | None] = {k: v / n for k, v in self.totals.items()}
        if not self.postprocess_known:
            out["postprocess"] = None
        return out

    def gathered(self) -> "_Timings":
        """Sums over all ranks (a collective: every rank calls it)."""
        merged = _Timings()
        for part in comm.all_gather((self.totals, self.iters, self.images, self.postprocess_known)):
            totals, iters, images, known = part
            for k in self.PHASES:
                merged.totals[k] += totals[k]
            merged.iters += iters
            merged.images += images
            merged.postprocess_known &= known
        return merged


def _fmt(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds:.4f} s"


def inference_on_dataset(
    model: nn.Module,
    data_loader: Iterable[list[dict]],
    evaluator: DatasetEvaluator | list[DatasetEvaluator] | None,
    *,
    log_period_s: float = 5.0,
    warmup_iters: int = 5,
) -> dict[str, Any]:
    """Runs ``model`` on every batch of ``data_loader`` and evaluates the outputs.

    The model runs in eval mode with gradients disabled. Each rank processes its own shard
    (the test loader's InferenceSampler); the evaluator gathers across ranks.

    Time is split into data loading, network, post-processing and evaluator. A model that
    sets ``last_postprocess_time`` (float seconds of its last forward, e.g. Panoptic-DeepLab's
    panoptic grouping) has it taken out of its forward time, which leaves the network time;
    for other models post-processing is counted in the network and reported as n/a. The
    final line averages per image over all ranks.

    Args:
        model: called as ``model(inputs) -> list[dict]``.
        data_loader: yields lists of dataset dicts (after the mapper).
        evaluator: one evaluator, a list of them, or None to only time inference.
        log_period_s: seconds between progress lines (with ETA).
        warmup_iters: iterations left out of the timing averages (allocation, autotuning);
            a loader of at most that many batches is timed whole.

    Returns:
        The evaluator's results (``{}`` on non-main ranks or without evaluator).
    """
    num_batches = len(data_loader)  # type: ignore[arg-type]
    if evaluator is None:
        evaluator = DatasetEvaluators([])
    elif isinstance(evaluator, (list, tuple)):
        evaluator = DatasetEvaluators(list(evaluator))
    evaluator.reset()

    timings = _Timings()
    start_time = time.perf_counter()
    last_log = start_time
    with ExitStack() as stack:
        stack.enter_context(inference_context(model))
        stack.enter_context(torch.no_grad())
        data_start = time.perf_counter()
        for idx, inputs in enumerate(data_loader):
            data_time = time.perf_counter() - data_start
            if idx == warmup_iters:
                start_time = time.perf_counter()
                timings = _Timings()
            compute_start = time.perf_counter()
            outputs = model(inputs)
            _synchronize_device(model)
            compute_time = time.perf_counter() - compute_start
            post_time = _postprocess_time(model)
            eval_start = time.perf_counter()
            evaluator.process(inputs, outputs)
            eval_time = time.perf_counter() - eval_start
            timings.add(data_time, compute_time, post_time, eval_time, len(inputs))

            now = time.perf_counter()
            if now - last_log > log_period_s or idx == num_batches - 1:
                per_iter = (now - start_time) / max(timings.iters, 1)
                eta = datetime.timedelta(seconds=int(per_iter * (num_batches - idx - 1)))
                avg = timings.per_image()
                logger.info(
                    "Inference done %d/%d. Per image: data %s, network %s, post-processing "
                    "%s, evaluator %s; total %.4f s/iter. ETA=%s",
                    idx + 1,
                    num_batches,
                    _fmt(avg["data"]),
                    _fmt(avg["network"]),
                    _fmt(avg["postprocess"]),
                    _fmt(avg["evaluator"]),
                    per_iter,
                    eta,
                )
                last_log = now
            data_start = time.perf_counter()

    total_time = time.perf_counter() - start_time
    overall = timings.gathered()
    avg = overall.per_image()
    logger.info(
        "Total inference time: %s (%d timed images over %d ranks). Per image: data loading "
        "%s, network %s, post-processing %s, evaluator %s",
        datetime.timedelta(seconds=int(total_time)),
        overall.images,
        comm.get_world_size(),
        _fmt(avg["data"]),
        _fmt(avg["network"]),
        _fmt(avg["postprocess"]),
        _fmt(avg["evaluator"]),
    )
    results = evaluator.evaluate()
    # An evaluator returns None on non-main ranks; callers index into the result.
    return results if results is not None else {}

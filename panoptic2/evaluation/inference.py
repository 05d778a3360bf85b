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

    Args:
        model: called as ``model(inputs) -> list[dict]``.
        data_loader: yields lists of dataset dicts (after the mapper).
        evaluator: one evaluator, a list of them, or None to only time inference.
        log_period_s: seconds between progress lines (with ETA).
        warmup_iters: iterations left out of the timing averages (allocation, autotuning).

    Returns:
        The evaluator's results (``{}`` on non-main ranks or without evaluator).
    """
    num_images = len(data_loader)  # type: ignore[arg-type]
    if evaluator is None:
        evaluator = DatasetEvaluators([])
    elif isinstance(evaluator, (list, tuple)):
        evaluator = DatasetEvaluators(list(evaluator))
    evaluator.reset()

    total_data_time = total_compute_time = total_eval_time = 0.0
    start_time = time.perf_counter()
    last_log = start_time
    timed_iters = 0
    with ExitStack() as stack:
        stack.enter_context(inference_context(model))
        stack.enter_context(torch.no_grad())
        data_start = time.perf_counter()
        for idx, inputs in enumerate(data_loader):
            data_time = time.perf_counter() - data_start
            if idx == warmup_iters:
                start_time = time.perf_counter()
                total_data_time = total_compute_time = total_eval_time = 0.0
                timed_iters = 0
            compute_start = time.perf_counter()
            outputs = model(inputs)
            _synchronize_device(model)
            compute_time = time.perf_counter() - compute_start
            eval_start = time.perf_counter()
            evaluator.process(inputs, outputs)
            eval_time = time.perf_counter() - eval_start

            total_data_time += data_time
            total_compute_time += compute_time
            total_eval_time += eval_time
            timed_iters += 1
            now = time.perf_counter()
            if now - last_log > log_period_s or idx == num_images - 1:
                per_iter = (now - start_time) / timed_iters
                eta = datetime.timedelta(seconds=int(per_iter * (num_images - idx - 1)))
                logger.info(
                    "Inference done %d/%d. data %.4f s/iter, model %.4f s/iter, "
                    "evaluator %.4f s/iter, total %.4f s/iter. ETA=%s",
                    idx + 1,
                    num_images,
                    total_data_time / timed_iters,
                    total_compute_time / timed_iters,
                    total_eval_time / timed_iters,
                    per_iter,
                    eta,
                )
                last_log = now
            data_start = time.perf_counter()

    total_time = time.perf_counter() - start_time
    logger.info(
        "Total inference time: %s (%.6f s/iter over %d timed iterations per rank, %d ranks); "
        "pure model time %.6f s/iter",
        datetime.timedelta(seconds=int(total_time)),
        total_time / max(timed_iters, 1),
        timed_iters,
        comm.get_world_size(),
        total_compute_time / max(timed_iters, 1),
    )
    results = evaluator.evaluate()
    # An evaluator returns None on non-main ranks; callers index into the result.
    return results if results is not None else {}

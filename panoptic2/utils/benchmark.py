"""Timing for benchmarks: warm-up calls, per-call wall times, medians, interleaved runs.

One protocol for ``tools/benchmark.py`` and the scripts in ``dev/bench``: each function is
called ``warmup`` times untimed (allocator, thread pools, lazy initialisation, autotuning),
then timed call by call with the device synchronised around each call, and summarised by
the median. Two implementations compared with each other run interleaved (A, B, B, A, ...)
so that drifts of the machine (other load, frequency scaling) hit both alike.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch

__all__ = ["TimingSummary", "interleaved_times", "synchronize", "time_calls"]


def synchronize(device: torch.device | str | None) -> None:
    """Waits for the work queued on ``device`` (CUDA, XLA); a no-op on the CPU or None."""
    if device is None:
        return
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "xla":
        import torch_xla  # the model already lives on an XLA device: it is installed

        torch_xla.sync(wait=True)


def _timed_call(fn: Callable[[], object], device: torch.device | str | None) -> float:
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


def time_calls(
    fn: Callable[[], object],
    *,
    iters: int,
    warmup: int = 1,
    device: torch.device | str | None = None,
) -> list[float]:
    """Wall time of each of ``iters`` calls of ``fn``, after ``warmup`` untimed calls.

    Args:
        fn: the work to time, called without arguments.
        iters: timed calls (>= 1).
        warmup: untimed calls before them (>= 0).
        device: synchronised before and after each timed call (None: nothing to wait for).

    Returns:
        ``iters`` durations in seconds, in call order.
    """
    if iters < 1 or warmup < 0:
        raise ValueError(f"time_calls needs iters >= 1 and warmup >= 0, got {iters}, {warmup}")
    for _ in range(warmup):
        fn()
    return [_timed_call(fn, device) for _ in range(iters)]


def interleaved_times(
    fns: Mapping[str, Callable[[], object]],
    *,
    rounds: int,
    warmup: int = 1,
    device: torch.device | str | None = None,
) -> dict[str, list[float]]:
    """Times several functions against each other, alternating between them.

    Each function is first called ``warmup`` times; then every round calls each function
    once, the order reversed every other round (A B, B A, A B, ...) so that none always runs
    right after the same other one.

    Args:
        fns: name -> function called without arguments.
        rounds: timed calls of each function (>= 1).
        warmup: untimed calls of each function first (>= 0).
        device: synchronised around each timed call.

    Returns:
        name -> ``rounds`` durations in seconds.
    """
    if rounds < 1 or warmup < 0:
        raise ValueError(
            f"interleaved_times needs rounds >= 1 and warmup >= 0, got {rounds}, {warmup}"
        )
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for i in range(rounds):
        for name in names if i % 2 == 0 else reversed(names):
            times[name].append(_timed_call(fns[name], device))
    return times


@dataclass(frozen=True)
class TimingSummary:
    """Statistics of a list of durations (seconds).

    Attributes:
        median: the median duration, the figure benchmarks report.
        mean: the mean duration.
        min: the shortest duration.
        max: the longest duration.
        count: how many durations.
    """

    median: float
    mean: float
    min: float
    max: float
    count: int

    @classmethod
    def of(cls, times: list[float]) -> TimingSummary:
        """Summarises ``times`` (at least one)."""
        if not times:
            raise ValueError("TimingSummary.of needs at least one duration")
        return cls(
            median=statistics.median(times),
            mean=statistics.fmean(times),
            min=min(times),
            max=max(times),
            count=len(times),
        )

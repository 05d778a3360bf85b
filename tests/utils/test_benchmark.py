"""Tests of panoptic2.utils.benchmark: warm-up, per-call times, interleaving, summaries."""

from __future__ import annotations

import statistics

import pytest

from panoptic2.utils import benchmark
from panoptic2.utils.benchmark import TimingSummary, interleaved_times, time_calls


class FakeClock:
    """``time.perf_counter`` stand-in: only the functions under test advance it."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def work(self, seconds: float, log: list | None = None, name: str = ""):
        def fn() -> None:
            self.now += seconds
            if log is not None:
                log.append(name)

        return fn


@pytest.fixture
def clock(monkeypatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(benchmark.time, "perf_counter", fake)
    return fake


def test_time_calls_excludes_warmup(clock):
    durations = iter([5.0, 7.0, 1.0, 2.0, 3.0])  # two warm-up calls, then three timed
    calls = []

    def fn() -> None:
        calls.append(1)
        clock.now += next(durations)

    assert time_calls(fn, iters=3, warmup=2) == [1.0, 2.0, 3.0]
    assert len(calls) == 5


def test_interleaved_times_alternates_order_and_attributes_times(clock):
    log: list[str] = []
    times = interleaved_times(
        {"a": clock.work(1.0, log, "a"), "b": clock.work(2.0, log, "b")}, rounds=3, warmup=1
    )
    # Warm-up a, b; then rounds a b | b a | a b.
    assert log == ["a", "b", "a", "b", "b", "a", "a", "b"]
    assert times == {"a": [1.0, 1.0, 1.0], "b": [2.0, 2.0, 2.0]}


@pytest.mark.parametrize("kwargs", [{"iters": 0}, {"iters": 1, "warmup": -1}])
def test_time_calls_rejects_bad_counts(kwargs):
    with pytest.raises(ValueError, match="iters"):
        time_calls(lambda: None, **kwargs)


def test_timing_summary_matches_statistics():
    times = [3.0, 1.0, 2.0, 10.0]
    summary = TimingSummary.of(times)
    assert summary.median == statistics.median(times) == 2.5
    assert summary.mean == 4.0
    assert (summary.min, summary.max, summary.count) == (1.0, 10.0, 4)
    with pytest.raises(ValueError, match="at least one"):
        TimingSummary.of([])


def test_synchronize_cpu_is_a_no_op():
    benchmark.synchronize(None)
    benchmark.synchronize("cpu")

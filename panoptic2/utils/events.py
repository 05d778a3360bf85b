"""Training metrics: an :class:`EventStorage` that collects them, writers that output them.

The train loop opens ``with EventStorage(start_iter) as storage:``; any code below it calls
``get_event_storage().put_scalar("loss_x", value)``; hooks call the writers'
:meth:`EventWriter.write` every few iterations.
"""

from __future__ import annotations

import datetime
import json
import logging
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from fvcore.common.history_buffer import HistoryBuffer

from .file_io import PathManager, atomic_write

__all__ = [
    "CommonMetricPrinter",
    "EventStorage",
    "EventWriter",
    "JSONWriter",
    "TensorboardXWriter",
    "get_event_storage",
]

_CURRENT_STORAGE_STACK: list[EventStorage] = []


def get_event_storage() -> EventStorage:
    """Returns the innermost active :class:`EventStorage`.

    Raises:
        RuntimeError: when called outside ``with EventStorage(...)``.
    """
    if not _CURRENT_STORAGE_STACK:
        raise RuntimeError(
            "get_event_storage() has to be called inside a 'with EventStorage(...)' block."
        )
    return _CURRENT_STORAGE_STACK[-1]


class EventStorage:
    """Per-iteration scalars (with history), images and histograms of a training run.

    Args:
        start_iter: the iteration number of the first step (e.g. when resuming).
    """

    def __init__(self, start_iter: int = 0) -> None:
        self._history: dict[str, HistoryBuffer] = defaultdict(HistoryBuffer)
        self._smoothing_hints: dict[str, bool] = {}
        self._latest_scalars: dict[str, tuple[float, int]] = {}
        self._iter = int(start_iter)
        self._current_prefix = ""
        self._vis_data: list[tuple[str, torch.Tensor, int]] = []
        self._histograms: list[dict[str, Any]] = []

    def put_image(self, img_name: str, img_tensor: torch.Tensor) -> None:
        """Stores an image to be written by :class:`TensorboardXWriter`.

        Args:
            img_name: tag of the image.
            img_tensor: float tensor of shape (3, H, W), values in [0, 1], RGB.
        """
        self._vis_data.append((img_name, img_tensor, self._iter))

    def put_scalar(
        self,
        name: str,
        value: float | torch.Tensor,
        smoothing_hint: bool = True,
        cur_iter: int | None = None,
    ) -> None:
        """Adds a scalar to the history of ``name``.

        Args:
            name: scalar name (prefixed by the active :meth:`name_scope`).
            value: a number or a one-element tensor.
            smoothing_hint: whether writers should show the median over a window
                instead of the latest value (e.g. True for noisy losses, False for an
                evaluation metric). Must be the same for every call with ``name``.
            cur_iter: iteration the value belongs to; default: the current iteration.

        Raises:
            ValueError: if ``smoothing_hint`` differs from an earlier call for ``name``.
        """
        name = self._current_prefix + name
        cur_iter = self._iter if cur_iter is None else int(cur_iter)
        value = float(value)
        self._history[name].update(value, cur_iter)
        self._latest_scalars[name] = (value, cur_iter)
        existing = self._smoothing_hints.get(name)
        if existing is None:
            self._smoothing_hints[name] = smoothing_hint
        elif existing != smoothing_hint:
            raise ValueError(
                f"Scalar {name!r} was put with smoothing_hint={existing} before, "
                f"now with {smoothing_hint}."
            )

    def put_scalars(
        self, *, smoothing_hint: bool = True, cur_iter: int | None = None, **kwargs: Any
    ) -> None:
        """Adds several scalars: ``storage.put_scalars(loss_a=0.1, loss_b=0.2)``."""
        for name, value in kwargs.items():
            self.put_scalar(name, value, smoothing_hint=smoothing_hint, cur_iter=cur_iter)

    def put_histogram(self, hist_name: str, hist_tensor: torch.Tensor, bins: int = 1000) -> None:
        """Stores a histogram of the values of a tensor for :class:`TensorboardXWriter`.

        Args:
            hist_name: tag of the histogram.
            hist_tensor: tensor of any shape; its values are binned.
            bins: number of bins.
        """
        values = hist_tensor.detach().float().flatten().cpu()
        if values.numel() == 0:
            raise ValueError(f"put_histogram({hist_name!r}) got an empty tensor.")
        lo, hi = values.min().item(), values.max().item()
        counts = torch.histc(values, bins=bins, min=lo, max=hi)
        edges = torch.linspace(lo, hi, steps=bins + 1)
        self._histograms.append(
            {
                "tag": hist_name,
                "min": lo,
                "max": hi,
                "num": values.numel(),
                "sum": values.sum().item(),
                "sum_squares": (values**2).sum().item(),
                "bucket_limits": edges[1:].tolist(),
                "bucket_counts": counts.tolist(),
                "global_step": self._iter,
            }
        )

    def history(self, name: str) -> HistoryBuffer:
        """Returns the :class:`HistoryBuffer` of scalar ``name``.

        Raises:
            KeyError: if no scalar ``name`` was put.
        """
        if name not in self._history:
            raise KeyError(f"No history for scalar {name!r}; known: {sorted(self._history)}.")
        return self._history[name]

    def histories(self) -> dict[str, HistoryBuffer]:
        """Returns the history buffers of all scalars, in insertion order."""
        return dict(self._history)

    def latest(self) -> dict[str, tuple[float, int]]:
        """Returns ``{name: (latest value, iteration it was put at)}``."""
        return dict(self._latest_scalars)

    def latest_with_smoothing_hint(self, window_size: int = 20) -> dict[str, tuple[float, int]]:
        """Like :meth:`latest`, but scalars put with ``smoothing_hint=True`` are replaced
        by the median of their last ``window_size`` values."""
        result = {}
        for name, (value, itr) in self._latest_scalars.items():
            if self._smoothing_hints[name]:
                value = float(self._history[name].median(window_size))
            result[name] = (value, itr)
        return result

    def smoothing_hints(self) -> dict[str, bool]:
        """Returns ``{name: smoothing_hint}`` of all scalars."""
        return dict(self._smoothing_hints)

    def step(self) -> None:
        """Advances the iteration counter by one (the trainer calls it per iteration)."""
        self._iter += 1

    @property
    def iter(self) -> int:
        """The current iteration; settable (the trainer sets it at each step)."""
        return self._iter

    @iter.setter
    def iter(self, value: int) -> None:
        self._iter = int(value)

    @property
    def iteration(self) -> int:
        """Alias of :attr:`iter` (Detectron2 compatibility)."""
        return self._iter

    def __enter__(self) -> EventStorage:
        _CURRENT_STORAGE_STACK.append(self)
        return self

    def __exit__(self, exc_type, exc_val, exc_tb) -> None:
        if not _CURRENT_STORAGE_STACK or _CURRENT_STORAGE_STACK[-1] is not self:
            raise RuntimeError("EventStorage contexts were exited out of order.")
        _CURRENT_STORAGE_STACK.pop()

    @contextmanager
    def name_scope(self, name: str) -> Iterator[None]:
        """Prefixes every scalar put inside the block with ``name + "/"``."""
        old_prefix = self._current_prefix
        self._current_prefix = name.rstrip("/") + "/"
        try:
            yield
        finally:
            self._current_prefix = old_prefix

    def clear_images(self) -> None:
        """Drops the stored images (writers call it once they wrote them)."""
        self._vis_data = []

    def clear_histograms(self) -> None:
        """Drops the stored histograms (writers call it once they wrote them)."""
        self._histograms = []


class EventWriter:
    """Base class of writers that output the content of the current :class:`EventStorage`."""

    def write(self) -> None:
        """Writes what is new in ``get_event_storage()``."""
        raise NotImplementedError

    def close(self) -> None:
        """Releases files and other resources."""


class JSONWriter(EventWriter):
    """Appends one JSON object per iteration to a file (the "metrics.json" format).

    Each line holds ``"iteration"`` and the scalars put at that iteration (smoothed where
    hinted); only iterations newer than the last write are written. The file is an
    append-only log (so a crash keeps every line written before it), not rewritten
    atomically; each line is flushed when written. It is opened at the first write, so a
    resumed run can first drop the records its interrupted predecessor wrote after the
    checkpoint (:meth:`drop_records_after`).

    Args:
        json_file: path of the file; appended to if it exists.
        window_size: median window for scalars with ``smoothing_hint=True``.
    """

    def __init__(self, json_file: str, window_size: int = 20) -> None:
        self._json_file = json_file
        self._file_handle: Any = None
        self._window_size = window_size
        self._last_write = -1

    @staticmethod
    def drop_records_after(json_file: str, iteration: int) -> int:
        """Removes the records of iterations after ``iteration`` from a local metrics file.

        A run killed after its last checkpoint has logged iterations that the resumed run
        logs again; dropping them first keeps one record per iteration. Records without an
        integer ``"iteration"`` (evaluation-only results) are kept; a line that is not JSON
        (cut short by the kill) is dropped. The file is replaced atomically, so call this
        before any writer has it open.

        Args:
            json_file: the file; a missing file is left missing.
            iteration: the last iteration whose records stay.

        Returns:
            The number of lines dropped.
        """
        try:
            with open(json_file, encoding="utf-8") as f:
                lines = f.read().splitlines()
        except FileNotFoundError:
            return 0
        kept = []
        for line in lines:
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                continue
            itr = record.get("iteration") if isinstance(record, dict) else None
            if isinstance(itr, int) and not isinstance(itr, bool) and itr > iteration:
                continue
            kept.append(line)
        dropped = sum(1 for line in lines if line.strip()) - len(kept)
        if dropped:
            text = "".join(line + "\n" for line in kept)
            atomic_write(json_file, lambda f: f.write(text.encode("utf-8")))
        return dropped

    def write(self) -> None:
        storage = get_event_storage()
        to_save: dict[int, dict[str, float]] = defaultdict(dict)
        for name, (value, itr) in storage.latest_with_smoothing_hint(self._window_size).items():
            if itr > self._last_write:
                to_save[itr][name] = value
        if not to_save:
            return
        if self._file_handle is None:
            self._file_handle = PathManager.open(self._json_file, "a")
        for itr in sorted(to_save):
            line = {"iteration": itr, **to_save[itr]}
            self._file_handle.write(json.dumps(line, sort_keys=True) + "\n")
        self._file_handle.flush()
        self._last_write = max(to_save)

    def close(self) -> None:
        if self._file_handle is not None:
            self._file_handle.close()
            self._file_handle = None


class TensorboardXWriter(EventWriter):
    """Writes scalars, images and histograms to TensorBoard event files.

    Args:
        log_dir: directory of the event files.
        window_size: median window for scalars with ``smoothing_hint=True``.
        **kwargs: passed to ``torch.utils.tensorboard.SummaryWriter``.
    """

    def __init__(self, log_dir: str, window_size: int = 20, **kwargs: Any) -> None:
        # Imported here: tensorboard is only needed by runs that use this writer.
        from torch.utils.tensorboard import SummaryWriter

        self._window_size = window_size
        self._writer = SummaryWriter(log_dir, **kwargs)
        self._last_write = -1

    def write(self) -> None:
        storage = get_event_storage()
        new_last_write = self._last_write
        for name, (value, itr) in storage.latest_with_smoothing_hint(self._window_size).items():
            if itr > self._last_write:
                self._writer.add_scalar(name, value, itr)
                new_last_write = max(new_last_write, itr)
        self._last_write = new_last_write
        for img_name, img, step in storage._vis_data:
            self._writer.add_image(img_name, img, step)
        storage.clear_images()
        for params in storage._histograms:
            self._writer.add_histogram_raw(**params)
        storage.clear_histograms()
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


class CommonMetricPrinter(EventWriter):
    """Logs one line of the usual metrics: ETA, iteration, losses, times, lr, memory.

    Expects the trainer to put ``time`` and ``data_time`` (seconds per iteration) and
    ``lr``; any scalar whose name contains ``"loss"`` is printed as the median over the
    window. The ETA is the median ``time`` of the last 1000 iterations times the number of
    iterations left; it is also put into the storage as ``eta_seconds``.

    Args:
        max_iter: total number of iterations of the run.
        window_size: median/average window.
    """

    def __init__(self, max_iter: int, window_size: int = 20) -> None:
        self.logger = logging.getLogger(__name__)
        self._max_iter = max_iter
        self._window_size = window_size
        # (iteration, wall time) of the previous write, for an ETA without "time".
        self._last_write: tuple[int, float] | None = None

    def _get_eta(self, storage: EventStorage) -> str | None:
        if self._max_iter is None:
            return None
        iteration = storage.iter
        try:
            sec_per_iter = storage.history("time").median(1000)
        except KeyError:
            sec_per_iter = None
        if sec_per_iter is None:
            # No "time" scalar: estimate from the wall time between two writes.
            now = time.perf_counter()
            eta = None
            if self._last_write is not None and iteration > self._last_write[0]:
                sec_per_iter = (now - self._last_write[1]) / (iteration - self._last_write[0])
                eta = str(
                    datetime.timedelta(seconds=int(sec_per_iter * (self._max_iter - iteration - 1)))
                )
            self._last_write = (iteration, now)
            return eta
        eta_seconds = sec_per_iter * (self._max_iter - iteration - 1)
        storage.put_scalar("eta_seconds", eta_seconds, smoothing_hint=False)
        return str(datetime.timedelta(seconds=int(eta_seconds)))

    def write(self) -> None:
        storage = get_event_storage()
        iteration = storage.iter
        if iteration == self._max_iter:
            # Hooks may write once more after the loop ends; times would be wrong then.
            return
        histories = storage.histories()

        def _fmt(name: str, fmt: str, how: str) -> str:
            if name not in histories:
                return ""
            hist = histories[name]
            value = hist.avg(self._window_size) if how == "avg" else hist.latest()
            return f"{name if how == 'avg' else 'last_' + name}: {value:{fmt}}  "

        eta = self._get_eta(storage)
        loss_names = [k for k in histories if "loss" in k]
        # total_loss first, the others in the order they were put.
        loss_names.sort(key=lambda k: k != "total_loss")
        losses = "  ".join(f"{k}: {histories[k].median(self._window_size):.4g}" for k in loss_names)
        times = _fmt("time", ".4f", "avg") + _fmt("time", ".4f", "last")
        data_times = _fmt("data_time", ".4f", "avg") + _fmt("data_time", ".4f", "last")
        lr = f"lr: {histories['lr'].latest():.5g}  " if "lr" in histories else "lr: N/A  "
        # Only query CUDA when it is there: no CUDA calls (or initialisation) on CPU runs.
        if torch.cuda.is_available():
            max_mem = f"max_mem: {torch.cuda.max_memory_allocated() / 1024.0 / 1024.0:.0f}M"
        else:
            max_mem = ""
        line = (
            (f"eta: {eta}  " if eta else "")
            + f"iter: {iteration}  "
            + (losses + "  " if losses else "")
            + times
            + data_times
            + lr
            + max_mem
        )
        self.logger.info(line.rstrip())

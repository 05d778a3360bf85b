"""The evaluator interface: per-batch ``process``, one cross-rank gather, one ``compute``.

An evaluator accumulates this rank's state in :meth:`DatasetEvaluator.process` (keep the
per-image work there, while inference still runs), hands it over in
:meth:`DatasetEvaluator.state`, and computes the metrics from every rank's state in
:meth:`DatasetEvaluator.compute_metrics`. :meth:`DatasetEvaluator.evaluate`, which the
inference loop calls, is the one place where states cross ranks: it gathers them on the main
process, which computes the metrics; the other ranks return ``{}``.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from panoptic2.utils import comm

__all__ = ["DatasetEvaluator", "DatasetEvaluators"]


class DatasetEvaluator:
    """Accumulates model outputs over a dataset and turns them into metrics.

    Subclasses implement :meth:`reset`, :meth:`process`, :meth:`state` and
    :meth:`compute_metrics`. (Overriding :meth:`evaluate` itself, as Detectron2 evaluators
    do, also works; such an evaluator then gathers across ranks itself.)
    """

    def reset(self) -> None:
        """Prepares for a new round of evaluation."""

    def process(self, inputs: list[dict], outputs: list[dict]) -> None:
        """Consumes one batch.

        Args:
            inputs: the model's inputs (dataset dicts after the mapper).
            outputs: the model's outputs, one dict per input.
        """

    def state(self) -> Any:
        """This rank's accumulated state, sent to the main process (must be picklable)."""
        return None

    def compute_metrics(self, states: list[Any]) -> dict[str, Any]:
        """Metrics from the states of all ranks (main process only).

        Args:
            states: :meth:`state` of every rank, in rank order.

        Returns:
            ``{task: {metric: value}}``, e.g. ``{"panoptic_seg": {"PQ": 61.2}}``.
        """
        return {}

    def evaluate(self) -> dict[str, Any] | None:
        """Gathers every rank's :meth:`state` and computes the metrics on the main process.

        Returns:
            The metrics on the main process, ``{}`` on the others.
        """
        states = comm.gather(self.state(), dst=0)
        if not comm.is_main_process():
            return {}
        return self.compute_metrics(states)


class DatasetEvaluators(DatasetEvaluator):
    """Runs several evaluators on the same outputs and merges their results."""

    def __init__(self, evaluators: list[DatasetEvaluator]):
        super().__init__()
        self._evaluators = list(evaluators)

    def reset(self) -> None:
        for evaluator in self._evaluators:
            evaluator.reset()

    def process(self, inputs: list[dict], outputs: list[dict]) -> None:
        for evaluator in self._evaluators:
            evaluator.process(inputs, outputs)

    def evaluate(self) -> dict[str, Any]:
        results: dict[str, Any] = OrderedDict()
        for evaluator in self._evaluators:
            result = evaluator.evaluate()
            for task, metrics in (result or {}).items():
                if task in results:
                    raise KeyError(
                        f"Two evaluators returned results for the same task {task!r}: "
                        f"{type(evaluator).__name__} and an earlier one"
                    )
                results[task] = metrics
        return results

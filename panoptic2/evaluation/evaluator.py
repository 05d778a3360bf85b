"""The evaluator interface: per-batch ``process`` and one-shot ``evaluate``."""

from collections import OrderedDict
from typing import Any


class DatasetEvaluator:
    """Accumulates model outputs over a dataset and turns them into metrics.

    ``process`` runs on every rank for its own images (keep per-image work there, while
    inference still runs); ``evaluate`` gathers across ranks and computes the metrics on the
    main process. Non-main processes return None or an empty dict from ``evaluate``.
    """

    def reset(self) -> None:
        """Prepares for a new round of evaluation."""

    def process(self, inputs: list[dict], outputs: list[dict]) -> None:
        """Consumes one batch.

        Args:
            inputs: the model's inputs (dataset dicts after the mapper).
            outputs: the model's outputs, one dict per input.
        """

    def evaluate(self) -> dict[str, Any] | None:
        """Returns metrics as ``{task: {metric: value}}``, e.g. ``{"panoptic_seg": {"PQ": 61.2}}``."""
        return {}


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

"""Evaluator registry: the evaluated dataset's metadata names its evaluators.

A dataset declares ``MetadataCatalog.get(name).set(evaluators=["COCOPanopticEvaluator"])``;
:func:`build_evaluator` builds each registered name for that dataset. Custom datasets and
plugins bring their own evaluators by registering them, with no change to ``train_net.py``.
"""

import difflib

from fvcore.common.registry import Registry

from .evaluator import DatasetEvaluator, DatasetEvaluators

EVALUATOR_REGISTRY = Registry("EVALUATOR")
EVALUATOR_REGISTRY.__doc__ = """
Evaluators, called as ``obj(cfg, dataset_name, output_dir)`` and returning a
:class:`DatasetEvaluator`. A dataset lists the names to use in its ``evaluators`` metadata.
"""


def build_evaluator(cfg, dataset_name: str, output_dir: str | None = None) -> DatasetEvaluator:
    """Builds the evaluators listed in the metadata of ``dataset_name``.

    Args:
        cfg: the config.
        dataset_name: a name registered in ``DatasetCatalog``.
        output_dir: where evaluators may write predictions (visible to all ranks).

    Returns:
        One evaluator, or a :class:`DatasetEvaluators` combining several.
    """
    from panoptic2.data import MetadataCatalog  # data imports evaluation-free modules only

    names = MetadataCatalog.get(dataset_name).get("evaluators", None)
    registered = sorted(name for name, _ in EVALUATOR_REGISTRY)
    if not names:
        raise KeyError(
            f"Dataset {dataset_name!r} names no evaluators: set "
            f"MetadataCatalog.get({dataset_name!r}).set(evaluators=[...]) with names from "
            f"EVALUATOR_REGISTRY: {registered}"
        )
    if isinstance(names, str):
        names = [names]
    evaluators = []
    for name in names:
        if name not in EVALUATOR_REGISTRY:
            close = difflib.get_close_matches(name, registered, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise KeyError(
                f"Evaluator {name!r} (from the metadata of dataset {dataset_name!r}) is not "
                f"registered in EVALUATOR_REGISTRY; registered: {registered}.{hint}"
            )
        evaluators.append(EVALUATOR_REGISTRY.get(name)(cfg, dataset_name, output_dir))
    return evaluators[0] if len(evaluators) == 1 else DatasetEvaluators(evaluators)

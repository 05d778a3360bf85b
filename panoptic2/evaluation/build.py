"""Evaluator registry: the evaluated dataset's metadata names its evaluators.

A dataset declares ``MetadataCatalog.get(name).set(evaluators=["COCOPanopticEvaluator"])``;
:func:`build_evaluator` builds each registered name for that dataset. Custom datasets and
plugins bring their own evaluators by registering them, with no change to ``train_net.py``.
"""

from panoptic2.registry import EVALUATOR_REGISTRY

from .evaluator import DatasetEvaluator, DatasetEvaluators


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
    if not names:
        raise KeyError(
            f"Dataset {dataset_name!r} names no evaluators: set "
            f"MetadataCatalog.get({dataset_name!r}).set(evaluators=[...]) with names from "
            f"EVALUATOR_REGISTRY: {EVALUATOR_REGISTRY.names()}"
        )
    if isinstance(names, str):
        names = [names]
    evaluators = [EVALUATOR_REGISTRY.get(name)(cfg, dataset_name, output_dir) for name in names]
    return evaluators[0] if len(evaluators) == 1 else DatasetEvaluators(evaluators)

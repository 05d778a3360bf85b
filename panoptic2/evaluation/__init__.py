"""Evaluators, their registry and the inference loop.

The public names below are imported on first access (module ``__getattr__``), so that
``panoptic2.evaluation.panoptic_quality`` (and ``tools/evaluate_panoptic.py``) can be used
without importing torch, pycocotools or cityscapesscripts. The builtin evaluators register
themselves in ``EVALUATOR_REGISTRY`` when their modules are imported, which the registry does
on its first search (its ``locations`` in :mod:`panoptic2.registry`), so building an evaluator
by name never depends on what was imported before.
"""

from __future__ import annotations

import importlib
from typing import Any

# public name -> the submodule that defines it
_SOURCES = {
    "EVALUATOR_REGISTRY": "build",
    "build_evaluator": "build",
    "CityscapesInstanceEvaluator": "cityscapes_evaluation",
    "CityscapesPanopticEvaluator": "cityscapes_evaluation",
    "CityscapesSemSegEvaluator": "cityscapes_evaluation",
    "COCOEvaluator": "coco_evaluation",
    "COCOPanopticEvaluator": "coco_panoptic_evaluation",
    "DatasetEvaluator": "evaluator",
    "DatasetEvaluators": "evaluator",
    "inference_context": "inference",
    "inference_on_dataset": "inference",
    "PQStat": "panoptic_quality",
    "format_pq_tables": "panoptic_quality",
    "pq_compute": "panoptic_quality",
    "pq_stat_single_image": "panoptic_quality",
    "SemSegEvaluator": "sem_seg_evaluation",
}

__all__ = [
    "EVALUATOR_REGISTRY",
    "COCOEvaluator",
    "COCOPanopticEvaluator",
    "CityscapesInstanceEvaluator",
    "CityscapesPanopticEvaluator",
    "CityscapesSemSegEvaluator",
    "DatasetEvaluator",
    "DatasetEvaluators",
    "PQStat",
    "SemSegEvaluator",
    "build_evaluator",
    "format_pq_tables",
    "inference_context",
    "inference_on_dataset",
    "pq_compute",
    "pq_stat_single_image",
]


def __getattr__(name: str) -> Any:
    if name not in _SOURCES:
        raise AttributeError(f"module 'panoptic2.evaluation' has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_SOURCES[name]}"), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))

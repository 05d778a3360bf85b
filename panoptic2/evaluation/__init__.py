"""Evaluators, their registry and the inference loop.

Importing this package registers every builtin evaluator in ``EVALUATOR_REGISTRY``.
"""

from .build import EVALUATOR_REGISTRY, build_evaluator
from .cityscapes_evaluation import (
    CityscapesInstanceEvaluator,
    CityscapesPanopticEvaluator,
    CityscapesSemSegEvaluator,
)
from .coco_evaluation import COCOEvaluator
from .coco_panoptic_evaluation import COCOPanopticEvaluator
from .evaluator import DatasetEvaluator, DatasetEvaluators
from .inference import inference_context, inference_on_dataset
from .panoptic_quality import PQStat, format_pq_tables, pq_compute, pq_stat_single_image
from .sem_seg_evaluation import SemSegEvaluator

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

"""Evaluators, their registry and the inference loop."""

from .build import EVALUATOR_REGISTRY, build_evaluator
from .evaluator import DatasetEvaluator, DatasetEvaluators
from .inference import inference_context, inference_on_dataset

__all__ = [
    "EVALUATOR_REGISTRY",
    "DatasetEvaluator",
    "DatasetEvaluators",
    "build_evaluator",
    "inference_context",
    "inference_on_dataset",
]

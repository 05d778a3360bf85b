"""Training and inference: the loop, hooks, DefaultTrainer, DefaultPredictor, launch."""

from .defaults import (
    DefaultTrainer,
    create_ddp_model,
    default_argument_parser,
    default_setup,
    default_writers,
    save_eval_results,
)
from .hooks import HOOK_REGISTRY
from .launch import launch
from .predictor import DefaultPredictor
from .train_loop import AMPTrainer, HookBase, Priority, SimpleTrainer, TrainerBase

__all__ = [
    "HOOK_REGISTRY",
    "AMPTrainer",
    "DefaultPredictor",
    "DefaultTrainer",
    "HookBase",
    "Priority",
    "SimpleTrainer",
    "TrainerBase",
    "create_ddp_model",
    "default_argument_parser",
    "default_setup",
    "default_writers",
    "launch",
    "save_eval_results",
]

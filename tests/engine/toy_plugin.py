"""Test-only hooks, plus the toy plugin they run with.

Loaded with ``--plugin tests.engine.toy_plugin``; importing it also imports
``panoptic2.testing.toy`` (toy dataset, model, evaluator), so spawned workers get both.
"""

import json
import os
import time

import panoptic2.testing.toy  # noqa: F401  (registers the toy dataset, model, evaluator)
from panoptic2.engine import HOOK_REGISTRY, HookBase, Priority
from panoptic2.utils import comm


@HOOK_REGISTRY.register()
class LossRecorder(HookBase):
    """Writes every iteration's total loss to OUTPUT_DIR/losses.json at the end."""

    priority = Priority.LOWEST

    def __init__(self, cfg, trainer):
        self.output_dir = cfg.OUTPUT_DIR

    def after_train(self):
        if comm.is_main_process():
            history = self.trainer.storage.history("total_loss").values()
            with open(os.path.join(self.output_dir, "losses.json"), "w") as f:
                json.dump([[it, v] for v, it in history], f)


@HOOK_REGISTRY.register()
class BlockAfterIteration(HookBase):
    """Simulates a hung/crashing job: after iteration N (env PANOPTIC2_TEST_BLOCK_AFTER)
    writes OUTPUT_DIR/blocked and sleeps until the test kills the process."""

    priority = Priority.LOWEST

    def __init__(self, cfg, trainer):
        self.output_dir = cfg.OUTPUT_DIR
        self.block_after = int(os.environ.get("PANOPTIC2_TEST_BLOCK_AFTER", "-1"))

    def after_step(self):
        if self.trainer.iter == self.block_after:
            with open(os.path.join(self.output_dir, "blocked"), "w") as f:
                f.write(str(self.trainer.iter))
            while True:
                time.sleep(1)


def toy_overrides(output_dir, **extra) -> list[str]:
    """Config overrides of a small, deterministic toy run."""
    opts = {
        "MODEL.META_ARCHITECTURE": "ToyClassifier",
        "MODEL.DEVICE": "cpu",
        "DATASETS.TRAIN": "[toy_train]",
        "DATASETS.TEST": "[toy_val]",
        "SOLVER.IMS_PER_BATCH": 8,
        "SOLVER.BASE_LR": 0.1,
        "SOLVER.WEIGHT_DECAY": 0.0,
        "SOLVER.MAX_ITER": 200,
        "SOLVER.CHECKPOINT_PERIOD": 100,
        "DATALOADER.NUM_WORKERS": 0,
        "SEED": 7,
        "LOG_PERIOD": 20,
        "OUTPUT_DIR": output_dir,
        "HOOKS.CUSTOM": "[LossRecorder]",
    }
    opts.update(extra)
    out = []
    for k, v in opts.items():
        out += [k, str(v)]
    return out

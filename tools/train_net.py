#!/usr/bin/env python
"""Trains or evaluates a model described by a config file.

    python tools/train_net.py --config-file configs/shapes/panoptic_deeplab_R18_os16.yaml
    python tools/train_net.py --config-file CFG --num-gpus 2 SOLVER.IMS_PER_BATCH 16
    python tools/train_net.py --config-file CFG --eval-only MODEL.WEIGHTS out/model_final.pth
    python tools/train_net.py --config-file CFG --eval-only --allow-partial-weights  # random init
    python tools/train_net.py --config-file CFG --resume            # continue OUTPUT_DIR
    python tools/train_net.py --config-file CFG --resume ckpt.pth   # continue from a file

Everything (model, data, evaluators, hooks) is built through registries from the config;
a custom dataset or model is brought in with ``--plugin MODULE`` or the ``PLUGINS`` key.
Without GPUs, ``--num-gpus N`` runs N CPU processes (gloo). Collectives fail after
``DIST_TIMEOUT_S`` seconds (``DIST_TIMEOUT_S 120`` on the command line), naming the ranks
that did not answer.
"""

import logging
import sys
from datetime import timedelta
from pathlib import Path

# The repository root, so that plugins living in it (``projects.DeepLab.deeplab``) import
# when this script is run by path; spawned workers inherit sys.path.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from panoptic2.checkpoint import Checkpointer, require_loaded_weights
from panoptic2.config import load_config
from panoptic2.engine import DefaultTrainer, default_argument_parser, default_setup, launch

logger = logging.getLogger("panoptic2.train_net")

_HOW_TO_ALLOW_PARTIAL = (
    "Set MODEL.WEIGHTS to the checkpoint of this model, or pass --allow-partial-weights "
    "(or MODEL.ALLOW_PARTIAL_WEIGHTS True) to evaluate it anyway."
)


def _overrides(args) -> list[str]:
    """The command line's config overrides; ``--allow-partial-weights`` is one of them."""
    flags = ["MODEL.ALLOW_PARTIAL_WEIGHTS=True"] if args.allow_partial_weights else []
    return [*args.opts, *flags]


def setup(args):
    """Loads the config (with plugins and overrides) and prepares the run."""
    cfg = load_config(
        args.config_file or None,
        _overrides(args),
        plugins=args.plugin,
        allowed_plugins=args.allow_plugin,
        config_format=args.config_format,
    )
    default_setup(cfg, args)
    return cfg


def main(args):
    cfg = setup(args)
    if args.eval_only:
        model = DefaultTrainer.build_model(cfg)
        # Evaluation only reads: it neither saves nor clears a training run's temp files.
        checkpointer = Checkpointer(
            model,
            save_dir=cfg.OUTPUT_DIR,
            save_to_disk=False,
            allow_partial_weights=cfg.MODEL.ALLOW_PARTIAL_WEIGHTS,
        )
        checkpointer.resume_or_load(cfg.MODEL.WEIGHTS, resume=args.resume)
        if not cfg.MODEL.ALLOW_PARTIAL_WEIGHTS:
            # Metrics of a model whose weights did not load describe a random model.
            require_loaded_weights(
                checkpointer.last_load_report, how_to_allow=_HOW_TO_ALLOW_PARTIAL
            )
        return DefaultTrainer.test(cfg, model)
    trainer = DefaultTrainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()


def cli(argv=None):
    args = default_argument_parser().parse_args(argv)
    # The process group (and its timeout) exists before the workers load the config, so the
    # launcher reads DIST_TIMEOUT_S itself; a bad config also fails here, before any spawn.
    cfg = load_config(
        args.config_file or None,
        _overrides(args),
        plugins=args.plugin,
        allowed_plugins=args.allow_plugin,
        config_format=args.config_format,
    )
    return launch(
        main,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
        timeout=timedelta(seconds=cfg.DIST_TIMEOUT_S),
    )


if __name__ == "__main__":
    cli()

#!/usr/bin/env python
"""Trains or evaluates a model described by a config file.

    python tools/train_net.py --config-file configs/shapes/panoptic_deeplab_R18_os16.yaml
    python tools/train_net.py --config-file CFG --num-gpus 2 SOLVER.IMS_PER_BATCH 16
    python tools/train_net.py --config-file CFG --eval-only MODEL.WEIGHTS out/model_final.pth
    python tools/train_net.py --config-file CFG --resume            # continue OUTPUT_DIR
    python tools/train_net.py --config-file CFG --resume ckpt.pth   # continue from a file

Everything (model, data, evaluators, hooks) is built through registries from the config;
a custom dataset or model is brought in with ``--plugin MODULE`` or the ``PLUGINS`` key.
Without GPUs, ``--num-gpus N`` runs N CPU processes (gloo).
"""

import logging
import sys
from pathlib import Path

# The repository root, so that plugins living in it (``projects.DeepLab.deeplab``) import
# when this script is run by path; spawned workers inherit sys.path.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from panoptic2.checkpoint import Checkpointer
from panoptic2.config import load_config
from panoptic2.engine import DefaultTrainer, default_argument_parser, default_setup, launch

logger = logging.getLogger("panoptic2.train_net")


def setup(args):
    """Loads the config (with plugins and overrides) and prepares the run."""
    cfg = load_config(args.config_file or None, args.opts, plugins=args.plugin)
    default_setup(cfg, args)
    return cfg


def main(args):
    cfg = setup(args)
    if args.eval_only:
        model = DefaultTrainer.build_model(cfg)
        Checkpointer(model, save_dir=cfg.OUTPUT_DIR).resume_or_load(
            cfg.MODEL.WEIGHTS, resume=args.resume
        )
        return DefaultTrainer.test(cfg, model)
    trainer = DefaultTrainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()


def cli(argv=None):
    args = default_argument_parser().parse_args(argv)
    return launch(
        main,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
    )


if __name__ == "__main__":
    cli()

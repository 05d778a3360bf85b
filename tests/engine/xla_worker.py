"""One training run of a shapes config in a fresh process, for test_xla.py.

    python tests/engine/xla_worker.py OUTPUT_JSON OUTPUT_DIR DEVICE MAX_ITER [--spmd]
        [--dropout P] [--amp-clip] [--checkpoint-period N] [--stop-after K] [--resume]
        [--config FILE] [KEY VALUE ...]

The config is the shapes Panoptic-DeepLab unless ``--config`` names another (the DeepLab
plugin's shapes DeepLabV3+ is the other one used).

XLA needs a fresh process per run: its runtime (device count, SPMD mode) is fixed when the
first XLA tensor is made. The run writes OUTPUT_JSON: per-iteration losses, and for XLA the
compilations and host fallbacks of each iteration, measured from torch_xla's own metrics
around the whole iteration (step and hooks), the dtype of the semantic classifier's output
and the sharding of the image batch the backbone receives. ``--stop-after K`` ends the process abruptly
(``os._exit``) after iteration K, as a kill would. The shapes config is trained with
crops of 96 x 128 and batches of 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

CONFIG = REPO / "configs" / "shapes" / "panoptic_deeplab_R18_os32.yaml"


# The ASPP dropout keys of each meta-architecture the worker trains.
_DROPOUT_KEYS = {
    "PanopticDeepLab": ("MODEL.SEM_SEG_HEAD.ASPP_DROPOUT", "MODEL.INS_EMBED_HEAD.ASPP_DROPOUT"),
    "SemanticSegmentor": ("MODEL.DEEPLAB.ASPP_DROPOUT",),
}


def _overrides(args: argparse.Namespace, meta_arch: str) -> list[str]:
    dropout = [v for key in _DROPOUT_KEYS[meta_arch] for v in (key, str(args.dropout))]
    return [
        "MODEL.DEVICE",
        args.device,
        "SOLVER.MAX_ITER",
        str(args.max_iter),
        "SOLVER.IMS_PER_BATCH",
        "2",
        "INPUT.CROP.SIZE",
        "[96, 128]",
        *dropout,
        "DATALOADER.NUM_WORKERS",
        "0",
        "DATASETS.TEST",
        "[]",
        "LOG_PERIOD",
        "5",
        "SOLVER.CHECKPOINT_PERIOD",
        str(args.checkpoint_period),
        "SOLVER.XLA.SPMD",
        str(args.spmd),
        "SOLVER.AMP.ENABLED",
        str(args.amp_clip),
        "SOLVER.CLIP_GRADIENTS.ENABLED",
        str(args.amp_clip),
        "OUTPUT_DIR",
        args.output_dir,
        *args.opts,
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("output_json")
    parser.add_argument("output_dir")
    parser.add_argument("device", choices=["cpu", "xla"])
    parser.add_argument("max_iter", type=int)
    parser.add_argument("--spmd", action="store_true")
    parser.add_argument("--dropout", type=float, default=0.0)
    parser.add_argument("--amp-clip", action="store_true", help="bfloat16 AMP, clipping")
    parser.add_argument("--checkpoint-period", type=int, default=100000)
    parser.add_argument("--stop-after", type=int, default=-1)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--config", default=str(CONFIG))
    args, args.opts = parser.parse_known_args()

    from panoptic2.config import load_config
    from panoptic2.engine import DefaultTrainer, default_setup
    from panoptic2.engine.hooks import CallbackHook
    from panoptic2.engine.train_loop import Priority

    meta_arch = load_config(args.config).MODEL.META_ARCHITECTURE
    cfg = load_config(args.config, _overrides(args, meta_arch))
    default_setup(cfg)
    trainer = DefaultTrainer(cfg)
    trainer.resume_or_load(resume=args.resume)

    per_iter: dict[int, dict] = {}
    seen: dict[str, str] = {}

    def record_images(module, inputs) -> None:
        if args.device == "xla":
            import torch_xla

            seen["images_sharding"] = torch_xla._XLAC._get_xla_sharding_spec(inputs[0])

    def record_logits(module, inputs, output) -> None:
        seen["logits_dtype"] = str(output.dtype)

    trainer.model.backbone.register_forward_pre_hook(record_images)
    # A convolution without a norm after it: its output dtype shows autocast at work.
    trainer.model.sem_seg_head.predictor.register_forward_hook(record_logits)
    extra_hooks = []
    if args.device == "xla":
        import torch_xla.debug.metrics as met

        def counts() -> tuple[int, dict[str, int]]:
            compiled = met.metric_data("CompileTime")
            fallbacks = {
                n: int(met.counter_value(n)) for n in met.counter_names() if n.startswith("aten::")
            }
            return (int(compiled[0]) if compiled else 0), fallbacks

        start: dict[str, tuple[int, dict[str, int]]] = {}

        def before(t) -> None:
            start["at"] = counts()

        def after(t) -> None:
            compiled0, fallbacks0 = start["at"]
            compiled1, fallbacks1 = counts()
            per_iter[t.iter] = {
                "compilations": compiled1 - compiled0,
                "fallbacks": {
                    k: v - fallbacks0.get(k, 0)
                    for k, v in fallbacks1.items()
                    if v != fallbacks0.get(k, 0)
                },
            }

        # HIGHEST runs first in before_step; the measurement closes after every other hook.
        extra_hooks.append(
            CallbackHook(name="FirstXLACounter", priority=Priority.HIGHEST, before_step=before)
        )
        extra_hooks.append(
            CallbackHook(name="LastXLACounter", priority=Priority.LOWEST + 1, after_step=after)
        )
    if args.stop_after >= 0:

        def stop(t) -> None:
            if t.iter == args.stop_after:
                sys.stdout.flush()
                os._exit(17)

        extra_hooks.append(CallbackHook(name="Kill", priority=Priority.LOWEST + 2, after_step=stop))
    trainer.register_hooks(extra_hooks)
    trainer.train()

    histories = trainer.storage.histories()
    losses = {
        name: [[it, value] for value, it in histories[name].values()]
        for name in ("total_loss", "loss_sem_seg", "loss_center", "loss_offset")
        if name in histories
    }
    result = {"losses": losses, "per_iter": {str(k): v for k, v in per_iter.items()}, **seen}
    if args.device == "xla":
        import torch_xla.runtime as xr

        result["num_devices"] = xr.global_runtime_device_count()
        result["spmd"] = xr.is_spmd()
    with open(args.output_json, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""Measures the speed of a config's data loader, training step, inference or post-processing.

    python tools/benchmark.py --config-file CFG --task data         # training loader images/s
    python tools/benchmark.py --config-file CFG --task train        # iterations/s, images/s
    python tools/benchmark.py --config-file CFG --task eval MODEL.WEIGHTS model_final.pth
    python tools/benchmark.py --config-file CFG --task postprocess MODEL.WEIGHTS W.pth
    python tools/benchmark.py ... --num-iter 50 --warmup 5 --json out.json [KEY VALUE ...]

Tasks (one process, on ``MODEL.DEVICE``):

* ``data``: the training loader as ``train_net.py`` builds it (mapper, augmentations,
  ``DATALOADER.NUM_WORKERS`` workers, batches of ``SOLVER.IMS_PER_BATCH``). After
  ``--warmup`` batches (workers starting, first prefetches), ``--num-iter`` batches are
  timed; images/s is the images of those batches over their total time (batches arrive in
  bursts from prefetching workers, so the total, not a median, is the loader's rate).
* ``train``: the step of :class:`~panoptic2.engine.DefaultTrainer` built from the config
  (its model, optimizer, AMP, gradient clipping; ``MODEL.WEIGHTS`` loaded) on batches of the
  config's training loader, read before timing and cycled, so loading is not measured.
* ``eval``: inference (network + post-processing) in eval mode without gradients on the
  batches of the first test set's loader, read before timing and cycled; the evaluator is
  not run. A model that reports ``last_postprocess_time`` (Panoptic-DeepLab) has its
  post-processing share printed.
* ``postprocess``: only the post-processing of a model that separates it from its network
  (``predict_maps`` + ``postprocess``, as Panoptic-DeepLab): the network runs once on each
  test batch, then the post-processing is timed on the stored outputs.

Every timed call is synchronised with the device. ``train``, ``eval`` and ``postprocess``
report the median of the per-iteration times (``--warmup`` untimed iterations first). The
results are printed as a table and as one JSON line, and written to ``--json`` if given.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

# The repository root, so that plugins living in it (``projects.DeepLab.deeplab``) import
# when this script is run by path.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
from tabulate import tabulate

from panoptic2.checkpoint import Checkpointer
from panoptic2.config import CfgNode, load_config
from panoptic2.engine import DefaultTrainer
from panoptic2.utils.benchmark import TimingSummary, time_calls
from panoptic2.utils.events import EventStorage
from panoptic2.utils.file_io import atomic_write
from panoptic2.utils.logger import setup_logger

logger = logging.getLogger("panoptic2.benchmark")

TASKS = ("data", "train", "eval", "postprocess")


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser (exposed for tests and ``--help``)."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config-file", default="", metavar="FILE", help="path to a config file")
    parser.add_argument("--task", choices=TASKS, required=True, help="what to measure")
    parser.add_argument("--num-iter", type=int, default=20, help="timed iterations (batches)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed iterations first")
    parser.add_argument(
        "--cache-batches",
        type=int,
        default=20,
        help="train/eval/postprocess: batches read before timing and cycled (at most "
        "warmup + num-iter are read)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch CPU threads (torch.set_num_threads; 0: torch's default). On a machine "
        "shared with other work, 1 gives steadier figures",
    )
    parser.add_argument("--json", default="", metavar="FILE", help="also write the results here")
    parser.add_argument(
        "--config-format",
        choices=("auto", "panoptic2", "detectron2"),
        default="auto",
        help="read --config-file as Detectron2's or panoptic2's config (see train_net.py)",
    )
    parser.add_argument(
        "--plugin",
        action="append",
        default=[],
        metavar="MODULE",
        help="module to import first (registers datasets, models); repeatable",
    )
    parser.add_argument(
        "--allow-plugin",
        action="append",
        default=[],
        metavar="MODULE",
        help="let the config file's PLUGINS import MODULE from outside the trusted directories",
    )
    parser.add_argument(
        "opts",
        nargs=argparse.REMAINDER,
        default=[],
        help="config overrides: KEY VALUE pairs or KEY=VALUE items",
    )
    return parser


def _cycle(batches: list[Any]) -> Callable[[], Any]:
    """A function returning the batches one after another, starting over at the end."""
    stream = itertools.cycle(batches)
    return lambda: next(stream)


def _first_batches(loader, count: int, what: str) -> list[Any]:
    batches = list(itertools.islice(loader, count))
    if not batches:
        raise ValueError(f"The {what} loader gave no batch")
    return batches


def _load_weights(cfg: CfgNode, model: torch.nn.Module) -> None:
    if not cfg.MODEL.WEIGHTS:
        logger.warning(
            "No MODEL.WEIGHTS: timing a randomly initialised model; the post-processing of "
            "a trained model (how many instances survive) can cost differently"
        )
    Checkpointer(model, allow_partial_weights=cfg.MODEL.ALLOW_PARTIAL_WEIGHTS).load(
        cfg.MODEL.WEIGHTS
    )


def _test_batches(cfg: CfgNode, count: int) -> list[Any]:
    if not cfg.DATASETS.TEST:
        raise ValueError("--task eval/postprocess needs a test set: DATASETS.TEST is empty")
    loader = DefaultTrainer.build_test_loader(cfg, cfg.DATASETS.TEST[0])
    return _first_batches(loader, count, f"test ({cfg.DATASETS.TEST[0]})")


def _rates(times: list[float], images: list[int]) -> dict[str, Any]:
    """Per-iteration medians and the rates derived from them."""
    summary = TimingSummary.of(times)
    per_batch = sum(images) / len(images)
    return {
        "iterations": summary.count,
        "images_per_batch": per_batch,
        "median_s_per_iter": summary.median,
        "mean_s_per_iter": summary.mean,
        "min_s_per_iter": summary.min,
        "max_s_per_iter": summary.max,
        "iters_per_s": 1.0 / summary.median,
        "images_per_s": per_batch / summary.median,
    }


def benchmark_data(cfg: CfgNode, args: argparse.Namespace) -> dict[str, Any]:
    """Images/s of the training loader (see the module doc)."""
    loader = DefaultTrainer.build_train_loader(cfg)
    stream = iter(loader)  # its workers stop when it is freed, on return
    images: list[int] = []

    def read() -> None:
        images.append(len(next(stream)))

    # Warm-up batches are timed too, then dropped: the total below must cover only the
    # timed window, and the first batches' wait (workers starting) is what warm-up excludes.
    times = time_calls(read, iters=args.num_iter + args.warmup, warmup=0)
    times, images = times[args.warmup :], images[args.warmup :]
    result = _rates(times, images)
    result["images_per_s"] = sum(images) / sum(times)
    result["num_workers"] = cfg.DATALOADER.NUM_WORKERS
    return result


def benchmark_train(cfg: CfgNode, args: argparse.Namespace) -> dict[str, Any]:
    """Training iterations/s and images/s on cached batches (see the module doc)."""
    with tempfile.TemporaryDirectory(prefix="benchmark_") as output_dir:
        # The trainer's hooks and writers are built, not run: keep their files out of the
        # config's OUTPUT_DIR.
        cfg = cfg.clone()
        cfg.defrost()
        cfg.OUTPUT_DIR = output_dir
        cfg.freeze()
        trainer = DefaultTrainer(cfg)
        trainer.resume_or_load(resume=False)
        count = min(args.cache_batches, args.warmup + args.num_iter)
        batches = _first_batches(DefaultTrainer.build_train_loader(cfg), count, "training")
        trainer.data_loader = itertools.cycle(batches)
        sizes = itertools.cycle([len(b) for b in batches])
        images: list[int] = []

        def step() -> None:
            trainer.storage.iter = trainer.iter
            trainer.run_step()
            images.append(next(sizes))
            trainer.iter += 1

        with EventStorage(0) as trainer.storage:
            times = time_calls(
                step, iters=args.num_iter, warmup=args.warmup, device=cfg.MODEL.DEVICE
            )
        result = _rates(times, images[args.warmup :])
    result["cached_batches"] = len(batches)
    return result


def benchmark_eval(cfg: CfgNode, args: argparse.Namespace) -> dict[str, Any]:
    """Inference images/s, network and post-processing (see the module doc)."""
    model = DefaultTrainer.build_model(cfg)
    _load_weights(cfg, model)
    model.eval()
    batches = _test_batches(cfg, min(args.cache_batches, args.warmup + args.num_iter))
    next_batch = _cycle(batches)
    images: list[int] = []
    post: list[float] = []

    def infer() -> None:
        inputs = next_batch()
        model(inputs)
        images.append(len(inputs))
        post.append(getattr(model, "last_postprocess_time", float("nan")))

    with torch.no_grad():
        times = time_calls(infer, iters=args.num_iter, warmup=args.warmup, device=cfg.MODEL.DEVICE)
    post = post[args.warmup :]
    result = _rates(times, images[args.warmup :])
    result["cached_batches"] = len(batches)
    if hasattr(model, "last_postprocess_time"):
        result["postprocess_share"] = sum(post) / sum(times)
    return result


def benchmark_postprocess(cfg: CfgNode, args: argparse.Namespace) -> dict[str, Any]:
    """Post-processing images/s on stored network outputs (see the module doc)."""
    model = DefaultTrainer.build_model(cfg)
    if not (hasattr(model, "predict_maps") and hasattr(model, "postprocess")):
        raise ValueError(
            f"--task postprocess needs a model whose post-processing runs apart from its "
            f"network (methods predict_maps and postprocess, as PanopticDeepLab); "
            f"{cfg.MODEL.META_ARCHITECTURE} has none: use --task eval"
        )
    _load_weights(cfg, model)
    model.eval()
    batches = _test_batches(cfg, min(args.cache_batches, args.warmup + args.num_iter))
    with torch.no_grad():
        stored = [(inputs, model.predict_maps(inputs)) for inputs in batches]
    next_item = _cycle(stored)
    images: list[int] = []

    def postprocess() -> None:
        inputs, maps = next_item()
        model.postprocess(inputs, *maps)
        images.append(len(inputs))

    with torch.no_grad():
        times = time_calls(
            postprocess, iters=args.num_iter, warmup=args.warmup, device=cfg.MODEL.DEVICE
        )
    result = _rates(times, images[args.warmup :])
    result["cached_batches"] = len(batches)
    return result


_RUNNERS = {
    "data": benchmark_data,
    "train": benchmark_train,
    "eval": benchmark_eval,
    "postprocess": benchmark_postprocess,
}


def _print(result: dict[str, Any]) -> None:
    rows = [[k, v] for k, v in result.items()]
    print(tabulate(rows, headers=["", "value"], tablefmt="pipe", floatfmt=".4g"))
    print(json.dumps(result, sort_keys=True))


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Runs the tool.

    Args:
        argv: command-line arguments (``sys.argv[1:]`` when None).

    Returns:
        The results: the task, the config, median/mean/min/max seconds per iteration,
        iterations/s and images/s, and per-task details.
    """
    args = build_parser().parse_args(argv)
    if args.num_iter < 1 or args.warmup < 0 or args.cache_batches < 1:
        raise SystemExit("--num-iter and --cache-batches must be >= 1, --warmup >= 0")
    cfg = load_config(
        args.config_file or None,
        args.opts,
        plugins=args.plugin,
        allowed_plugins=args.allow_plugin,
        config_format=args.config_format,
    )
    if not logging.getLogger("panoptic2").isEnabledFor(logging.INFO):
        setup_logger()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    logger.info("Benchmarking --task %s of %s", args.task, args.config_file or "the defaults")
    result = {
        "task": args.task,
        "config_file": args.config_file,
        "warmup": args.warmup,
        "threads": torch.get_num_threads(),
    }
    result.update(_RUNNERS[args.task](cfg, args))
    _print(result)
    if args.json:
        text = json.dumps(result, indent=2, sort_keys=True)
        atomic_write(args.json, lambda f: f.write(text.encode("utf-8")))
    return result


if __name__ == "__main__":
    main()

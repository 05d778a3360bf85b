"""What a standard training script needs: argument parser, setup, and DefaultTrainer.

``DefaultTrainer`` builds model, optimizer, scheduler, loaders, evaluators and hooks from a
config through overridable ``build_*`` class methods. Users who need something else
subclass it and override one method, or write their own loop on :class:`SimpleTrainer`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import weakref
from collections import OrderedDict
from collections.abc import Mapping
from functools import partial
from typing import Any

import torch
from tabulate import tabulate
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from panoptic2.checkpoint import Checkpointer
from panoptic2.checkpoint import PeriodicCheckpointer as PeriodicCheckpointSaver
from panoptic2.compat.detectron2_config import load_detectron2_tree
from panoptic2.config import CfgNode
from panoptic2.data import build_dataset_mapper, build_test_loader, build_train_loader
from panoptic2.data.label_space import label_space_of_datasets
from panoptic2.data.loader_position import train_loader_position
from panoptic2.evaluation import (
    DatasetEvaluator,
    DatasetEvaluators,
    build_evaluator,
    inference_on_dataset,
)
from panoptic2.evaluation.report import EvaluationReport
from panoptic2.evaluation.tensorboard_images import TensorBoardImages
from panoptic2.modeling import build_model
from panoptic2.solver import build_lr_scheduler, build_optimizer, clip_gradients
from panoptic2.utils import comm
from panoptic2.utils.collect_env import collect_env_info
from panoptic2.utils.env import get_rng_states, seed_all_rng, set_deterministic, set_rng_states
from panoptic2.utils.events import CommonMetricPrinter, JSONWriter, TensorboardXWriter
from panoptic2.utils.file_io import atomic_write
from panoptic2.utils.logger import setup_logger
from panoptic2.utils.xla import is_xla_device_name

from . import hooks
from .train_loop import AMPTrainer, HookBase, SimpleTrainer, TrainerBase

__all__ = [
    "DefaultTrainer",
    "create_ddp_model",
    "default_argument_parser",
    "default_setup",
    "default_writers",
    "save_eval_results",
]

logger = logging.getLogger(__name__)


# A config key such as SOLVER.BASE_LR or SEED=3: what follows a bare --resume on a command
# line like `--resume SOLVER.MAX_ITER 100`.
_CONFIG_KEY_PATTERN = re.compile(r"^[A-Z][A-Z0-9_]*(\.[A-Z0-9_]+)*(=.*)?$")


class _ArgumentParser(argparse.ArgumentParser):
    """Keeps ``--resume`` (optional value) from swallowing the first config override."""

    def parse_known_args(self, args=None, namespace=None):
        parsed, extra = super().parse_known_args(args, namespace)
        resume = getattr(parsed, "resume", None)
        if (
            isinstance(resume, str)
            and _CONFIG_KEY_PATTERN.match(resume)
            and not os.path.exists(resume)
        ):
            parsed.opts = [resume, *parsed.opts]
            parsed.resume = True
        return parsed, extra


def default_argument_parser(epilog: str | None = None) -> argparse.ArgumentParser:
    """The command-line interface shared by the training tools (Detectron2's flags).

    Trailing ``KEY VALUE`` pairs or ``KEY=VALUE`` items override config keys. ``--resume``
    alone resumes from ``OUTPUT_DIR/last_checkpoint``; ``--resume PATH`` from that file.
    """
    parser = _ArgumentParser(
        epilog=epilog or "Example: train_net.py --config-file cfg.yaml SOLVER.BASE_LR 0.01",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config-file", default="", metavar="FILE", help="path to a config file")
    parser.add_argument(
        "--config-format",
        choices=("auto", "panoptic2", "detectron2"),
        default="auto",
        help="read --config-file and the overrides as a Detectron2 config (translated key by "
        "key, see docs/migrating_from_detectron2.md) or as panoptic2's; auto: Detectron2's "
        "when its _BASE_ chain sets VERSION: 2",
    )
    parser.add_argument(
        "--resume",
        nargs="?",
        const=True,
        default=False,
        metavar="CHECKPOINT",
        help="resume from OUTPUT_DIR/last_checkpoint, or from the checkpoint file given",
    )
    parser.add_argument("--eval-only", action="store_true", help="only evaluate MODEL.WEIGHTS")
    parser.add_argument(
        "--num-gpus",
        type=int,
        default=1,
        help="processes per machine: one per GPU, or CPU processes (gloo) without GPUs",
    )
    parser.add_argument("--num-machines", type=int, default=1, help="total number of machines")
    parser.add_argument("--machine-rank", type=int, default=0, help="rank of this machine")
    parser.add_argument(
        "--dist-url",
        default="auto",
        help="init URL of the process group, e.g. tcp://host:port; 'auto' picks a free "
        "local port (single machine only)",
    )
    parser.add_argument(
        "--plugin",
        action="append",
        default=[],
        metavar="MODULE",
        help="module to import in every process (registers datasets/models); repeatable",
    )
    parser.add_argument(
        "--allow-plugin",
        action="append",
        default=[],
        metavar="MODULE",
        help="let the config file's PLUGINS import MODULE (or a module in package MODULE) "
        "from outside the trusted directories; repeatable",
    )
    parser.add_argument(
        "--allow-partial-weights",
        action="store_true",
        help="accept weights that leave part of the model at its initialisation: a whole-model "
        "checkpoint that does not fill every tensor loads with a warning, and --eval-only "
        "evaluates even when no weights, or under 90%% of the model's, loaded (same as "
        "MODEL.ALLOW_PARTIAL_WEIGHTS True)",
    )
    parser.add_argument(
        "opts",
        nargs=argparse.REMAINDER,
        default=[],
        help="config overrides: KEY VALUE pairs or KEY=VALUE items",
    )
    return parser


def _atomic_write_text(path: str, text: str) -> None:
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def default_setup(cfg: CfgNode, args: argparse.Namespace | None = None) -> None:
    """Prepares a run: output dir, per-rank logs, env report, config dump, seeds.

    Args:
        cfg: the full config (frozen or not).
        args: the parsed command line, logged for the record.
    """
    output_dir = cfg.OUTPUT_DIR
    if comm.is_main_process() and output_dir:
        os.makedirs(output_dir, exist_ok=True)
    comm.synchronize()
    rank = comm.get_rank()
    setup_logger(output_dir or None, distributed_rank=rank, name="fvcore")
    run_logger = setup_logger(output_dir or None, distributed_rank=rank)
    run_logger.info("Rank of current process: %d. World size: %d", rank, comm.get_world_size())
    run_logger.info("Environment info:\n%s", collect_env_info())
    if args is not None:
        run_logger.info("Command line arguments: %s", args)
        if getattr(args, "config_file", ""):
            with open(args.config_file) as f:
                run_logger.info("Contents of %s:\n%s", args.config_file, f.read())
            # A Detectron2 file was translated before this log existed: translate it again
            # (it logs every key) so that the run's log records the translation.
            config_format = getattr(args, "config_format", "auto")
            load_detectron2_tree(args.config_file, getattr(args, "opts", []), config_format)
    run_logger.info("Running with full config:\n%s", cfg.dump())
    if comm.is_main_process() and output_dir:
        path = os.path.join(output_dir, "config.yaml")
        _atomic_write_text(path, cfg.dump())
        run_logger.info("Full config saved to %s", path)

    # Each rank gets its own seed so that per-rank randomness (dropout) is not identical.
    seed_all_rng(None if cfg.SEED < 0 else cfg.SEED + rank)
    set_deterministic(cfg.DETERMINISTIC)
    if not cfg.DETERMINISTIC:
        torch.backends.cudnn.benchmark = cfg.CUDNN_BENCHMARK


def default_writers(output_dir: str, max_iter: int, window_size: int = 20) -> list:
    """Console printer, ``metrics.json`` and TensorBoard writers (creates ``output_dir``)."""
    os.makedirs(output_dir, exist_ok=True)
    return [
        CommonMetricPrinter(max_iter, window_size=window_size),
        JSONWriter(os.path.join(output_dir, "metrics.json"), window_size=window_size),
        TensorboardXWriter(output_dir, window_size=window_size),
    ]


def create_ddp_model(model: nn.Module, **kwargs) -> nn.Module:
    """Wraps ``model`` in DistributedDataParallel when there is more than one process.

    Works on CPU (gloo) as well as CUDA (NCCL, one device per process).
    """
    if comm.get_world_size() == 1:
        return model
    param = next(model.parameters(), None)
    if param is not None and param.device.type == "cuda" and "device_ids" not in kwargs:
        kwargs["device_ids"] = [param.device.index]
    kwargs.setdefault("broadcast_buffers", False)
    return DistributedDataParallel(model, **kwargs)


def save_eval_results(
    output_dir: str, dataset_name: str, results: Mapping, iteration: int | None = None
) -> None:
    """Saves results whole to ``OUTPUT_DIR/inference/<dataset>/results.json`` and appends
    the flattened metrics to ``OUTPUT_DIR/metrics.json``; main process only."""
    if not comm.is_main_process() or not output_dir:
        return
    folder = os.path.join(output_dir, "inference", dataset_name)
    os.makedirs(folder, exist_ok=True)
    _atomic_write_text(
        os.path.join(folder, "results.json"), json.dumps(results, indent=2, default=float)
    )
    record = {"iteration": iteration, "dataset": dataset_name, **hooks.flatten_results(results)}
    with open(os.path.join(output_dir, "metrics.json"), "a") as f:
        f.write(json.dumps(record, sort_keys=True) + "\n")


def _print_results(dataset_name: str, results: Mapping) -> None:
    flat = hooks.flatten_results(results)
    if flat:
        table = tabulate(sorted(flat.items()), headers=["metric", "value"], floatfmt=".4f")
        logger.info("Evaluation results for %s:\n%s", dataset_name, table)


def _report_and_images(cfg: CfgNode, dataset_name: str) -> tuple[Any, list[DatasetEvaluator]]:
    """The evaluators that ``TEST.REPORT`` and ``TEST.VIS_IMAGES`` add to the metric ones."""
    extras: list[DatasetEvaluator] = []
    report = None
    if not (cfg.TEST.REPORT or cfg.TEST.VIS_IMAGES > 0):
        return report, extras
    space = label_space_of_datasets([dataset_name])
    folder = os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
    if cfg.TEST.REPORT:
        report = EvaluationReport(
            dataset_name, folder, label_space=space, worst_k=cfg.TEST.REPORT_WORST_K
        )
        extras.append(report)
    if cfg.TEST.VIS_IMAGES > 0:
        extras.append(
            TensorBoardImages(
                dataset_name,
                label_space=space,
                num_images=cfg.TEST.VIS_IMAGES,
                log_dir=cfg.OUTPUT_DIR,
            )
        )
    return report, extras


def _mark_subset(
    results: Mapping, max_images: int, data_loader: Any, dataset_name: str
) -> dict[str, Any]:
    """The results with a ``subset`` entry saying how many images were evaluated."""
    evaluated = len(data_loader.dataset)
    logger.warning(
        "EVALUATED ONLY %d IMAGES of %s (TEST.MAX_IMAGES %d): these are not the dataset's metrics",
        evaluated,
        dataset_name,
        max_images,
    )
    return {**results, "subset": {"max_images": max_images, "images": evaluated}}


class DefaultTrainer(TrainerBase):
    """A trainer with the standard pieces, each built by an overridable class method.

    Builds from ``cfg``: model (``build_model``), optimizer (``build_optimizer``), LR
    scheduler (``build_lr_scheduler``), train and test loaders, evaluators; wraps the model
    in DDP when there are several processes; registers the default hooks
    (:meth:`build_hooks`), which configs may disable or replace by name (``HOOKS.*``).

    Usage::

        trainer = DefaultTrainer(cfg)
        trainer.resume_or_load(resume=args.resume)
        trainer.train()

    The ``build_*`` class methods have Detectron2's signatures, so Detectron2 subclasses
    port as they are. The training loader is built when training starts; the resumed
    iteration and the data seed reach it through
    :func:`~panoptic2.data.loader_position.train_loader_position`, not through arguments, so
    a resumed run sees exactly the samples a straight run would have seen also when an
    override of ``build_train_loader(cls, cfg)`` calls :func:`panoptic2.data.build_train_loader`.
    """

    def __init__(self, cfg: CfgNode) -> None:
        super().__init__()
        if not logging.getLogger("panoptic2").isEnabledFor(logging.INFO):
            setup_logger()
        if cfg.MODEL.COMPILE and cfg.MODEL.COMPILE_FREEZE:
            raise ValueError(
                "MODEL.COMPILE_FREEZE lets inductor compile the weights of the first "
                "inference into the graph, so evaluations during training could miss the "
                "trained weights: it is for inference-only runs (--eval-only, tools/predict.py, tools/benchmark.py "
                "--task eval). Set MODEL.COMPILE_FREEZE False to train."
            )
        self.cfg = cfg
        self._xla = None
        xla_mesh = None
        if is_xla_device_name(cfg.MODEL.DEVICE):
            from . import xla  # imports torch_xla: only runs on XLA devices need it

            self._xla = xla
            # Before the model exists: SPMD must be on before any XLA tensor is created.
            xla_mesh = xla.prepare_runtime(cfg)
        model = self.build_model(cfg)
        optimizer = self.build_optimizer(cfg, model)
        model = create_ddp_model(model)
        clipper = None
        if cfg.SOLVER.CLIP_GRADIENTS.ENABLED:
            clipper = partial(clip_gradients, cfg_clip=cfg.SOLVER.CLIP_GRADIENTS)
        if self._xla is not None:
            self._trainer: SimpleTrainer = self._xla.build_trainer(
                cfg, model, optimizer, grad_clipper=clipper, mesh=xla_mesh
            )
        elif cfg.SOLVER.AMP.ENABLED:
            self._trainer = AMPTrainer(
                model, None, optimizer, grad_clipper=clipper, precision=cfg.SOLVER.AMP.DTYPE
            )
        else:
            self._trainer = SimpleTrainer(model, None, optimizer, grad_clipper=clipper)
        # The inner trainer runs the step; our hooks must see its after_backward event.
        self._trainer.after_backward = self.after_backward  # type: ignore[method-assign]
        self.scheduler = self.build_lr_scheduler(cfg, optimizer)
        self.checkpointer = Checkpointer(
            model,
            cfg.OUTPUT_DIR,
            allow_partial_weights=cfg.MODEL.ALLOW_PARTIAL_WEIGHTS,
            trainer=weakref.proxy(self),
        )
        self.start_iter = 0
        self.max_iter = cfg.SOLVER.MAX_ITER
        # The data order depends on this seed; it is checkpointed so a resumed run
        # continues the same stream even when SEED was drawn at random.
        self.data_seed = cfg.SEED if cfg.SEED >= 0 else comm.shared_random_seed()
        self.latest_eval_results: Mapping | None = None
        self.register_hooks(self.build_hooks())

    # -- accessors ------------------------------------------------------------------------
    @property
    def model(self) -> nn.Module:
        return self._trainer.model

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        return self._trainer.optimizer

    @property
    def data_loader(self):
        return self._trainer.data_loader

    @data_loader.setter
    def data_loader(self, loader) -> None:
        """Replaces the batches the steps read (``train()`` sets its own loader)."""
        self._trainer.data_loader = loader

    # -- resume ---------------------------------------------------------------------------
    def resume_or_load(self, resume: bool | str = True) -> None:
        """Resumes from a checkpoint, or loads ``MODEL.WEIGHTS`` for a fresh run.

        Args:
            resume: True resumes from ``OUTPUT_DIR/last_checkpoint`` when it exists (else
                starts fresh from ``MODEL.WEIGHTS``); a path resumes from that checkpoint;
                False always starts fresh from ``MODEL.WEIGHTS``.
        """
        self._resumed = False
        self.checkpointer.resume_or_load(self.cfg.MODEL.WEIGHTS, resume=resume)
        if self._resumed:
            # The checkpoint was written after iteration `iter` finished.
            self.start_iter = self.iter + 1
            logger.warning(
                "RESUMING at iteration %d of %d (checkpoint written after iteration %d)",
                self.start_iter,
                self.max_iter,
                self.iter,
            )
            self._drop_metrics_after(self.iter)

    def _drop_metrics_after(self, iteration: int) -> None:
        """Removes what an interrupted run logged after the resumed checkpoint from
        ``metrics.json``, which this run logs again (main process; writers not yet open)."""
        if not comm.is_main_process() or not self.cfg.OUTPUT_DIR:
            return
        path = os.path.join(self.cfg.OUTPUT_DIR, "metrics.json")
        dropped = JSONWriter.drop_records_after(path, iteration)
        if dropped:
            logger.info(
                "Dropped %d records after iteration %d from %s: the interrupted run wrote them "
                "after its last checkpoint, and this run writes those iterations again",
                dropped,
                iteration,
                path,
            )

    # -- training -------------------------------------------------------------------------
    def train(self) -> Mapping | None:
        """Trains from ``start_iter`` to ``SOLVER.MAX_ITER``.

        Returns:
            The last evaluation results, or None when nothing was evaluated.
        """
        self._trainer.data_loader = self._train_loader_at(self.start_iter, self.data_seed)
        super().train(self.start_iter, self.max_iter)
        return self.latest_eval_results

    def _train_loader_at(self, start_iter: int, seed: int):
        """``build_train_loader(cfg)`` with its stream starting at ``start_iter``."""
        with train_loader_position(start_iter, seed) as position:
            loader = self.build_train_loader(self.cfg)
        if start_iter > 0 and not position.start_applied:
            logger.warning(
                "%s.build_train_loader did not build its loader with "
                "panoptic2.data.build_train_loader (or gave it an explicit start_iter or "
                "sampler), so its data starts from the beginning of the stream at the "
                "resumed iteration %d: this run does not continue the interrupted one exactly",
                type(self).__name__,
                start_iter,
            )
        return loader

    def run_step(self) -> None:
        self._trainer.iter = self.iter
        self._trainer.run_step()

    def build_hooks(self) -> list[HookBase]:
        """The default hooks, minus ``HOOKS.DISABLED``, with ``HOOKS.CUSTOM`` added (a custom
        hook named like a default one replaces it)."""
        cfg = self.cfg
        default: dict[str, HookBase | None] = OrderedDict()
        default["IterationTimer"] = hooks.IterationTimer()
        default["LRScheduler"] = hooks.LRScheduler(self.optimizer, self.scheduler)
        if cfg.TEST.PRECISE_BN.ENABLED:
            default["PreciseBN"] = hooks.PreciseBN(
                cfg.TEST.EVAL_PERIOD,
                self.model,
                lambda: self._train_loader_at(0, self.data_seed + 1),
                cfg.TEST.PRECISE_BN.NUM_ITER,
            )
        # Every rank runs the checkpointer hook (it saves on the main process only).
        default["PeriodicCheckpointer"] = hooks.PeriodicCheckpointer(
            PeriodicCheckpointSaver(
                self.checkpointer,
                cfg.SOLVER.CHECKPOINT_PERIOD,
                max_iter=self.max_iter,
                max_to_keep=cfg.SOLVER.MAX_CHECKPOINTS_TO_KEEP,
            )
        )
        if cfg.DATASETS.TEST:
            default["EvalHook"] = hooks.EvalHook(cfg.TEST.EVAL_PERIOD, self._evaluate)
            if cfg.TEST.VAL_LOSS_PERIOD > 0:
                default["ValidationLoss"] = hooks.ValidationLoss(
                    cfg.TEST.VAL_LOSS_PERIOD, self.model, lambda: self.build_val_loss_loader(cfg)
                )
        if cfg.TEST.BEST_CHECKPOINT_METRIC:
            default["BestCheckpointer"] = hooks.BestCheckpointer(
                self.checkpointer, cfg.TEST.BEST_CHECKPOINT_METRIC, cfg.TEST.BEST_CHECKPOINT_MODE
            )
        if comm.is_main_process():
            default["PeriodicWriter"] = hooks.PeriodicWriter(
                self.build_writers(), period=cfg.LOG_PERIOD
            )

        for name in cfg.HOOKS.DISABLED:
            if name not in default:
                raise KeyError(
                    f"HOOKS.DISABLED names {name!r}, which is not a default hook of this run; "
                    f"default hooks: {list(default)}"
                )
            default.pop(name)
        for name in cfg.HOOKS.CUSTOM:
            hook = hooks.HOOK_REGISTRY.get(name)(cfg, self)
            if hook.name in default:
                logger.info("Custom hook %s replaces the default one", hook.name)
            default[hook.name] = hook
        if self._xla is not None:
            # Part of the XLA step, not an option: it records the losses the step leaves on
            # the device, and closes the device loader.
            default["XLAMonitor"] = self._xla.XLAMonitor(
                self._trainer, cfg.LOG_PERIOD, cfg.SOLVER.XLA.WARMUP_ITERS
            )
        return [h for h in default.values() if h is not None]

    def _evaluate(self) -> Mapping:
        self.latest_eval_results = self.test(self.cfg, self.model, iteration=self.iter)
        return self.latest_eval_results

    # -- checkpointed state ---------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["trainer"] = self._trainer.state_dict()
        state["data_seed"] = self.data_seed
        # RNG of the main process (checkpoints are written there); see load_state_dict.
        state["rng"] = get_rng_states()
        return state

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self._trainer.load_state_dict(state_dict["trainer"])
        self.data_seed = int(state_dict["data_seed"])
        if comm.get_world_size() == 1:
            set_rng_states(state_dict["rng"])
        else:
            # Only the main process's RNG is in the checkpoint; other ranks re-seed from the
            # iteration so they do not all share rank 0's stream. Data order and
            # augmentations are exact regardless: they depend on the data seed and the
            # sample position only.
            seed_all_rng((self.data_seed + 1_000_003 * self.iter + comm.get_rank()) % 2**31)
        self._resumed = True

    # -- builders (override in subclasses) ------------------------------------------------
    @classmethod
    def build_model(cls, cfg: CfgNode) -> nn.Module:
        model = build_model(cfg)
        num_params = sum(p.numel() for p in model.parameters())
        logger.info("Model %s with %.2fM parameters", cfg.MODEL.META_ARCHITECTURE, num_params / 1e6)
        return model

    @classmethod
    def build_optimizer(cls, cfg: CfgNode, model: nn.Module) -> torch.optim.Optimizer:
        return build_optimizer(cfg, model)

    @classmethod
    def build_lr_scheduler(cls, cfg: CfgNode, optimizer: torch.optim.Optimizer):
        return build_lr_scheduler(cfg, optimizer)

    @classmethod
    def build_train_loader(cls, cfg: CfgNode):
        """The training loader; its start and seed come from the trainer (see class doc)."""
        return build_train_loader(cfg)

    @classmethod
    def build_test_loader(cls, cfg: CfgNode, dataset_name: str):
        return build_test_loader(cfg, dataset_name)

    @classmethod
    def build_val_loss_loader(cls, cfg: CfgNode):
        """Loader of the first test set with the training mapper (losses need targets)."""
        return build_test_loader(
            cfg,
            cfg.DATASETS.TEST[0],
            mapper=build_dataset_mapper(cfg, is_train=True, dataset_name=cfg.DATASETS.TEST[0]),
        )

    @classmethod
    def build_evaluator(
        cls, cfg: CfgNode, dataset_name: str, output_folder: str | None = None
    ) -> DatasetEvaluator:
        """The dataset's evaluators; ``output_folder`` defaults to
        ``OUTPUT_DIR/inference/<dataset_name>``."""
        if output_folder is None:
            output_folder = os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
        return build_evaluator(cfg, dataset_name, output_folder)

    def build_writers(self) -> list:
        return default_writers(self.cfg.OUTPUT_DIR, self.max_iter, window_size=self.cfg.LOG_PERIOD)

    @classmethod
    def test(
        cls,
        cfg: CfgNode,
        model: nn.Module,
        evaluators: list[DatasetEvaluator] | None = None,
        *,
        iteration: int | None = None,
    ) -> Mapping:
        """Evaluates ``model`` on every dataset in ``DATASETS.TEST``.

        Args:
            cfg: the config.
            model: the model (DDP-wrapped or not).
            evaluators: one per test dataset; None builds them from each dataset's metadata.
            iteration: recorded with the results in ``metrics.json``.

        Returns:
            The results of the only test set, or ``{dataset_name: results}`` for several.
        """
        if evaluators is not None and len(evaluators) != len(cfg.DATASETS.TEST):
            raise ValueError(
                f"{len(evaluators)} evaluators given for {len(cfg.DATASETS.TEST)} test sets "
                f"{list(cfg.DATASETS.TEST)}"
            )
        results: dict[str, Mapping] = OrderedDict()
        for idx, dataset_name in enumerate(cfg.DATASETS.TEST):
            data_loader = cls.build_test_loader(cfg, dataset_name)
            evaluator = (
                evaluators[idx]
                if evaluators is not None
                else cls.build_evaluator(cfg, dataset_name)
            )
            report, extras = _report_and_images(cfg, dataset_name)
            if extras:
                evaluator = DatasetEvaluators([evaluator, *extras])
            results_i = inference_on_dataset(model, data_loader, evaluator)
            if cfg.TEST.MAX_IMAGES > 0:
                results_i = _mark_subset(results_i, cfg.TEST.MAX_IMAGES, data_loader, dataset_name)
            if report is not None and comm.is_main_process():
                report.write(results_i, iteration)
            results[dataset_name] = results_i
            if comm.is_main_process():
                _print_results(dataset_name, results_i)
                save_eval_results(cfg.OUTPUT_DIR, dataset_name, results_i, iteration)
        if len(results) == 1:
            return next(iter(results.values()))
        return results

"""Saving and loading checkpoints: atomic writes, safe loading, foreign weights, rotation.

:class:`Checkpointer` extends :class:`fvcore.common.checkpoint.Checkpointer`:

* ``save`` runs on the main process only, stores every tensor on the CPU (so a CUDA or
  XLA run's file loads anywhere), and is atomic: the data goes to a hidden temp
  file in the same directory, is flushed and fsynced, then ``os.replace``-d onto the final
  name; the ``last_checkpoint`` pointer is replaced the same way afterwards. A process
  killed at any moment leaves the previous checkpoint and pointer intact.
* a model's ``label_space`` (:class:`~panoptic2.data.label_space.LabelSpace`) is saved with
  its weights and restored into a model that has none, so a trained model names its classes
  without its dataset being registered;
* ``load`` reads ``.pth`` files with ``torch.load(weights_only=True)`` unless the user opts
  out, and ``.pkl`` files (Detectron/Caffe2) with a restricted unpickler
  (:mod:`panoptic2.checkpoint.safe_loading`): no code from the file runs either way. Foreign
  weights load through name conversion + suffix matching
  (:mod:`panoptic2.checkpoint.weight_conversion`), logged as a table. What the model
  received is kept in :attr:`Checkpointer.last_load_report`.
* a **whole-model checkpoint** must fill every tensor of the model: one that leaves a tensor
  without a value, or offers one of another shape, is an :class:`IncompleteWeightsError`
  naming them, raised before anything is loaded, unless ``allow_partial_weights`` (then a
  warning). A checkpoint is a whole-model one when this project wrote it, or when it has
  weights for a part of the model outside ``model.backbone`` (a tensor it fills, or a name
  starting with one of the model's other top-level modules, e.g. ``roi_heads.``). Any other
  checkpoint initialises the backbone only (ImageNet ``R-50.pkl``, a torchvision ResNet):
  what it leaves unloaded is expected and logged as a warning.
* ``resume_or_load`` first removes the temp files a killed save left behind, and, when the
  checkpoint ``last_checkpoint`` names is corrupt, resumes from the newest earlier
  ``model_XXXXXXX.pth`` that loads.
"""

from __future__ import annotations

import copy
import logging
import os
import re
from collections.abc import Callable
from typing import IO, Any

import torch
from fvcore.common.checkpoint import Checkpointer as _FvcoreCheckpointer
from fvcore.common.checkpoint import PeriodicCheckpointer as _FvcorePeriodicCheckpointer
from fvcore.common.checkpoint import _IncompatibleKeys, _strip_prefix_if_present
from torch import nn
from torch.nn.parameter import is_lazy

from panoptic2.utils import comm
from panoptic2.utils.file_io import PathManager, atomic_write, atomic_write_leftovers

from .c2_model_loading import read_pickle_checkpoint
from .load_report import IncompleteWeightsError, LoadReport
from .safe_loading import CorruptCheckpointError, read_torch_checkpoint
from .weight_conversion import AlignmentResult, choose_and_align, format_alignment_tables

__all__ = ["Checkpointer", "PeriodicCheckpointer"]

logger = logging.getLogger(__name__)

# Saved in every checkpoint this project writes; its keys load by exact name, anything
# without it is treated as foreign weights and goes through name matching.
_FORMAT_KEY = "__panoptic2_checkpoint__"
_FORMAT_VERSION = 1
_POINTER_FILE = "last_checkpoint"
_LABEL_SPACE_KEY = "label_space"
# The files PeriodicCheckpointer writes with its default prefix; what a resume falls back to.
_PERIODIC_FILE = re.compile(r"^model_(\d{7,})\.pth$")
# The top-level module a checkpoint may initialise on its own (ImageNet weights).
_BACKBONE = "backbone"


def _to_cpu(obj: Any) -> Any:
    """``obj`` with every tensor in its dicts, lists and tuples moved to the CPU."""
    if isinstance(obj, torch.Tensor):
        return obj if obj.device.type == "cpu" else obj.detach().cpu()
    if isinstance(obj, dict):
        # A shallow copy keeps the mapping's type and attributes (a state dict's _metadata).
        out = copy.copy(obj)
        for key, value in obj.items():
            out[key] = _to_cpu(value)
        return out
    if isinstance(obj, list):
        return [_to_cpu(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_to_cpu(v) for v in obj)
    return obj


def _is_local(path: str) -> bool:
    return "://" not in path


def _unwrap_compiled(model: nn.Module) -> nn.Module:
    """The module inside ``torch.compile(model)`` wrappers; other modules as they are."""
    while isinstance(getattr(model, "_orig_mod", None), nn.Module):
        model = model._orig_mod
    return model


def _strip_wrapper_prefixes(state_dict: dict[str, Any]) -> None:
    """Drops the name prefixes of (Distributed)DataParallel (``module.``) and of
    ``torch.compile`` (``_orig_mod.``) wrappers saved with a state dict, in place."""
    for prefix in ("module.", "_orig_mod.", "module."):
        _strip_prefix_if_present(state_dict, prefix)


class Checkpointer(_FvcoreCheckpointer):
    """Saves and loads the model together with every other checkpointable object.

    Example::

        checkpointer = Checkpointer(model, cfg.OUTPUT_DIR, optimizer=opt, scheduler=sched)
        start_iter = checkpointer.resume_or_load(cfg.MODEL.WEIGHTS, resume=True).get(
            "iteration", -1) + 1
        checkpointer.save("model_0004999", iteration=4999)

    Attributes:
        weight_format: the converter used for foreign weights: ``None`` (default) picks the
            registered converter that matches most keys; a name in
            ``WEIGHT_CONVERTER_REGISTRY`` forces one.
        last_load_report: what the latest :meth:`load` put into the model (a
            :class:`~panoptic2.checkpoint.load_report.LoadReport`); ``None`` before any.
        allow_partial_weights: load a whole-model checkpoint that leaves tensors unloaded
            with a warning instead of an error (``MODEL.ALLOW_PARTIAL_WEIGHTS``).
    """

    def __init__(
        self,
        model: nn.Module,
        save_dir: str = "",
        *,
        save_to_disk: bool | None = None,
        weights_only: bool = True,
        allow_partial_weights: bool = False,
        **checkpointables: Any,
    ) -> None:
        """
        Args:
            model: the model; a (Distributed)DataParallel wrapper and a ``torch.compile``
                wrapper (whose tensors are named ``_orig_mod.*``) are unwrapped.
            save_dir: the directory checkpoints and the ``last_checkpoint`` pointer go to.
            save_to_disk: whether ``save`` writes; ``None`` means "on the main process only".
            weights_only: read ``.pth`` files with ``torch.load(weights_only=True)``. Set
                ``False`` only for trusted files that pickle custom Python objects: loading
                then runs arbitrary code from the file.
            allow_partial_weights: a whole-model checkpoint that leaves some of the model's
                tensors unloaded (missing, or of another shape: fine-tuning with another
                number of classes) loads the rest with a warning instead of raising.
            **checkpointables: objects with ``state_dict()``/``load_state_dict()``
                (optimizer, scheduler, trainer ...), saved under their keyword.
        """
        if save_to_disk is None:
            save_to_disk = comm.is_main_process()
        model = _unwrap_compiled(model)
        if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = _unwrap_compiled(model.module)
        super().__init__(model, save_dir, save_to_disk=save_to_disk, **checkpointables)
        self.path_manager = PathManager
        self.weights_only = weights_only
        self.allow_partial_weights = allow_partial_weights
        self.weight_format: str | None = None
        self.last_load_report: LoadReport | None = None
        self.logger = logger

    # ------------------------------------------------------------------ saving
    def save(self, name: str, *, tag_last_checkpoint: bool = True, **kwargs: Any) -> None:
        """Atomically writes ``{save_dir}/{name}.pth`` and points ``last_checkpoint`` at it.

        Does nothing when ``save_dir`` is empty or this process does not save to disk.

        Args:
            name: the file name without ``.pth``; no directory part.
            tag_last_checkpoint: point ``last_checkpoint`` (what ``--resume`` loads) at the
                new file. A "best model" copy passes False so that resuming continues from
                the latest state, not from the best one.
            **kwargs: extra data (e.g. ``iteration=999``), returned by :meth:`load`. Keep it
                to tensors, numbers, strings and containers so ``weights_only`` loading works.

        Raises:
            ValueError: ``name`` contains a directory, or an extra key collides with the
                model or a checkpointable.
        """
        if not self.save_dir or not self.save_to_disk:
            return
        basename = f"{name}.pth"
        if os.path.basename(basename) != basename:
            raise ValueError(f"Checkpoint name {name!r} must not contain a directory")
        taken = {"model", _FORMAT_KEY, _LABEL_SPACE_KEY, *self.checkpointables}
        clashes = sorted(taken & set(kwargs))
        if clashes:
            raise ValueError(f"Extra checkpoint data uses reserved keys {clashes}")
        data: dict[str, Any] = {"model": self.model.state_dict()}
        for key, obj in self.checkpointables.items():
            data[key] = obj.state_dict()
        data.update(kwargs)
        # Device tensors (CUDA, XLA) are stored as CPU tensors, so the file loads on any
        # device without map_location, and an XLA run's file loads without torch_xla.
        data = _to_cpu(data)
        label_space = getattr(self.model, "label_space", None)
        if label_space is not None:
            data[_LABEL_SPACE_KEY] = label_space.to_dict()
        data[_FORMAT_KEY] = _FORMAT_VERSION

        save_file = os.path.join(self.save_dir, basename)
        self.logger.info(f"Saving checkpoint to {save_file}")
        self._write(save_file, lambda f: torch.save(data, f))
        if tag_last_checkpoint:
            self.tag_last_checkpoint(basename)

    def tag_last_checkpoint(self, last_filename_basename: str) -> None:
        """Atomically points ``{save_dir}/last_checkpoint`` at a file in ``save_dir``.

        Args:
            last_filename_basename: the checkpoint's file name (no directory).
        """
        pointer = os.path.join(self.save_dir, _POINTER_FILE)
        self._write(pointer, lambda f: f.write(last_filename_basename.encode("utf-8")))

    def _write(self, path: str, write_fn: Callable[[IO[bytes]], None]) -> None:
        self.path_manager.mkdirs(os.path.dirname(path))
        if _is_local(path):
            atomic_write(path, write_fn)
        else:
            # Remote stores have no rename-over; their uploads are all-or-nothing anyway.
            with self.path_manager.open(path, "wb") as f:
                write_fn(f)

    # ----------------------------------------------------------------- loading
    def load(self, path: str, checkpointables: list[str] | None = None) -> dict[str, Any]:
        """Loads the model (and checkpointables) from a file or URL.

        Args:
            path: a local path or URL (downloaded once to the cache); ``""`` loads nothing.
                ``.pkl`` files are Detectron/Caffe2 pickles, read by this explicit choice.
            checkpointables: names of checkpointables to restore; ``None`` restores all
                found in the file, ``[]`` only the model.

        Returns:
            The checkpoint's extra data not consumed (e.g. ``{"iteration": 999}``).

        Raises:
            FileNotFoundError: the file does not exist.
            UnsafeCheckpointError: the file pickles objects whose loading could run code
                (a ``RuntimeError``; for ``.pth`` files the message says how to opt out).
            CorruptCheckpointError: the file is no checkpoint, or is truncated (a
                ``ValueError``).
            KeyError: ``checkpointables`` names an object this Checkpointer does not have.
            IncompleteWeightsError: a whole-model checkpoint would leave some of the model's
                tensors unloaded and ``allow_partial_weights`` is False; nothing is loaded.
        """
        if not path:
            self.logger.info("No checkpoint given; the model keeps its initialisation.")
            self.last_load_report = LoadReport.nothing(self.model.state_dict())
            return {}
        unknown = sorted(set(checkpointables or ()) - set(self.checkpointables))
        if unknown:
            raise KeyError(
                f"Unknown checkpointables {unknown}; this Checkpointer has "
                f"{sorted(self.checkpointables)}"
            )
        self.logger.info(f"[Checkpointer] Loading from {path} ...")
        local = path if os.path.isfile(path) else self.path_manager.get_local_path(path)
        if not os.path.isfile(local):
            raise FileNotFoundError(f"Checkpoint {path} not found")
        checkpoint = self._load_file(local)
        stored_label_space = checkpoint.pop(_LABEL_SPACE_KEY, None)
        model_state = self.model.state_dict()
        foreign = bool(checkpoint.get("matching_heuristics"))
        incompatible, whole_model = self._load_model_checked(checkpoint, path)
        self.last_load_report = _report(path, model_state, incompatible, whole_model)
        if not foreign:  # foreign loads were logged as tables by _load_model
            self._log_incompatible_keys(incompatible)
        self._restore_label_space(stored_label_space, path)
        names = self.checkpointables if checkpointables is None else checkpointables
        for key in names:
            if key in checkpoint:
                self.logger.info(f"Loading {key} from {path} ...")
                self.checkpointables[key].load_state_dict(checkpoint.pop(key))
        for key in (_FORMAT_KEY, "matching_heuristics", "__author__"):
            checkpoint.pop(key, None)
        return checkpoint

    def _restore_label_space(self, stored: dict[str, Any] | None, path: str) -> None:
        """Gives the model the checkpoint's label space when it has none of its own.

        A model built for a dataset keeps that dataset's label space (fine-tuning from weights
        of another dataset is legitimate); a difference is logged as a warning.
        """
        if stored is None or not hasattr(self.model, "label_space"):
            return
        from panoptic2.data.label_space import LabelSpace

        try:
            space = LabelSpace.from_dict(stored)
        except (TypeError, ValueError) as e:
            raise ValueError(f"Checkpoint {path} stores an invalid label space: {e}") from e
        current = self.model.label_space
        if current is None:
            self.model.label_space = space
            self.logger.info(f"Label space from {path}: {space}")
        elif current != space:
            self.logger.warning(
                f"The model's label space differs from the one stored in {path} "
                f"({current.difference(space)}); keeping the model's"
            )

    def resume_or_load(self, path: str, *, resume: bool | str = True) -> dict[str, Any]:
        """Resumes an interrupted run, or initialises the model from ``path``.

        A Checkpointer that saves to disk first removes the temp files that a save killed
        midway left in ``save_dir``: it is the only writer there, so none is in progress.

        Args:
            path: weights to load when not resuming (``MODEL.WEIGHTS``); model only.
            resume: ``True``: resume from the file ``last_checkpoint`` names, if any, else
                load ``path``; ``False``: load ``path``; a string: resume from that file.

        Returns:
            Same as :meth:`load`; when resuming it holds ``iteration``.

        Raises:
            FileNotFoundError: ``last_checkpoint`` names a file that does not exist.
            CorruptCheckpointError: the file to resume from is corrupt and, for
                ``resume=True``, so is every earlier ``model_XXXXXXX.pth``.
        """
        self.remove_leftover_temp_files()
        if isinstance(resume, str) and resume:
            return self._resume_from(resume)
        if resume and self.has_checkpoint():
            target = self.get_checkpoint_file()
            if not target or not self.path_manager.exists(target):
                raise FileNotFoundError(
                    f"{os.path.join(self.save_dir, _POINTER_FILE)} points to {target!r}, which "
                    "does not exist; fix or delete the pointer file to start over"
                )
            try:
                return self._resume_from(target)
            except CorruptCheckpointError as error:
                return self._resume_from_earlier(target, error)
        return self.load(path, checkpointables=[])

    def remove_leftover_temp_files(self) -> list[str]:
        """Deletes the temp files of checkpoint and pointer saves killed midway.

        Only a Checkpointer that saves to disk into a local ``save_dir`` does this; other
        ranks, and evaluation that only reads, leave the directory alone.

        Returns:
            The removed paths.
        """
        if not self.save_dir or not self.save_to_disk or not _is_local(self.save_dir):
            return []
        removed = []
        for tmp, target in atomic_write_leftovers(self.save_dir).items():
            if not (target.endswith(".pth") or target == _POINTER_FILE):
                continue
            try:
                os.remove(tmp)
            except FileNotFoundError:
                continue
            removed.append(tmp)
            self.logger.info(f"Removed {tmp}, left by an interrupted save of {target}")
        return removed

    def _resume_from_earlier(self, corrupt: str, error: CorruptCheckpointError) -> dict[str, Any]:
        """Resumes from the newest periodic checkpoint before ``corrupt`` that loads."""
        match = _PERIODIC_FILE.match(os.path.basename(corrupt))
        newest = int(match.group(1)) if match else None
        candidates = []
        for name in self.path_manager.ls(self.save_dir):
            m = _PERIODIC_FILE.match(name)
            path = os.path.join(self.save_dir, name)
            # Files after the corrupt one belong to a history that was resumed away from.
            if m and path != corrupt and (newest is None or int(m.group(1)) < newest):
                candidates.append((int(m.group(1)), path))
        failures = [f"{corrupt} ({error.reason})"]
        for _, path in sorted(candidates, reverse=True):
            self.logger.warning(
                f"{error}; resuming from the previous complete checkpoint {path} instead"
            )
            try:
                return self._resume_from(path)
            except CorruptCheckpointError as e:
                failures.append(f"{path} ({e.reason})")
                error = e
        raise CorruptCheckpointError(
            corrupt,
            failures[0],
            message=f"Cannot resume from {self.save_dir}: no checkpoint there loads: "
            f"{'; '.join(failures)}. Delete the corrupt files (or {_POINTER_FILE}, to start "
            "over).",
        ) from error

    def _resume_from(self, path: str) -> dict[str, Any]:
        extra = self.load(path)
        iteration = extra.get("iteration")
        where = f"iteration {iteration}" if iteration is not None else "unknown iteration"
        # WARNING so it stands out in a long log: resuming changes what the run does.
        self.logger.warning(
            f"{'=' * 20} RESUMED from {path} ({where}; "
            f"restored {sorted(k for k in self.checkpointables)}) {'=' * 20}"
        )
        return extra

    def _load_file(self, f: str) -> dict[str, Any]:
        """Reads a local checkpoint file into ``{"model": {name: tensor}, ...}``.

        Args:
            f: a local path.

        Returns:
            The checkpoint dict; foreign files get ``matching_heuristics=True``.
        """
        if f.endswith(".pkl"):
            return read_pickle_checkpoint(f)
        data = read_torch_checkpoint(f, weights_only=self.weights_only)
        if not isinstance(data, dict):
            raise ValueError(f"{f}: expected a dict in the checkpoint, got {type(data).__name__}")
        if data.get(_FORMAT_KEY) is not None:
            return data
        if isinstance(data.get("model"), dict):
            data["matching_heuristics"] = True
            return data
        if isinstance(data.get("state_dict"), dict):
            rest = {k: v for k, v in data.items() if k != "state_dict"}
            return {**rest, "model": data["state_dict"], "matching_heuristics": True}
        non_tensors = [k for k, v in data.items() if not isinstance(v, torch.Tensor)]
        if non_tensors:
            raise ValueError(
                f"{f}: cannot find the weights: expected a state dict (name -> tensor) or a "
                f"dict with a 'model' or 'state_dict' entry; these entries are not tensors: "
                f"{non_tensors[:10]}"
            )
        return {"model": data, "matching_heuristics": True}

    def _load_model(self, checkpoint: dict[str, Any]) -> _IncompatibleKeys:
        """fvcore's hook: :meth:`_load_model_checked` without a file name for messages."""
        return self._load_model_checked(checkpoint, "the checkpoint")[0]

    def _load_model_checked(
        self, checkpoint: dict[str, Any], source: str
    ) -> tuple[_IncompatibleKeys, bool]:
        """Loads ``checkpoint["model"]`` into the model, by name or by name matching.

        A whole-model checkpoint (module doc) that would leave tensors unloaded raises
        before anything is loaded, unless ``allow_partial_weights``.

        Args:
            checkpoint: from :meth:`_load_file`; ``"model"`` is popped for foreign weights.
            source: the file, for messages.

        Returns:
            fvcore's ``_IncompatibleKeys`` (missing, unexpected, incorrect shapes; for
            foreign weights in the model's names, already logged as tables here), and
            whether the checkpoint holds the whole model.

        Raises:
            IncompleteWeightsError: see above; the message names every tensor.
        """
        model_state = self.model.state_dict()
        if not checkpoint.get("matching_heuristics"):
            ckpt = dict(checkpoint["model"])
            _strip_wrapper_prefixes(ckpt)
            alignment = _exact_alignment(model_state, ckpt)
            self._require_complete(alignment, source, "a whole-model checkpoint of panoptic2")
            return super()._load_model(checkpoint), True
        ckpt = dict(checkpoint.pop("model"))
        self._convert_ndarray_to_tensor(ckpt)
        _strip_wrapper_prefixes(ckpt)
        formats = None if self.weight_format is None else [self.weight_format]
        result = choose_and_align(model_state, ckpt, formats)
        matched_table, problems = format_alignment_tables(result)
        self.logger.info(
            f"Matched {len(result.matched)} of {len(model_state)} model tensors in foreign "
            f"weights (converter {result.converter!r}):\n{matched_table}"
        )
        evidence = _whole_model_evidence(self.model, result)
        if evidence:
            what = f"a whole-model checkpoint (it has weights for {', '.join(evidence)})"
            self._require_complete(result, source, what)
        elif result.missing or result.incorrect_shapes:
            self.logger.info(
                f"{source} initialises the backbone only (no weights outside "
                f"'{_BACKBONE}'): the tensors it does not fill keep their initialisation"
            )
        if problems:
            self.logger.warning(f"Weights not loaded:\n{problems}")
        self.model.load_state_dict(result.state_dict, strict=False)
        incompatible = _IncompatibleKeys(
            missing_keys=list(result.missing),
            unexpected_keys=list(result.unexpected),
            incorrect_shapes=[
                (ours, theirs, mine) for ours, _, theirs, mine in result.incorrect_shapes
            ],
        )
        return incompatible, bool(evidence)

    def _require_complete(self, result: AlignmentResult, source: str, what: str) -> None:
        """Raises (or warns, with ``allow_partial_weights``) when a whole-model checkpoint
        leaves some of the model's tensors unloaded.

        Args:
            result: what the checkpoint's tensors matched.
            source: the file, for messages.
            what: why the checkpoint holds the whole model, for messages.
        """
        not_loaded = len(result.missing) + len(result.incorrect_shapes)
        if not not_loaded:
            return
        _, problems = format_alignment_tables(result)
        total = len(result.matched) + not_loaded
        message = (
            f"{source} is {what}, but {not_loaded} of the model's {total} tensors would not "
            f"load from it and would keep their initialisation:\n{problems}\n"
        )
        if self.allow_partial_weights:
            self.logger.warning(message + "Loading the rest (allow_partial_weights).")
            return
        raise IncompleteWeightsError(
            message + "Nothing was loaded. Use weights of this model (names from another "
            "library load through WEIGHT_CONVERTER_REGISTRY converters; Checkpointer."
            "weight_format forces one), or accept a partial load (e.g. fine-tuning with "
            "another number of classes) with MODEL.ALLOW_PARTIAL_WEIGHTS True or "
            "--allow-partial-weights."
        )


def _exact_alignment(model_state: dict[str, torch.Tensor], ckpt: dict[str, Any]) -> AlignmentResult:
    """The alignment of a checkpoint in the model's own names (loaded by exact name)."""
    matched, missing, incorrect = [], [], []
    for key, value in model_state.items():
        theirs = ckpt.get(key)
        if theirs is None:
            missing.append(key)
        elif (
            isinstance(value, torch.Tensor)
            and isinstance(theirs, torch.Tensor)
            and not is_lazy(value)
            and tuple(theirs.shape) != tuple(value.shape)
        ):
            incorrect.append((key, key, tuple(theirs.shape), tuple(value.shape)))
        else:
            matched.append((key, key, tuple(getattr(value, "shape", ()))))
    unexpected = [k for k in ckpt if k not in model_state]
    return AlignmentResult({}, matched, missing, unexpected, incorrect, {}, "exact names")


def _whole_model_evidence(model: nn.Module, result: AlignmentResult) -> list[str]:
    """The model's top-level parts outside the backbone that the checkpoint has weights for.

    A part counts when the checkpoint fills (or offers another shape for) one of its
    tensors, or when an unused checkpoint name starts with it (a head whose names did not
    convert).
    """
    parts = {ours.split(".", 1)[0] for ours, _, _ in result.matched}
    parts |= {ours.split(".", 1)[0] for ours, _, _, _ in result.incorrect_shapes}
    children = {name for name, _ in model.named_children()}
    parts |= {k.split(".", 1)[0] for k in result.unexpected if k.split(".", 1)[0] in children}
    return sorted(parts - {_BACKBONE})


def _report(
    path: str,
    model_state: dict[str, torch.Tensor],
    incompatible: _IncompatibleKeys,
    whole_model: bool = False,
) -> LoadReport:
    """The :class:`LoadReport` of a load from what it did not match."""
    wrong_shape = [key for key, _, _ in incompatible.incorrect_shapes]
    # fvcore drops mismatched tensors before loading, so they are also "missing" there.
    skipped = set(wrong_shape)
    missing = [key for key in incompatible.missing_keys if key not in skipped]
    return LoadReport.build(
        path,
        model_state,
        missing=missing,
        incorrect_shapes=wrong_shape,
        unexpected=incompatible.unexpected_keys,
        whole_model=whole_model,
    )


class PeriodicCheckpointer(_FvcorePeriodicCheckpointer):
    """Saves ``{file_prefix}_{iter:07d}.pth`` every ``period`` iterations and keeps the newest.

    ``step(iteration)`` saves when ``(iteration + 1) % period == 0`` and, when ``max_iter``
    is set, ``{file_prefix}_final.pth`` at ``iteration >= max_iter - 1``. With
    ``max_to_keep`` it then deletes the older periodic files of this prefix found in the
    directory (also those written before a resume), except any file that a pointer file
    (a file in ``save_dir`` whose name ends with ``checkpoint``, e.g. ``last_checkpoint``)
    names; ``*_final.pth`` and other names never match the periodic pattern.
    """

    def __init__(
        self,
        checkpointer: Checkpointer,
        period: int,
        max_iter: int | None = None,
        max_to_keep: int | None = None,
        file_prefix: str = "model",
    ) -> None:
        """
        Args:
            checkpointer: the checkpointer that saves.
            period: save every this many iterations (> 0).
            max_iter: total iterations; the final checkpoint is saved at ``max_iter - 1``.
            max_to_keep: number of periodic checkpoints to keep (> 0); ``None`` keeps all.
            file_prefix: the file name prefix.
        """
        if int(period) <= 0:
            raise ValueError(f"Checkpoint period must be positive, got {period}")
        if max_to_keep is not None and max_to_keep <= 0:
            raise ValueError(f"max_to_keep must be positive or None, got {max_to_keep}")
        super().__init__(checkpointer, period, max_iter, max_to_keep, file_prefix)
        self._pattern = re.compile(rf"^{re.escape(file_prefix)}_(\d{{7,}})\.pth$")

    def step(self, iteration: int, **kwargs: Any) -> None:
        """Saves (and rotates) when ``iteration`` calls for it.

        Args:
            iteration: the iteration just finished, in ``[0, max_iter - 1]``.
            **kwargs: extra data saved with the checkpoint (``iteration`` is added).
        """
        iteration = int(iteration)
        state = {"iteration": iteration, **kwargs}
        if (iteration + 1) % self.period == 0:
            self.checkpointer.save(f"{self.file_prefix}_{iteration:07d}", **state)
            if self.max_to_keep is not None:
                self._delete_old(iteration)
        if self.max_iter is not None and iteration >= self.max_iter - 1:
            self.checkpointer.save(f"{self.file_prefix}_final", **state)

    def _pointed_to(self, save_dir: str, names: list[str]) -> set[str]:
        protected = set()
        for name in names:
            if not name.endswith("checkpoint") or "." in name:
                continue
            path = os.path.join(save_dir, name)
            try:
                with self.path_manager.open(path, "r") as f:
                    protected.add(os.path.basename(f.read(4096).strip()))
            except (OSError, UnicodeDecodeError):
                continue  # not a pointer file, or removed meanwhile
        return protected

    def _delete_old(self, iteration: int) -> None:
        ckpt = self.checkpointer
        if not ckpt.save_dir or not ckpt.save_to_disk:
            return
        names = self.path_manager.ls(ckpt.save_dir)
        periodic = []
        for name in names:
            m = self._pattern.match(name)
            # Files from iterations after this one belong to a run we resumed before; leave
            # them to the user rather than guessing.
            if m is not None and int(m.group(1)) <= iteration:
                periodic.append((int(m.group(1)), name))
        periodic.sort(reverse=True)
        protected = self._pointed_to(ckpt.save_dir, names)
        for _, name in periodic[self.max_to_keep :]:
            if name in protected:
                continue
            path = os.path.join(ckpt.save_dir, name)
            logger.info(f"Deleting old checkpoint {path}")
            self.path_manager.rm(path)

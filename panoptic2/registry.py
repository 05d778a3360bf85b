"""Every registry of panoptic2, declared in one place with its call convention.

A registry maps a name (usually the registered object's ``__name__``) to a class or function
that a config names. Each registry below says how its objects are called and which
modules register the builtin entries (``locations``): those modules are imported the first
time the registry is searched, so a lookup never depends on what happened to be imported
before. Plugins register their own entries when they are imported (see README "Plugins").

* ``META_ARCH_REGISTRY``: ``obj(cfg)`` -> ``nn.Module``
* ``BACKBONE_REGISTRY``: ``obj(cfg, input_shape: ShapeSpec)`` -> ``Backbone``
* ``SEM_SEG_HEADS_REGISTRY``, ``INS_EMBED_HEADS_REGISTRY``, ``PROPOSAL_GENERATOR_REGISTRY``,
  ``ROI_HEADS_REGISTRY``: ``obj(cfg, input_shape: dict[str, ShapeSpec])`` -> ``nn.Module``
* ``RPN_HEAD_REGISTRY``, ``ANCHOR_GENERATOR_REGISTRY``:
  ``obj(cfg, input_shape: list[ShapeSpec])`` -> ``nn.Module``
* ``DATA_MAPPER_REGISTRY``: ``obj(cfg, is_train, dataset_name)`` -> mapper callable
* ``TRAIN_SAMPLER_REGISTRY``: ``obj(dataset, *, seed, start, repeat_threshold)`` -> sampler
* ``EVALUATOR_REGISTRY``: ``obj(cfg, dataset_name, output_dir)`` -> ``DatasetEvaluator``
* ``HOOK_REGISTRY``: ``obj(cfg, trainer)`` -> ``HookBase``
* ``OPTIMIZER_REGISTRY``: ``obj(cfg, param_groups)`` -> ``torch.optim.Optimizer``
* ``LR_SCHEDULER_REGISTRY``: ``obj(cfg)`` -> fvcore ``ParamScheduler`` (the LR multiplier)
* ``WEIGHT_CONVERTER_REGISTRY``: ``obj(keys: list[str])`` -> ``{their key: our key}``; an
  optional ``obj.prepare(state_dict)`` -> ``state_dict`` rewrites values first (Caffe2)
* ``EXPORT_ADAPTER_REGISTRY``: ``obj(model, *, postprocess: bool)`` -> ``ExportAdapter``,
  registered under the meta-architecture's name (``tools/export_model.py``)

Nothing here imports the rest of the package, so any module can import this one.
"""

from __future__ import annotations

import difflib
import importlib
import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from tabulate import tabulate

__all__ = [
    "ANCHOR_GENERATOR_REGISTRY",
    "BACKBONE_REGISTRY",
    "DATA_MAPPER_REGISTRY",
    "EVALUATOR_REGISTRY",
    "EXPORT_ADAPTER_REGISTRY",
    "HOOK_REGISTRY",
    "INS_EMBED_HEADS_REGISTRY",
    "LR_SCHEDULER_REGISTRY",
    "META_ARCH_REGISTRY",
    "OPTIMIZER_REGISTRY",
    "PROPOSAL_GENERATOR_REGISTRY",
    "REGISTRIES",
    "ROI_HEADS_REGISTRY",
    "RPN_HEAD_REGISTRY",
    "SEM_SEG_HEADS_REGISTRY",
    "TRAIN_SAMPLER_REGISTRY",
    "WEIGHT_CONVERTER_REGISTRY",
    "Registry",
    "UnknownNameError",
    "nearest_name",
]


class UnknownNameError(KeyError):
    """A name that is not registered; prints its message as written (``KeyError`` would
    print its repr, quotes and escaped newlines included)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def nearest_name(name: str, candidates: Iterable[str]) -> str | None:
    """The candidate closest to ``name``: a case-insensitive match first, else the closest
    spelling (``difflib``), else None."""
    candidates = list(candidates)
    same_case = [c for c in candidates if c.lower() == str(name).lower()]
    if same_case:
        return same_case[0]
    close = difflib.get_close_matches(str(name), candidates, n=1)
    return close[0] if close else None


def unknown_name_error(kind: str, name: str, known: Iterable[str]) -> UnknownNameError:
    """The error for an unknown ``name``: lists the known names and the nearest one.

    Args:
        kind: what is looked up, e.g. ``"Dataset"`` or ``"BACKBONE (MODEL.BACKBONE.NAME)"``.
        name: the name that was not found.
        known: the registered names.

    Returns:
        An :class:`UnknownNameError` to raise.
    """
    known = sorted(known)
    msg = f"{kind} '{name}' is not registered. Registered names: {known}."
    close = nearest_name(name, known)
    if close:
        msg += f" Did you mean '{close}'?"
    return UnknownNameError(msg)


class Registry:
    """Name -> object map with a documented call convention (Detectron2's/fvcore's API).

    Register with ``@REGISTRY.register()`` (under ``__name__``) or ``REGISTRY.register(obj)``;
    look up with ``REGISTRY.get(name)``. ``print(REGISTRY)`` lists the entries.

    Args:
        name: the registry's name, e.g. ``"BACKBONE"``.
        call: how registered objects are called (shown in ``repr``).
        chosen_by: the config key that names an entry, for error messages ("" if none).
        locations: modules that register the builtin entries; imported on first search.
    """

    def __init__(
        self, name: str, *, call: str, chosen_by: str = "", locations: Sequence[str] = ()
    ) -> None:
        self.name = name
        self.call = call
        self.chosen_by = chosen_by
        self.locations = tuple(locations)
        self._obj_map: dict[str, Any] = {}
        self._imported = False
        self._lock = threading.RLock()

    def _import_locations(self) -> None:
        if self._imported:
            return
        with self._lock:
            if self._imported:
                return
            # Set first: the imported modules register into this registry and may search it.
            self._imported = True
            for module in self.locations:
                importlib.import_module(module)

    def register(self, obj: Any = None, *, name: str | None = None) -> Any:
        """Registers ``obj`` under ``name`` (default ``obj.__name__``).

        Used bare (``REGISTRY.register(obj)``) it returns ``obj``; called without ``obj``
        it returns a decorator.

        Raises:
            ValueError: the name is already taken by another object.
        """
        if obj is None:
            return lambda o: self.register(o, name=name)
        key = name or obj.__name__
        with self._lock:
            existing = self._obj_map.get(key)
            if existing is not None and existing is not obj:
                raise ValueError(
                    f"{self.name} registry: '{key}' is already registered (by "
                    f"{_qualname(existing)}); cannot register {_qualname(obj)} under it. "
                    f"Call {self.name}_REGISTRY.remove('{key}') first if replacing it is "
                    "intended."
                )
            self._obj_map[key] = obj
        return obj

    def get(self, name: str) -> Any:
        """The object registered as ``name``.

        Raises:
            UnknownNameError: (a ``KeyError``) ``name`` is not registered; the message lists
                the registered names and the nearest one.
        """
        obj = self._obj_map.get(name)
        if obj is None:
            self._import_locations()
            obj = self._obj_map.get(name)
        if obj is None:
            kind = f"{self.name} ({self.chosen_by})" if self.chosen_by else self.name
            raise unknown_name_error(kind, name, self._obj_map)
        return obj

    def remove(self, name: str) -> Any:
        """Unregisters ``name`` and returns its object (unknown names raise as :meth:`get`)."""
        obj = self.get(name)
        with self._lock:
            del self._obj_map[name]
        return obj

    def names(self) -> list[str]:
        """The registered names, sorted."""
        self._import_locations()
        return sorted(self._obj_map)

    def __contains__(self, name: object) -> bool:
        self._import_locations()
        return name in self._obj_map

    def __iter__(self) -> Iterator[tuple[str, Any]]:
        self._import_locations()
        return iter(list(self._obj_map.items()))

    def __len__(self) -> int:
        self._import_locations()
        return len(self._obj_map)

    def __repr__(self) -> str:
        self._import_locations()
        rows = [(k, _qualname(v)) for k, v in sorted(self._obj_map.items())]
        table = tabulate(rows, headers=["name", "object"], tablefmt="simple")
        chosen = f"; chosen by {self.chosen_by}" if self.chosen_by else ""
        return f"Registry {self.name} (called as {self.call}{chosen}):\n{table}"

    __str__ = __repr__


def _qualname(obj: Any) -> str:
    module = getattr(obj, "__module__", None)
    name = getattr(obj, "__qualname__", None) or repr(obj)
    return f"{module}.{name}" if module else name


def _registry(name: str, call: str, chosen_by: str, *locations: str) -> Registry:
    return Registry(name, call=call, chosen_by=chosen_by, locations=locations)


_FEATURES = "input_shape: dict[str, ShapeSpec]"
_LEVELS = "input_shape: list[ShapeSpec]"

META_ARCH_REGISTRY = _registry(
    "META_ARCH", "obj(cfg) -> nn.Module", "MODEL.META_ARCHITECTURE", "panoptic2.modeling.meta_arch"
)
BACKBONE_REGISTRY = _registry(
    "BACKBONE",
    "obj(cfg, input_shape: ShapeSpec) -> Backbone",
    "MODEL.BACKBONE.NAME",
    "panoptic2.modeling.backbone",
)
SEM_SEG_HEADS_REGISTRY = _registry(
    "SEM_SEG_HEADS",
    f"obj(cfg, {_FEATURES}) -> nn.Module",
    "MODEL.SEM_SEG_HEAD.NAME",
    "panoptic2.modeling.heads",
)
INS_EMBED_HEADS_REGISTRY = _registry(
    "INS_EMBED_HEADS",
    f"obj(cfg, {_FEATURES}) -> nn.Module",
    "MODEL.INS_EMBED_HEAD.NAME",
    "panoptic2.modeling.heads",
)
PROPOSAL_GENERATOR_REGISTRY = _registry(
    "PROPOSAL_GENERATOR",
    f"obj(cfg, {_FEATURES}) -> nn.Module",
    "MODEL.PROPOSAL_GENERATOR.NAME",
    "panoptic2.modeling.proposal_generator",
)
RPN_HEAD_REGISTRY = _registry(
    "RPN_HEAD",
    f"obj(cfg, {_LEVELS}) -> nn.Module",
    "MODEL.RPN.HEAD_NAME",
    "panoptic2.modeling.proposal_generator.rpn",
)
ANCHOR_GENERATOR_REGISTRY = _registry(
    "ANCHOR_GENERATOR",
    f"obj(cfg, {_LEVELS}) -> nn.Module",
    "MODEL.ANCHOR_GENERATOR.NAME",
    "panoptic2.modeling.anchor_generator",
)
ROI_HEADS_REGISTRY = _registry(
    "ROI_HEADS",
    f"obj(cfg, {_FEATURES}) -> nn.Module",
    "MODEL.ROI_HEADS.NAME",
    "panoptic2.modeling.roi_heads",
)
DATA_MAPPER_REGISTRY = _registry(
    "DATA_MAPPER",
    "obj(cfg, is_train: bool, dataset_name: str | None) -> callable(dataset_dict) -> model "
    "input; dataset_name names the dataset whose label space the mapper uses",
    "INPUT.DATASET_MAPPER_NAME",
    "panoptic2.data.mappers",
)
TRAIN_SAMPLER_REGISTRY = _registry(
    "TRAIN_SAMPLER",
    "obj(dataset, *, seed: int, start: int, repeat_threshold: float) -> Sampler of indices",
    "DATALOADER.SAMPLER_TRAIN",
    "panoptic2.data.build",
)
EVALUATOR_REGISTRY = _registry(
    "EVALUATOR",
    "obj(cfg, dataset_name: str, output_dir: str | None) -> DatasetEvaluator",
    "the evaluated dataset's 'evaluators' metadata",
    "panoptic2.evaluation.cityscapes_evaluation",
    "panoptic2.evaluation.coco_evaluation",
    "panoptic2.evaluation.coco_panoptic_evaluation",
    "panoptic2.evaluation.sem_seg_evaluation",
)
HOOK_REGISTRY = _registry(
    "HOOK", "obj(cfg, trainer) -> HookBase", "HOOKS.CUSTOM", "panoptic2.engine.hooks"
)
OPTIMIZER_REGISTRY = _registry(
    "OPTIMIZER",
    "obj(cfg, param_groups: list[dict]) -> torch.optim.Optimizer",
    "SOLVER.OPTIMIZER",
    "panoptic2.solver.build",
)
LR_SCHEDULER_REGISTRY = _registry(
    "LR_SCHEDULER",
    "obj(cfg) -> fvcore ParamScheduler of the LR multiplier (the builder adds the warmup)",
    "SOLVER.LR_SCHEDULER_NAME",
    "panoptic2.solver.lr_scheduler",
)
WEIGHT_CONVERTER_REGISTRY = _registry(
    "WEIGHT_CONVERTER",
    "obj(keys: list[str]) -> dict[str, str] from a foreign checkpoint's keys to ours",
    "",
    "panoptic2.checkpoint.weight_conversion",
)
EXPORT_ADAPTER_REGISTRY = _registry(
    "EXPORT_ADAPTER",
    "obj(model: nn.Module, *, postprocess: bool) -> ExportAdapter, under the meta-architecture's "
    "name",
    "MODEL.META_ARCHITECTURE",
    "panoptic2.export.adapters",
)

REGISTRIES: dict[str, Registry] = {
    r.name: r
    for r in (
        META_ARCH_REGISTRY,
        BACKBONE_REGISTRY,
        SEM_SEG_HEADS_REGISTRY,
        INS_EMBED_HEADS_REGISTRY,
        PROPOSAL_GENERATOR_REGISTRY,
        RPN_HEAD_REGISTRY,
        ANCHOR_GENERATOR_REGISTRY,
        ROI_HEADS_REGISTRY,
        DATA_MAPPER_REGISTRY,
        TRAIN_SAMPLER_REGISTRY,
        EVALUATOR_REGISTRY,
        HOOK_REGISTRY,
        OPTIMIZER_REGISTRY,
        LR_SCHEDULER_REGISTRY,
        WEIGHT_CONVERTER_REGISTRY,
        EXPORT_ADAPTER_REGISTRY,
    )
}
"""Every registry by name, e.g. ``REGISTRIES["BACKBONE"]``."""

"""``torch.compile`` of a model, in place, part by part (``MODEL.COMPILE``).

A meta-architecture names the parts that compile as whole graphs in a ``compiled_parts``
class attribute: submodules (backbone, heads with their losses) and tensor-only methods
(e.g. Panoptic-DeepLab's :meth:`~panoptic2.modeling.meta_arch.PanopticDeepLab.panoptic_maps`,
whose grouping and merge ops trace through their fake kernels). Each part is compiled with
``fullgraph=True``, so a graph break is an error, never a silent slowdown; what lies between
the parts (input batching, building result dicts and ``Instances``) stays eager.

Compiling in place keeps the model's class, attributes and state-dict names: checkpoints of
a compiled model have no ``_orig_mod.`` prefix and load into an eager model and back.
Compilation happens lazily, on the first call of each part (and again for a new mode, e.g.
train / eval, or a new input size, which is then traced with dynamic sizes).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from panoptic2.ops import extension

__all__ = ["COMPILE_MODES", "compile_model", "compiled_parts_of"]

logger = logging.getLogger(__name__)

# torch.compile's modes (MODEL.COMPILE_MODE).
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def compiled_parts_of(model: nn.Module) -> Sequence[str] | None:
    """The names in ``model``'s ``compiled_parts``, or None when it declares none."""
    parts = getattr(type(model), "compiled_parts", None)
    return None if parts is None else tuple(parts)


def _traced_with_dynamic_output_shapes(fn: Callable, compiled: Callable) -> Callable:
    """``compiled``, called with data-dependent output sizes (``nonzero``) traced as symbolic
    sizes rather than breaking the graph; the setting holds only during these calls."""

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        with torch._dynamo.config.patch(capture_dynamic_output_shape_ops=True):
            return compiled(*args, **kwargs)

    return call


def compile_model(
    model: nn.Module,
    *,
    mode: str = "default",
    backend: str | Callable = "inductor",
    freeze: bool = False,
) -> list[str]:
    """Compiles ``model``'s ``compiled_parts`` in place, each with ``fullgraph=True``.

    A model that declares no ``compiled_parts`` is compiled whole (``nn.Module.compile``),
    where graph breaks are allowed; this is logged.

    Args:
        model: the model, or a DistributedDataParallel wrapping it.
        mode: one of :data:`COMPILE_MODES`.
        backend: a ``torch.compile`` backend (``"inductor"``; ``"aot_eager"`` or
            ``"eager"`` to debug; a callable backend, e.g. a graph counter in tests).
        freeze: inductor's freezing (``MODEL.COMPILE_FREEZE``): calls without gradients
            may compile the weights in as constants (inductor assumes they do not change);
            for models that only run inference.

    Returns:
        The names of the compiled parts (``[""]`` for the whole model).

    Raises:
        ValueError: an unknown mode, a part name that is neither a submodule nor a method,
            a model on an XLA device (torch_xla compiles its own graphs), or ``freeze``
            with a backend other than inductor.
    """
    if mode not in COMPILE_MODES:
        raise ValueError(f"MODEL.COMPILE_MODE must be one of {COMPILE_MODES}, got {mode!r}")
    if freeze and backend != "inductor":
        raise ValueError(
            f"MODEL.COMPILE_FREEZE is an option of the inductor backend, not of {backend!r}"
        )
    if isinstance(model, DistributedDataParallel):
        model = model.module
    param = next(model.parameters(), None)
    if param is not None and param.device.type == "xla":
        raise ValueError(
            "MODEL.COMPILE is for eager devices (CPU, CUDA): on XLA devices torch_xla already "
            "compiles every step; set MODEL.COMPILE False"
        )
    # Load _C now: its one-time load takes a lock, which cannot be traced.
    extension.has_ops()
    options: dict[str, Any] = {"mode": mode, "backend": backend}
    if freeze:
        # torch.compile takes a mode or inductor options, not both: the mode's options go in.
        mode_options = torch._inductor.list_mode_options(mode)
        options = {"backend": backend, "options": {**mode_options, "freezing": True}}
    parts = compiled_parts_of(model)
    if parts is None:
        logger.warning(
            "%s declares no compiled_parts: compiling it whole, graph breaks allowed",
            type(model).__name__,
        )
        model.compile(**options)
        return [""]
    for name in parts:
        part = getattr(model, name, None)
        if isinstance(part, nn.Module):
            part.compile(fullgraph=True, **options)
        elif callable(part):
            compiled = torch.compile(part, fullgraph=True, **options)
            setattr(model, name, _traced_with_dynamic_output_shapes(part, compiled))
        else:
            raise ValueError(
                f"{type(model).__name__}.compiled_parts names {name!r}, which is neither a "
                "submodule nor a method of the model"
            )
    logger.info(
        "Compiled %s (mode %s, backend %s%s), each part one graph: %s",
        type(model).__name__,
        mode,
        getattr(backend, "__name__", backend),
        ", weights frozen in inference graphs" if freeze else "",
        ", ".join(parts),
    )
    return list(parts)

"""Exporting an :class:`~.adapters.ExportAdapter` to ``torch.export``, TorchScript and ONNX.

Every format keeps H and W dynamic: ``torch.export`` and ONNX declare them as
``size_divisibility * n`` with ``n >= 1`` a symbolic dimension; TorchScript traces the size
arithmetic, so the traced program follows the input size too. Batch size is fixed to 1.

What each artifact needs to run (no panoptic2 model code in any of them):

* ``model.pt2`` (``torch.export``): ``torch.export.load(path).module()``; when the program
  calls ``torch.ops.panoptic2.*`` (Panoptic-DeepLab's post-processing), load the ops first
  with ``panoptic2.ops.extension.require_ops()``, which also registers their fake kernels.
* ``model.pt`` (TorchScript): ``torch.jit.load(path)``; its panoptic2 ops need the library,
  e.g. ``torch.ops.load_library(".../panoptic2/_C.<abi>.so")`` (C++: link or ``dlopen`` it).
* ``model.onnx``: any ONNX runtime; it holds the network only (no custom ops).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.export.dynamic_shapes import refine_dynamic_shapes_from_suggested_fixes

from panoptic2.ops import extension
from panoptic2.utils.file_io import atomic_write

from .adapters import ExportAdapter

__all__ = [
    "ARTIFACT_NAMES",
    "EXPORT_FORMATS",
    "export_adapter",
    "image_dynamic_shapes",
    "load_artifact",
    "max_abs_differences",
    "save_artifact",
]

logger = logging.getLogger(__name__)

EXPORT_FORMATS = ("export", "torchscript", "onnx")
# The file each format writes in the output directory.
ARTIFACT_NAMES = {"export": "model.pt2", "torchscript": "model.pt", "onnx": "model.onnx"}


def image_dynamic_shapes(size_divisibility: int) -> dict[str, dict[int, Any]]:
    """``dynamic_shapes`` of the adapters' ``image``: H and W any positive multiple of
    ``size_divisibility``."""
    rows = torch.export.Dim("height_blocks", min=1)
    cols = torch.export.Dim("width_blocks", min=1)
    return {"image": {2: size_divisibility * rows, 3: size_divisibility * cols}}


def export_adapter(adapter: ExportAdapter, image: torch.Tensor, fmt: str) -> Any:
    """Exports ``adapter`` with ``image`` as the example input.

    Args:
        adapter: the adapter (its model in eval mode).
        image: (1, 3, H, W) float32 example input (see :mod:`.adapters`).
        fmt: one of :data:`EXPORT_FORMATS`.

    Returns:
        A ``torch.export.ExportedProgram``, a ``torch.jit.ScriptModule`` or a
        ``torch.onnx.ONNXProgram``.

    Raises:
        ValueError: an unknown format, ONNX of an adapter with post-processing (its
            custom ops have no ONNX form: use ``postprocess=False``), or TorchScript of a
            post-processing that a trace cannot record (``postprocess_traceable``).
    """
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"Unknown export format {fmt!r}; use one of {EXPORT_FORMATS}")
    adapter.check_input(image)
    if fmt == "onnx" and adapter.postprocess:
        raise ValueError(
            "ONNX holds the network part only (the post-processing ops are panoptic2 custom "
            "ops): build the adapter with postprocess=False"
        )
    if fmt == "torchscript" and adapter.postprocess and not adapter.postprocess_traceable:
        raise ValueError(
            f"TorchScript holds the network part only of {type(adapter).__name__}: tracing "
            "would fix its post-processing's data-dependent sizes (use the export format, or "
            "postprocess=False)"
        )
    # The wrapper's own mode: the wrapped model is in eval mode already.
    adapter.eval()
    # Load _C now: its one-time load takes a lock, which cannot be traced.
    extension.has_ops()
    with torch.no_grad():
        if fmt == "torchscript":
            # check_trace would only rerun the same input; the tests run other sizes.
            return torch.jit.trace(adapter, (image,), check_trace=False)
        if fmt == "export":
            return _export_with_size_range(
                lambda shapes: torch.export.export(adapter, (image,), dynamic_shapes=shapes),
                adapter,
            )
        return _export_with_size_range(
            lambda shapes: torch.onnx.export(
                adapter,
                (image,),
                dynamo=True,
                dynamic_shapes=shapes,
                input_names=["image"],
                output_names=list(adapter.output_names),
                verbose=False,
            ),
            adapter,
        )


def _export_with_size_range(export: Callable[[dict], Any], adapter: ExportAdapter) -> Any:
    """Runs ``export(dynamic_shapes)`` over every size the model handles with one program.

    A size-dependent branch (e.g. ASPP's image pooling, global below its pooling kernel)
    narrows the range: torch.export then fails naming the range it found, and the export
    is rerun on that range (logged); the program refuses sizes outside it. Sizes of 1 are not
    special-cased (``backed_size_oblivious``), so a feature map that is 1 pixel wide in the
    example does not pin that size.
    """
    shapes = image_dynamic_shapes(adapter.size_divisibility)
    with torch.fx.experimental._config.patch(backed_size_oblivious=True):
        try:
            return export(shapes)
        except torch._dynamo.exc.UserError as e:
            refined = refine_dynamic_shapes_from_suggested_fixes(e.msg, shapes)
            if refined == shapes:
                raise
            logger.warning(
                "%s handles only part of the sizes with one program; exporting %s instead of "
                "any multiple of %d",
                type(adapter.model).__name__,
                _describe_range(refined),
                adapter.size_divisibility,
            )
            return export(refined)


def _describe_range(shapes: dict[str, dict[int, Any]]) -> str:
    dims = shapes["image"]
    parts = []
    for axis, name in ((2, "H"), (3, "W")):
        dim = dims[axis]
        parts.append(f"{name} = {dim}" + (f" (min {dim.min})" if hasattr(dim, "min") else ""))
    return ", ".join(parts)


def save_artifact(artifact: Any, fmt: str, path: str) -> None:
    """Writes an artifact of :func:`export_adapter` atomically (temp file + rename)."""
    if fmt == "export":
        atomic_write(path, lambda f: torch.export.save(artifact, f))
    elif fmt == "torchscript":
        atomic_write(path, lambda f: torch.jit.save(artifact, f))
    elif fmt == "onnx":
        atomic_write(path, lambda f: f.write(artifact.model_proto.SerializeToString()))
    else:
        raise ValueError(f"Unknown export format {fmt!r}; use one of {EXPORT_FORMATS}")


def load_artifact(path: str) -> Callable[[torch.Tensor], tuple[torch.Tensor, ...]]:
    """A saved artifact as a function of the (1, 3, H, W) image, by file extension.

    ``.pt2`` and ``.pt`` load the panoptic2 ops first (they may call them); ``.onnx`` runs in
    onnxruntime on the CPU.

    Returns:
        ``f(image) -> tuple`` of the artifact's outputs as CPU tensors.
    """
    ext = os.path.splitext(path)[1]
    if ext in (".pt2", ".pt"):
        extension.require_ops()
        program = torch.export.load(path).module() if ext == ".pt2" else torch.jit.load(path)

        def run(image: torch.Tensor) -> tuple[torch.Tensor, ...]:
            with torch.no_grad():
                return tuple(program(image))

        return run
    if ext == ".onnx":
        import onnxruntime  # optional dependency (dev extra), only needed for ONNX

        session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name

        def run_onnx(image: torch.Tensor) -> tuple[torch.Tensor, ...]:
            outputs = session.run(None, {name: image.detach().cpu().numpy()})
            return tuple(torch.from_numpy(o) for o in outputs)

        return run_onnx
    raise ValueError(f"{path}: not an exported artifact (.pt2, .pt or .onnx)")


def max_abs_differences(
    expected: Sequence[torch.Tensor], produced: Sequence[torch.Tensor], names: Sequence[str]
) -> dict[str, float]:
    """Largest absolute difference per output; ``inf`` where shapes or dtypes differ in kind
    (float vs integer), so a wrong-sized output can never pass as close.

    Raises:
        ValueError: the numbers of outputs differ.
    """
    if not len(expected) == len(produced) == len(names):
        raise ValueError(
            f"{len(produced)} outputs produced, {len(expected)} expected ({list(names)})"
        )
    diffs = {}
    for name, a, b in zip(names, expected, produced):
        b = torch.as_tensor(b).to(a.device)
        if a.shape != b.shape or a.is_floating_point() != b.is_floating_point():
            diffs[name] = float("inf")
        elif a.numel() == 0:
            diffs[name] = 0.0
        else:
            diffs[name] = float((a.double() - b.double()).abs().max())
    return diffs

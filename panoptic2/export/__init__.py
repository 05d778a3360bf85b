"""Deployable artifacts of trained models: ``torch.export``, TorchScript and ONNX.

* :mod:`.adapters`: :class:`ExportAdapter`, one per meta-architecture (registered in
  ``EXPORT_ADAPTER_REGISTRY``): the model's inference as a function of one image tensor.
* :mod:`.formats`: :func:`export_adapter`, :func:`save_artifact`, :func:`load_artifact`.

``tools/export_model.py`` is the command-line front end.
"""

from .adapters import ExportAdapter, PanopticDeepLabExport, RCNNNetworkExport, build_export_adapter
from .formats import (
    ARTIFACT_NAMES,
    EXPORT_FORMATS,
    export_adapter,
    image_dynamic_shapes,
    load_artifact,
    max_abs_differences,
    save_artifact,
)

__all__ = [
    "ARTIFACT_NAMES",
    "EXPORT_FORMATS",
    "ExportAdapter",
    "PanopticDeepLabExport",
    "RCNNNetworkExport",
    "build_export_adapter",
    "export_adapter",
    "image_dynamic_shapes",
    "load_artifact",
    "max_abs_differences",
    "save_artifact",
]

"""Checkpoints: atomic saving, safe loading, and loading weights from other frameworks."""

from .c2_model_loading import (
    convert_c2_name,
    convert_c2_names,
    prepare_c2_weights,
    read_pickle_checkpoint,
)
from .checkpointer import Checkpointer, PeriodicCheckpointer
from .detectron2_rcnn_names import rename_detectron2_rcnn
from .load_report import IncompleteWeightsError, LoadReport, require_loaded_weights
from .safe_loading import (
    CorruptCheckpointError,
    UnsafeCheckpointError,
    read_torch_checkpoint,
    read_weights_pickle,
)
from .weight_conversion import (
    WEIGHT_CONVERTER_REGISTRY,
    AlignmentResult,
    align_state_dicts,
    choose_and_align,
    format_alignment_tables,
)

__all__ = [
    "WEIGHT_CONVERTER_REGISTRY",
    "AlignmentResult",
    "Checkpointer",
    "CorruptCheckpointError",
    "IncompleteWeightsError",
    "LoadReport",
    "PeriodicCheckpointer",
    "UnsafeCheckpointError",
    "align_state_dicts",
    "choose_and_align",
    "convert_c2_name",
    "convert_c2_names",
    "format_alignment_tables",
    "prepare_c2_weights",
    "read_pickle_checkpoint",
    "read_torch_checkpoint",
    "read_weights_pickle",
    "rename_detectron2_rcnn",
    "require_loaded_weights",
]

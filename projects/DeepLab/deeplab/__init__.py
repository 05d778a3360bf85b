"""The DeepLab plugin: importing it registers the project's config keys, heads, meta-arch and
export adapter.

Name it in a config (``PLUGINS: [projects.DeepLab.deeplab]``) or on the command line
(``--plugin projects.DeepLab.deeplab``); see ``projects/DeepLab/README.md``.
"""

from .config import add_deeplab_config
from .export import SemanticSegmentorExport
from .heads import DeepLabV3Head, DeepLabV3PlusHead, build_sem_seg_loss
from .semantic_seg import SemanticSegmentor

__all__ = [
    "DeepLabV3Head",
    "DeepLabV3PlusHead",
    "SemanticSegmentor",
    "SemanticSegmentorExport",
    "add_deeplab_config",
    "build_sem_seg_loss",
]

"""The DeepLab plugin: importing it registers the project's config keys, heads and meta-arch.

Name it in a config (``PLUGINS: [projects.DeepLab.deeplab]``) or on the command line
(``--plugin projects.DeepLab.deeplab``); see ``projects/DeepLab/README.md``.
"""

from .config import add_deeplab_config
from .heads import DeepLabV3Head, DeepLabV3PlusHead, build_sem_seg_loss
from .semantic_seg import SemanticSegmentor

__all__ = [
    "DeepLabV3Head",
    "DeepLabV3PlusHead",
    "SemanticSegmentor",
    "add_deeplab_config",
    "build_sem_seg_loss",
]

from .build import (
    INS_EMBED_HEADS_REGISTRY,
    SEM_SEG_HEADS_REGISTRY,
    build_ins_embed_head,
    build_sem_seg_head,
)
from .panoptic_deeplab import (
    PanopticDeepLabInsEmbedHead,
    PanopticDeepLabSemSegHead,
    decoder_args_from_config,
)
from .semantic_fpn import SemSegFPNHead

__all__ = [
    "SemSegFPNHead",
    "PanopticDeepLabInsEmbedHead",
    "PanopticDeepLabSemSegHead",
    "decoder_args_from_config",
    "INS_EMBED_HEADS_REGISTRY",
    "SEM_SEG_HEADS_REGISTRY",
    "build_ins_embed_head",
    "build_sem_seg_head",
]

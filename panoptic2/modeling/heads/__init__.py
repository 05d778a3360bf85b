from .build import (
    INS_EMBED_HEADS_REGISTRY,
    SEM_SEG_HEADS_REGISTRY,
    build_ins_embed_head,
    build_sem_seg_head,
)

__all__ = [
    "INS_EMBED_HEADS_REGISTRY",
    "SEM_SEG_HEADS_REGISTRY",
    "build_ins_embed_head",
    "build_sem_seg_head",
]

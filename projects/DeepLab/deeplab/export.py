"""Export adapter of :class:`~.semantic_seg.SemanticSegmentor` (``tools/export_model.py``)."""

from __future__ import annotations

import torch

from panoptic2.export import ExportAdapter
from panoptic2.layers.argmax import argmax_over_classes
from panoptic2.registry import EXPORT_ADAPTER_REGISTRY

__all__ = ["SemanticSegmentorExport"]


@EXPORT_ADAPTER_REGISTRY.register(name="SemanticSegmentor")
class SemanticSegmentorExport(ExportAdapter):
    """DeepLabV3 / V3+: a backbone and a semantic head (see :class:`ExportAdapter` for the
    input contract).

    Outputs: ``sem_seg`` (1, C, H, W) float logits; with post-processing also ``sem_seg_ids``
    (1, H, W) int64, the argmax over classes (first maximum on ties).
    """

    network_output_names = ("sem_seg",)
    postprocess_output_names = ("sem_seg_ids",)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        self.check_input(image)
        features = self.model.backbone(self.normalize(image))
        sem_seg, _ = self.model.sem_seg_head(features, None)
        if not self.postprocess:
            return (sem_seg,)
        return sem_seg, argmax_over_classes(sem_seg, dim=1)

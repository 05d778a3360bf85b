"""Detectron2's DeepLab-family weight names -> ours (Panoptic-DeepLab, DeepLabV3, DeepLabV3+).

Detectron2's ``projects/Panoptic-DeepLab`` and ``projects/DeepLab`` models differ from ours
in where the decoder sits, nowhere else (backbone with the DeepLab stem, head towers and
predictors share our names):

* Detectron2's heads hold the decoder stages themselves (``sem_seg_head.decoder.res5.
  project_conv.convs.0.weight``, ``ins_embed_head.decoder.res2.fuse_conv.0.weight``); ours
  keep them in a :class:`~panoptic2.layers.DeepLabV3PlusDecoder` attribute of the head, whose
  own ``decoder`` holds the stages (``sem_seg_head.decoder.decoder.res5.…``).
* Detectron2's ``DeepLabV3Head`` names its ASPP ``sem_seg_head.aspp``; ours is the ASPP stage
  of the decoder, on ``res5``, the feature every Detectron2 DeepLabV3 config feeds it.

Both ``.pth`` files (``{"model": state_dict, ...}``) and model-zoo ``.pkl`` files
(``{"model": {name: ndarray}, "__author__": ...}``) carry these names;
:func:`~panoptic2.checkpoint.weight_conversion.choose_and_align` picks this converter when it
loads more of the model's tensors than any other.
"""

from __future__ import annotations

import re

from panoptic2.registry import WEIGHT_CONVERTER_REGISTRY

__all__ = ["detectron2_deeplab"]

# "<...>sem_seg_head.decoder." or "<...>ins_embed_head.decoder." not already followed by our
# inner "decoder." (a checkpoint in our names passes through unchanged).
_HEAD_DECODER = re.compile(r"^((?:.+\.)?(?:sem_seg_head|ins_embed_head))\.decoder\.(?!decoder\.)")
_V3_ASPP = re.compile(r"^((?:.+\.)?sem_seg_head)\.aspp\.")
# The feature Detectron2's DeepLabV3 configs give their ASPP (MODEL.SEM_SEG_HEAD.IN_FEATURES).
_V3_ASPP_FEATURE = "res5"


@WEIGHT_CONVERTER_REGISTRY.register()
def detectron2_deeplab(keys: list[str]) -> dict[str, str]:
    """Detectron2 Panoptic-DeepLab / DeepLabV3 / DeepLabV3+ names -> ours.

    ``{sem_seg_head,ins_embed_head}.decoder.X -> ….decoder.decoder.X`` and
    ``sem_seg_head.aspp.X -> sem_seg_head.decoder.decoder.res5.project_conv.X``; every other
    name is kept.

    Args:
        keys: the checkpoint's tensor names.

    Returns:
        ``{their name: our name}`` for every key.
    """
    renamed = {}
    for key in keys:
        new = _HEAD_DECODER.sub(r"\1.decoder.decoder.", key, count=1)
        new = _V3_ASPP.sub(rf"\1.decoder.decoder.{_V3_ASPP_FEATURE}.project_conv.", new, count=1)
        renamed[key] = new
    return renamed

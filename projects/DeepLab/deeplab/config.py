"""Config keys of the DeepLab project, added to every later ``get_cfg()`` on import.

They live under their own ``MODEL.DEEPLAB`` node so that they never collide with the keys that
the core's Panoptic-DeepLab adds under ``MODEL.SEM_SEG_HEAD`` (extensions may only add keys).
Names and defaults follow Detectron2's DeepLab project (``add_deeplab_config``), whose
``MODEL.SEM_SEG_HEAD.*`` keys map one to one onto these.
"""

from __future__ import annotations

from panoptic2.config import CfgNode, add_config_extension

__all__ = ["add_deeplab_config"]


@add_config_extension
def add_deeplab_config(cfg: CfgNode) -> None:
    """Adds ``MODEL.DEEPLAB.*``: the ASPP, the DeepLabV3+ decoder and the loss of the heads.

    Args:
        cfg: the root config (unfrozen); only new keys are added.
    """
    d = cfg.MODEL.DEEPLAB = CfgNode()
    # Backbone feature fed to ASPP (the last, dilated stage).
    d.IN_FEATURE = "res5"
    # DeepLabV3+ only: low-level features, fine to coarse, and the channels of their 1x1
    # projections (the paper's res2 -> 48).
    d.PROJECT_FEATURES = ["res2"]
    d.PROJECT_CHANNELS = [48]
    d.ASPP_CHANNELS = 256
    # Atrous rates at output stride 16; double them at output stride 8 (12, 24, 36).
    d.ASPP_DILATIONS = [6, 12, 18]
    d.ASPP_DROPOUT = 0.1
    # (h, w) of the image-pooling window, e.g. the training crop / output stride, so that
    # inference on bigger images pools over the extent seen in training; [] pools globally.
    d.ASPP_POOL_KERNEL_SIZE = []
    # Channels of the DeepLabV3+ decoder's two 3x3 fusion convs (DeepLabV3: unused).
    d.DECODER_CHANNELS = 256
    d.USE_DEPTHWISE_SEPARABLE_CONV = False
    # "cross_entropy" (mean over non-ignored pixels) or "hard_pixel_mining" (mean over the
    # LOSS_TOP_K fraction of non-ignored pixels with the largest loss, DeepLab2's recipe).
    d.LOSS_TYPE = "cross_entropy"
    d.LOSS_TOP_K = 0.2
    # Images of a batch are zero-padded (after normalisation) to a multiple of this;
    # 0 uses the largest stride of the backbone's outputs, so features align exactly.
    d.SIZE_DIVISIBILITY = 0

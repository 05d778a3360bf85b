"""Published checkpoints of the configs that reproduce a Detectron2 model-zoo entry.

One table, keyed by the Detectron2 config the entry reproduces: a config path relative to
Detectron2's ``configs/`` directory (what ``detectron2.model_zoo`` accepts), or, for
Detectron2's projects, the path inside the Detectron2 repository. Each entry names our
config (relative to ``configs/``, or ``projects/<Name>/configs/...``) and the checkpoint
Detectron2 published for it (``COCO-*`` ids from Detectron2's ``model_zoo.py``, the others
from its projects' READMEs). Add a model by adding a line.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CHECKPOINTS", "ModelZooEntry"]


@dataclass(frozen=True)
class ModelZooEntry:
    """A config of ours and the trained checkpoint published for it.

    Attributes:
        config: our config's model-zoo name (``coco/panoptic_fpn_R_50_1x.yaml``).
        checkpoint: the checkpoint's URL (any scheme ``PathManager`` resolves).
    """

    config: str
    checkpoint: str


def _d2(config: str, checkpoint: str) -> ModelZooEntry:
    return ModelZooEntry(config, "detectron2://" + checkpoint)


CHECKPOINTS: dict[str, ModelZooEntry] = {
    # Panoptic FPN, COCO panoptic.
    "COCO-PanopticSegmentation/panoptic_fpn_R_50_1x.yaml": _d2(
        "coco/panoptic_fpn_R_50_1x.yaml",
        "COCO-PanopticSegmentation/panoptic_fpn_R_50_1x/139514544/model_final_dbfeb4.pkl",
    ),
    "COCO-PanopticSegmentation/panoptic_fpn_R_50_3x.yaml": _d2(
        "coco/panoptic_fpn_R_50_3x.yaml",
        "COCO-PanopticSegmentation/panoptic_fpn_R_50_3x/139514569/model_final_c10459.pkl",
    ),
    "COCO-PanopticSegmentation/panoptic_fpn_R_101_3x.yaml": _d2(
        "coco/panoptic_fpn_R_101_3x.yaml",
        "COCO-PanopticSegmentation/panoptic_fpn_R_101_3x/139514519/model_final_cafdb1.pkl",
    ),
    # Mask R-CNN, COCO instances.
    "COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x.yaml": _d2(
        "coco/mask_rcnn_R_50_FPN_1x.yaml",
        "COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x/137260431/model_final_a54504.pkl",
    ),
    "COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x.yaml": _d2(
        "coco/mask_rcnn_R_50_FPN_3x.yaml",
        "COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x/137849600/model_final_f10217.pkl",
    ),
    "COCO-InstanceSegmentation/mask_rcnn_R_101_FPN_3x.yaml": _d2(
        "coco/mask_rcnn_R_101_FPN_3x.yaml",
        "COCO-InstanceSegmentation/mask_rcnn_R_101_FPN_3x/138205316/model_final_a3ec72.pkl",
    ),
    # Faster R-CNN, COCO boxes.
    "COCO-Detection/faster_rcnn_R_50_FPN_1x.yaml": _d2(
        "coco/faster_rcnn_R_50_FPN_1x.yaml",
        "COCO-Detection/faster_rcnn_R_50_FPN_1x/137257794/model_final_b275ba.pkl",
    ),
    "COCO-Detection/faster_rcnn_R_50_FPN_3x.yaml": _d2(
        "coco/faster_rcnn_R_50_FPN_3x.yaml",
        "COCO-Detection/faster_rcnn_R_50_FPN_3x/137849458/model_final_280758.pkl",
    ),
    "COCO-Detection/faster_rcnn_R_101_FPN_3x.yaml": _d2(
        "coco/faster_rcnn_R_101_FPN_3x.yaml",
        "COCO-Detection/faster_rcnn_R_101_FPN_3x/137851257/model_final_f6e8b1.pkl",
    ),
    # Panoptic-DeepLab (Detectron2's projects/Panoptic-DeepLab).
    "projects/Panoptic-DeepLab/configs/Cityscapes-PanopticSegmentation/"
    "panoptic_deeplab_R_52_os16_mg124_poly_90k_bs32_crop_512_1024.yaml": _d2(
        "cityscapes/panoptic_deeplab_R_52_os16_mg124_poly_90k_bs32_crop_512_1024.yaml",
        "PanopticDeepLab/Cityscapes-PanopticSegmentation/"
        "panoptic_deeplab_R_52_os16_mg124_poly_90k_bs32/model_final_bd324a.pkl",
    ),
    "projects/Panoptic-DeepLab/configs/Cityscapes-PanopticSegmentation/"
    "panoptic_deeplab_R_52_os16_mg124_poly_90k_bs32_crop_512_1024_dsconv.yaml": _d2(
        "cityscapes/panoptic_deeplab_R_52_os16_mg124_poly_90k_bs32_crop_512_1024_dsconv.yaml",
        "PanopticDeepLab/Cityscapes-PanopticSegmentation/"
        "panoptic_deeplab_R_52_os16_mg124_poly_90k_bs32_crop_512_1024_dsconv/"
        "model_final_23d03a.pkl",
    ),
    "projects/Panoptic-DeepLab/configs/COCO-PanopticSegmentation/"
    "panoptic_deeplab_R_52_os16_mg124_poly_200k_bs64_crop_640_640_coco_dsconv.yaml": _d2(
        "coco/panoptic_deeplab_R_52_os16_mg124_poly_200k_bs64_crop_640_640_coco_dsconv.yaml",
        "PanopticDeepLab/COCO-PanopticSegmentation/"
        "panoptic_deeplab_R_52_os16_mg124_poly_200k_bs64_crop_640_640_coco_dsconv/"
        "model_final_5e6da2.pkl",
    ),
    # DeepLabV3 / V3+ (Detectron2's projects/DeepLab; ours is the projects/DeepLab plugin).
    "projects/DeepLab/configs/Cityscapes-SemanticSegmentation/"
    "deeplab_v3_R_103_os16_mg124_poly_90k_bs16.yaml": _d2(
        "projects/DeepLab/configs/cityscapes/deeplab_v3_R_103_os16_mg124_poly_90k_bs16.yaml",
        "DeepLab/Cityscapes-SemanticSegmentation/deeplab_v3_R_103_os16_mg124_poly_90k_bs16/"
        "28041665/model_final_0dff1b.pkl",
    ),
    "projects/DeepLab/configs/Cityscapes-SemanticSegmentation/"
    "deeplab_v3_plus_R_103_os16_mg124_poly_90k_bs16.yaml": _d2(
        "projects/DeepLab/configs/cityscapes/deeplab_v3_plus_R_103_os16_mg124_poly_90k_bs16.yaml",
        "DeepLab/Cityscapes-SemanticSegmentation/deeplab_v3_plus_R_103_os16_mg124_poly_90k_bs16/"
        "28054032/model_final_a8a355.pkl",
    ),
}

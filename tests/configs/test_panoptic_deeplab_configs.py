"""Every Panoptic-DeepLab config in configs/ loads, builds, and states its recipe's values."""

import glob
import os

import pytest
import torch

import panoptic2.data.datasets  # noqa: F401  (registers the builtin datasets' metadata)
import panoptic2.modeling.heads.panoptic_deeplab  # noqa: F401  (registers the heads)
from panoptic2.config import load_config
from panoptic2.modeling import META_ARCH_REGISTRY
from panoptic2.modeling.meta_arch.panoptic_deeplab import PanopticDeepLab

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIGS = sorted(
    os.path.relpath(p, ROOT)
    for pattern in ("configs/*/panoptic_deeplab_*.yaml", "configs/Base-PanopticDeepLab*.yaml")
    for p in glob.glob(os.path.join(ROOT, pattern))
)


def _load(path: str):
    return load_config(os.path.join(ROOT, path), ["MODEL.DEVICE", "cpu"])


def test_all_expected_configs_exist():
    names = {os.path.basename(p) for p in CONFIGS}
    for expected in (
        "Base-PanopticDeepLab-OS16.yaml",
        "Base-PanopticDeepLab-OS32.yaml",
        "panoptic_deeplab_R50_os32.yaml",
        "panoptic_deeplab_R50_os16.yaml",
        "panoptic_deeplab_R50_beta_os16.yaml",
        "panoptic_deeplab_MobileNetV3_small_os32.yaml",
        "panoptic_deeplab_MobileNetV3_large_os32.yaml",
        "panoptic_deeplab_WideResNet41_os16.yaml",
        "panoptic_deeplab_SWideRNet_SAC_1_1_1_os16.yaml",
        "panoptic_deeplab_SWideRNet_SAC_1_1_3_os16.yaml",
        "panoptic_deeplab_SWideRNet_SAC_1_1_4.5_os16.yaml",
        "panoptic_deeplab_R50_beta_os32.yaml",
        "panoptic_deeplab_R18_os32.yaml",
    ):
        assert expected in names


@pytest.mark.parametrize("path", CONFIGS)
def test_config_builds_on_meta_device(path):
    cfg = _load(path)
    assert cfg.MODEL.META_ARCHITECTURE == "PanopticDeepLab"
    # Building on the meta device allocates nothing, so even SWideRNet-SAC-(1,1,4.5) is cheap.
    with torch.device("meta"):
        model = META_ARCH_REGISTRY.get(cfg.MODEL.META_ARCHITECTURE)(cfg)
    assert isinstance(model, PanopticDeepLab)
    # A classifier without an output for the ignore class has one output fewer.
    head = cfg.MODEL.SEM_SEG_HEAD
    assert model.sem_seg_head.predictor.out_channels == head.NUM_CLASSES - (
        not head.PREDICT_IGNORE_CLASS
    )
    assert model.ins_embed_head.center_predictor.out_channels == 1
    assert model.ins_embed_head.offset_predictor.out_channels == 2
    # The decoder's deepest input must be what the ASPP rates were chosen for.
    stride = model.backbone.output_shape()["res5"].stride
    rates = list(cfg.MODEL.SEM_SEG_HEAD.ASPP_DILATIONS)
    assert rates == ([3, 6, 9] if stride == 32 else [6, 12, 18]), (path, stride, rates)


@pytest.mark.parametrize(
    ("path", "stuff_area", "nms_kernel", "num_classes"),
    [
        ("configs/cityscapes/panoptic_deeplab_R50_os32.yaml", 2048, 13, 19),
        ("configs/cityscapes/panoptic_deeplab_R50_os16.yaml", 2048, 7, 19),
        ("configs/coco/panoptic_deeplab_R50_os16.yaml", 4096, 41, 134),
        ("configs/coco/panoptic_deeplab_R50_beta_os32.yaml", 4096, 41, 134),
    ],
)
def test_published_post_processing_values(path, stuff_area, nms_kernel, num_classes):
    cfg = _load(path)
    pd = cfg.MODEL.PANOPTIC_DEEPLAB
    assert (stuff_area, nms_kernel, 200) == (pd.STUFF_AREA, pd.NMS_KERNEL, pd.TOP_K_INSTANCE)
    assert pd.CENTER_THRESHOLD == 0.1
    assert num_classes == cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES
    assert cfg.MODEL.INS_EMBED_HEAD.CENTER_LOSS_WEIGHT == 200.0
    assert cfg.MODEL.INS_EMBED_HEAD.OFFSET_LOSS_WEIGHT == 0.01
    assert cfg.SOLVER.OPTIMIZER == "Adam"


def test_swidernet_variants_differ_only_in_layer_multiplier():
    base = _load("configs/cityscapes/panoptic_deeplab_SWideRNet_SAC_1_1_1_os16.yaml")
    big = _load("configs/cityscapes/panoptic_deeplab_SWideRNet_SAC_1_1_4.5_os16.yaml")
    assert base.MODEL.SWIDERNET.USE_SAC_BEYOND_STRIDE == 32
    assert (base.MODEL.SWIDERNET.LAYER_MULTIPLIER, big.MODEL.SWIDERNET.LAYER_MULTIPLIER) == (1, 4.5)


def test_shapes_quick_start_forward_on_cpu():
    cfg = _load("configs/shapes/panoptic_deeplab_R18_os32.yaml")
    assert cfg.DATASETS.TRAIN == ["shapes_panoptic_train"]
    assert cfg.INPUT.DATASET_MAPPER_NAME == "PanopticDeepLabMapper"
    model = META_ARCH_REGISTRY.get(cfg.MODEL.META_ARCHITECTURE)(cfg).eval()
    image = torch.randint(0, 256, (3, 128, 160), dtype=torch.uint8)
    with torch.no_grad():
        (out,) = model([{"image": image, "height": 128, "width": 160}])
    assert out["sem_seg"].shape == (7, 128, 160)
    assert out["panoptic_seg"][0].shape == (128, 160)

"""The configs named after Detectron2's Panoptic-DeepLab model zoo build Detectron2's
architecture (every tensor name and shape) and state its recipe."""

import os

import pytest
import torch

import panoptic2.data.datasets  # noqa: F401  (registers the builtin datasets' metadata)
from panoptic2.config import load_config
from panoptic2.modeling import META_ARCH_REGISTRY
from tests.checkpoint import detectron2_deeplab_reference as d2

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CITYSCAPES = "configs/cityscapes/panoptic_deeplab_R_52_os16_mg124_poly_90k_bs32_crop_512_1024.yaml"
CITYSCAPES_DSCONV = CITYSCAPES.replace(".yaml", "_dsconv.yaml")
COCO_DSCONV = (
    "configs/coco/panoptic_deeplab_R_52_os16_mg124_poly_200k_bs64_crop_640_640_coco_dsconv.yaml"
)

R52 = d2.ResNetSpec(depth=50, stem_out_channels=128, res2_out_channels=256, width_per_group=64)
FEATURES = ("res2", "res3", "res5")


def _detectron2_model(separable: bool, num_classes: int) -> d2.Shapes:
    """Detectron2's Base-PanopticDeepLab-OS16.yaml heads on R-52."""
    return d2.panoptic_deeplab(
        R52,
        d2.DecoderSpec(FEATURES, (32, 64), convs_dim=256, aspp_channels=256, separable=separable),
        d2.DecoderSpec(FEATURES, (32, 64), convs_dim=128, aspp_channels=256, separable=separable),
        num_classes=num_classes,
        semantic_head_channels=256,
        instance_head_channels=32,
    )


# config -> (depthwise-separable, Detectron2's NUM_CLASSES)
CASES = {CITYSCAPES: (False, 19), CITYSCAPES_DSCONV: (True, 19), COCO_DSCONV: (True, 133)}


def _load(path: str, overrides: tuple = ()):
    return load_config(os.path.join(ROOT, path), ["MODEL.DEVICE", "cpu", *overrides])


@pytest.mark.parametrize("path", list(CASES))
def test_builds_detectron2_tensors_and_runs_on_cpu(path):
    separable, num_classes = CASES[path]
    # COCO pads every image to 640 x 640; a small input is all this forward needs.
    cfg = _load(path, ("MODEL.PANOPTIC_DEEPLAB.SIZE_DIVISIBILITY", -1))
    model = META_ARCH_REGISTRY.get(cfg.MODEL.META_ARCHITECTURE)(cfg).eval()
    expected = _detectron2_model(separable, num_classes)
    ours = {d2.to_detectron2_name(k): tuple(v.shape) for k, v in model.state_dict().items()}
    assert ours == expected
    params = sum(p.numel() for p in model.parameters())
    assert params == d2.parameter_count(expected)
    h, w = 32, 64
    image = torch.randint(0, 256, (3, h, w), dtype=torch.uint8)
    with torch.no_grad():
        (out,) = model([{"image": image, "height": h, "width": w}])
    assert out["sem_seg"].shape == (cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES, h, w)
    assert out["panoptic_seg"][0].shape == (h, w)


def test_recipes_are_detectron2s():
    """Values of Detectron2's YAMLs (and the Detectron2 defaults they rely on)."""
    for path in CASES:
        cfg = _load(path)
        m, s, i = cfg.MODEL, cfg.SOLVER, cfg.INPUT
        assert m.WEIGHTS == "https://dl.fbaipublicfiles.com/detectron2/DeepLab/R-52.pkl"
        assert (m.RESNETS.STEM_TYPE, m.RESNETS.STEM_OUT_CHANNELS, m.RESNETS.DEPTH) == (
            "deeplab",
            128,
            50,
        )
        assert (m.RESNETS.RES5_DILATION, m.RESNETS.RES5_MULTI_GRID) == (2, [1, 2, 4])
        assert m.INS_EMBED_HEAD.PROJECT_CHANNELS == [32, 64]
        assert m.PANOPTIC_DEEPLAB.INSTANCE_SCORE_RULE == "centroid"
        assert (s.OPTIMIZER, s.WEIGHT_DECAY, s.LR_SCHEDULER_NAME) == ("Adam", 0.0, "WarmupPolyLR")
        assert (s.WARMUP_ITERS, s.WARMUP_FACTOR, s.POLY_LR_POWER) == (1000, 0.001, 0.9)
        assert i.CROP.ENABLED and i.RANDOM_SCALE == [1.0, 1.0]
    city = _load(CITYSCAPES)
    assert (city.SOLVER.BASE_LR, city.SOLVER.IMS_PER_BATCH, city.SOLVER.MAX_ITER) == (
        0.001,
        32,
        90000,
    )
    assert (city.INPUT.CROP.SIZE, city.INPUT.GAUSSIAN_SIGMA) == ([512, 1024], 10.0)
    assert (city.INPUT.MIN_SIZE_TEST, city.INPUT.MAX_SIZE_TEST) == (1024, 2048)
    coco = _load(COCO_DSCONV)
    assert (coco.SOLVER.BASE_LR, coco.SOLVER.IMS_PER_BATCH, coco.SOLVER.MAX_ITER) == (
        0.0005,
        64,
        200000,
    )
    assert [int(x * 0.1 * 640) for x in range(5, 16)] == coco.INPUT.MIN_SIZE_TRAIN
    assert (coco.INPUT.CROP.SIZE, coco.INPUT.GAUSSIAN_SIGMA) == ([640, 640], 8.0)
    pd = coco.MODEL.PANOPTIC_DEEPLAB
    assert (pd.STUFF_AREA, pd.NMS_KERNEL, pd.SIZE_DIVISIBILITY) == (4096, 41, 640)
    assert coco.MODEL.SEM_SEG_HEAD.LOSS_TOP_K == 1.0

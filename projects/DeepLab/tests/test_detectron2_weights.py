"""Detectron2's DeepLabV3 / V3+ (R-103) configs build Detectron2's tensors, and its
checkpoints (``.pth`` and model-zoo ``.pkl``) load whole through the normal ``MODEL.WEIGHTS``
path (the core's ``detectron2_deeplab`` weight converter)."""

import os

import pytest
import torch

import panoptic2.data.datasets  # noqa: F401  (registers the builtin datasets' metadata)
from panoptic2.checkpoint import Checkpointer
from panoptic2.checkpoint.load_report import require_loaded_weights
from panoptic2.config import load_config
from panoptic2.modeling import META_ARCH_REGISTRY
from tests.checkpoint import detectron2_deeplab_reference as d2

CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")
V3 = os.path.join(CONFIGS, "cityscapes", "deeplab_v3_R_103_os16_mg124_poly_90k_bs16.yaml")
V3_PLUS = os.path.join(CONFIGS, "cityscapes", "deeplab_v3_plus_R_103_os16_mg124_poly_90k_bs16.yaml")

# The configs' architectures at small widths (same modules, names and depth 101).
SMALL = [
    "MODEL.RESNETS.STEM_OUT_CHANNELS", 16,
    "MODEL.RESNETS.RES2_OUT_CHANNELS", 32,
    "MODEL.RESNETS.WIDTH_PER_GROUP", 8,
    "MODEL.DEEPLAB.ASPP_CHANNELS", 16,
    "MODEL.DEEPLAB.DECODER_CHANNELS", 16,
    "MODEL.DEEPLAB.PROJECT_CHANNELS", [8],
]  # fmt: skip


def _detectron2(path: str, small: bool) -> d2.Shapes:
    """Detectron2's model for the config (its YAML with the SMALL values when ``small``)."""
    if small:
        backbone = d2.ResNetSpec(101, stem_out_channels=16, res2_out_channels=32, width_per_group=8)
        channels, project = 16, 8
    else:
        backbone = d2.ResNetSpec(101, stem_out_channels=128, res2_out_channels=256)
        channels, project = 256, 48
    if path == V3:
        return d2.deeplab_v3(backbone, aspp_channels=channels, num_classes=19)
    decoder = d2.DecoderSpec(("res2", "res5"), (project,), channels, channels)
    return d2.deeplab_v3_plus(backbone, decoder, num_classes=19)


def _build(path: str, overrides: list):
    cfg = load_config(path, ["MODEL.DEVICE", "cpu", *overrides])
    return cfg, META_ARCH_REGISTRY.get(cfg.MODEL.META_ARCHITECTURE)(cfg)


@pytest.mark.parametrize("path", [V3, V3_PLUS])
def test_config_builds_detectron2_tensors_and_recipe(path):
    cfg, model = _build(path, [])
    expected = _detectron2(path, small=False)
    v3 = path == V3
    names = {d2.to_detectron2_name(k, deeplab_v3_head=v3): v for k, v in model.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in names.items()} == expected
    assert sum(p.numel() for p in model.parameters()) == d2.parameter_count(expected)
    # Detectron2 pools the ASPP image branch over the training crop / output stride.
    assert cfg.MODEL.DEEPLAB.ASPP_POOL_KERNEL_SIZE == [32, 64]
    assert cfg.MODEL.WEIGHTS == "https://dl.fbaipublicfiles.com/detectron2/DeepLab/R-103.pkl"
    s = cfg.SOLVER
    assert (s.OPTIMIZER, s.BASE_LR, s.IMS_PER_BATCH, s.MAX_ITER) == ("SGD", 0.01, 16, 90000)
    assert (s.WARMUP_ITERS, s.WEIGHT_DECAY, s.LR_SCHEDULER_NAME) == (1000, 1e-4, "WarmupPolyLR")
    image = torch.randint(0, 256, (3, 32, 64), dtype=torch.uint8)
    with torch.no_grad():
        (out,) = model.eval()([{"image": image}])
    assert out["sem_seg"].shape == (19, 32, 64)


@pytest.mark.parametrize("suffix", [".pth", ".pkl"])
@pytest.mark.parametrize("path", [V3, V3_PLUS])
def test_detectron2_checkpoint_loads_every_tensor_bit_for_bit(tmp_path, path, suffix):
    weights = str(tmp_path / f"model_final{suffix}")
    cfg, model = _build(path, [*SMALL, "MODEL.WEIGHTS", weights])
    state = d2.random_state_dict(_detectron2(path, small=True), seed=3)
    d2.write_detectron2_checkpoint(weights, state)

    checkpointer = Checkpointer(model, str(tmp_path / "out"), save_to_disk=False)
    checkpointer.resume_or_load(cfg.MODEL.WEIGHTS, resume=False)

    report = checkpointer.last_load_report
    assert (report.missing, report.incorrect_shapes, report.unexpected) == ((), (), ())
    require_loaded_weights(report, min_fraction=1.0)
    v3 = path == V3
    loaded = {
        d2.to_detectron2_name(k, deeplab_v3_head=v3): v for k, v in model.state_dict().items()
    }
    assert sorted(loaded) == sorted(state)
    for name, value in loaded.items():
        assert torch.equal(value, state[name]), name

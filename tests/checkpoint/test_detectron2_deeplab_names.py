"""Tests of panoptic2/checkpoint/detectron2_deeplab_names.py: Detectron2 Panoptic-DeepLab
checkpoints (plain, dsconv, COCO dsconv; ``.pth`` and ``.pkl``) load whole through the normal
``MODEL.WEIGHTS`` path. The DeepLabV3 / V3+ cases live with the DeepLab plugin
(``projects/DeepLab/tests/test_detectron2_weights.py``)."""

import os

import pytest
import torch

import panoptic2.data.datasets  # noqa: F401  (registers the builtin datasets' metadata)
from panoptic2.checkpoint import Checkpointer, align_state_dicts, choose_and_align
from panoptic2.checkpoint.detectron2_deeplab_names import detectron2_deeplab
from panoptic2.checkpoint.load_report import require_loaded_weights
from panoptic2.config import load_config
from panoptic2.modeling import META_ARCH_REGISTRY

from . import detectron2_deeplab_reference as d2

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CITYSCAPES = "configs/cityscapes/panoptic_deeplab_R_52_os16_mg124_poly_90k_bs32_crop_512_1024.yaml"
CITYSCAPES_DSCONV = CITYSCAPES.replace(".yaml", "_dsconv.yaml")
COCO_DSCONV = (
    "configs/coco/panoptic_deeplab_R_52_os16_mg124_poly_200k_bs64_crop_640_640_coco_dsconv.yaml"
)

# The configs' architectures at small widths (same modules, names and depth 50), so that
# random checkpoints are small.
SMALL = [
    "MODEL.DEVICE", "cpu",
    "MODEL.RESNETS.STEM_OUT_CHANNELS", 16,
    "MODEL.RESNETS.RES2_OUT_CHANNELS", 32,
    "MODEL.RESNETS.WIDTH_PER_GROUP", 8,
    "MODEL.SEM_SEG_HEAD.PROJECT_CHANNELS", [4, 8],
    "MODEL.SEM_SEG_HEAD.ASPP_CHANNELS", 16,
    "MODEL.SEM_SEG_HEAD.CONVS_DIM", 16,
    "MODEL.SEM_SEG_HEAD.HEAD_CHANNELS", 12,
    "MODEL.INS_EMBED_HEAD.PROJECT_CHANNELS", [4, 8],
    "MODEL.INS_EMBED_HEAD.ASPP_CHANNELS", 16,
    "MODEL.INS_EMBED_HEAD.CONVS_DIM", 8,
    "MODEL.INS_EMBED_HEAD.HEAD_CHANNELS", 4,
]  # fmt: skip
SMALL_BACKBONE = d2.ResNetSpec(
    depth=50, stem_out_channels=16, res2_out_channels=32, width_per_group=8
)
FEATURES = ("res2", "res3", "res5")


def _small_detectron2(separable: bool, num_classes: int) -> d2.Shapes:
    """Detectron2's model for the SMALL overrides (its YAML with the same values)."""
    return d2.panoptic_deeplab(
        SMALL_BACKBONE,
        d2.DecoderSpec(FEATURES, (4, 8), convs_dim=16, aspp_channels=16, separable=separable),
        d2.DecoderSpec(FEATURES, (4, 8), convs_dim=8, aspp_channels=16, separable=separable),
        num_classes=num_classes,
        semantic_head_channels=12,
        instance_head_channels=4,
    )


# config -> (depthwise-separable, Detectron2's NUM_CLASSES)
CASES = {CITYSCAPES: (False, 19), CITYSCAPES_DSCONV: (True, 19), COCO_DSCONV: (True, 133)}


def _build(path: str, overrides: list):
    cfg = load_config(os.path.join(ROOT, path), overrides)
    return cfg, META_ARCH_REGISTRY.get(cfg.MODEL.META_ARCHITECTURE)(cfg)


@pytest.mark.parametrize(
    ("theirs", "ours"),
    [
        (
            "sem_seg_head.decoder.res5.project_conv.convs.1.depthwise.norm.running_var",
            "sem_seg_head.decoder.decoder.res5.project_conv.convs.1.depthwise.norm.running_var",
        ),
        (
            "ins_embed_head.decoder.res2.fuse_conv.0.weight",
            "ins_embed_head.decoder.decoder.res2.fuse_conv.0.weight",
        ),
        (
            "sem_seg_head.aspp.convs.4.1.bias",
            "sem_seg_head.decoder.decoder.res5.project_conv.convs.4.1.bias",
        ),
        # A DDP prefix stays in front (the checkpointer strips it).
        ("module.sem_seg_head.aspp.project.weight",
         "module.sem_seg_head.decoder.decoder.res5.project_conv.project.weight"),
        # Names shared with ours, and names already ours, are kept.
        ("backbone.stem.conv1.norm.weight", "backbone.stem.conv1.norm.weight"),
        ("ins_embed_head.center_head.0.weight", "ins_embed_head.center_head.0.weight"),
        ("sem_seg_head.predictor.bias", "sem_seg_head.predictor.bias"),
        (
            "sem_seg_head.decoder.decoder.res3.project_conv.weight",
            "sem_seg_head.decoder.decoder.res3.project_conv.weight",
        ),
    ],
)  # fmt: skip
def test_renames(theirs, ours):
    assert detectron2_deeplab([theirs]) == {theirs: ours}


def test_chosen_from_the_key_names_where_identity_leaves_the_decoders_out():
    _, model = _build(CITYSCAPES, SMALL)
    ours = model.state_dict()
    theirs = d2.random_state_dict(_small_detectron2(False, 19))
    best = choose_and_align(ours, theirs)
    assert best.converter == "detectron2_deeplab"
    assert (best.missing, best.unexpected, best.incorrect_shapes) == ([], [], [])
    assert len(best.matched) == len(ours) == len(theirs)
    # By suffix alone, every tensor of both decoders would stay random.
    identity = align_state_dicts(ours, theirs, "identity")
    assert set(identity.missing) == {k for k in ours if ".decoder.decoder." in k}
    assert identity.missing


@pytest.mark.parametrize("suffix", [".pth", ".pkl"])
@pytest.mark.parametrize("path", list(CASES))
def test_detectron2_checkpoint_loads_every_tensor_bit_for_bit(tmp_path, path, suffix):
    separable, num_classes = CASES[path]
    weights = str(tmp_path / f"model_final{suffix}")
    cfg, model = _build(path, [*SMALL, "MODEL.WEIGHTS", weights])
    state = d2.random_state_dict(_small_detectron2(separable, num_classes), seed=1)
    d2.write_detectron2_checkpoint(weights, state)

    checkpointer = Checkpointer(model, str(tmp_path / "out"), save_to_disk=False)
    checkpointer.resume_or_load(cfg.MODEL.WEIGHTS, resume=False)

    report = checkpointer.last_load_report
    assert (report.missing, report.incorrect_shapes, report.unexpected) == ((), (), ())
    require_loaded_weights(report, min_fraction=1.0)
    loaded = model.state_dict()
    assert sorted(d2.to_detectron2_name(k) for k in loaded) == sorted(state)
    for key, value in loaded.items():
        assert torch.equal(value, state[d2.to_detectron2_name(key)]), key


def test_coco_classifier_rows_are_detectron2_classes_shifted_past_void(tmp_path):
    """Detectron2's contiguous COCO class i is our class i + 1 (0 is our void)."""
    weights = str(tmp_path / "coco.pkl")
    cfg, model = _build(COCO_DSCONV, [*SMALL, "MODEL.WEIGHTS", weights])
    state = d2.random_state_dict(_small_detectron2(True, 133), seed=2)
    d2.write_detectron2_checkpoint(weights, state)
    Checkpointer(model, save_to_disk=False).resume_or_load(cfg.MODEL.WEIGHTS, resume=False)
    head = model.sem_seg_head.eval()
    features = {
        "res2": torch.randn(1, 32, 8, 8),
        "res3": torch.randn(1, 64, 4, 4),
        "res5": torch.randn(1, 256, 2, 2),
    }
    with torch.no_grad():
        tower = head.head(head.decoder(features))
        theirs = torch.nn.functional.conv2d(
            tower, state["sem_seg_head.predictor.weight"], state["sem_seg_head.predictor.bias"]
        )
        ours = head.layers(features)
    assert ours.shape[1] == 134
    torch.testing.assert_close(ours[:, 1:], theirs, rtol=0, atol=0)
    assert model.label_space.classes[1] == "person"  # Detectron2's class 0


def test_dsconv_differs_from_plain_where_detectron2_differs():
    plain = set(_small_detectron2(False, 19))
    dsconv = set(_small_detectron2(True, 19))
    assert any(k.startswith("ins_embed_head.offset_head.depthwise.") for k in dsconv)
    assert {k for k in dsconv if k.startswith("ins_embed_head.center_head.")} == {
        k for k in plain if k.startswith("ins_embed_head.center_head.")
    }

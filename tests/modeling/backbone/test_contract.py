"""Every registered backbone honours the Backbone contract: names, channels and strides.

The contract: ``forward`` returns exactly ``output_shape()``'s names, each feature has the
declared channels and ``ceil(size / stride)`` pixels for the declared stride (all our convs
pad so that a stride-s layer maps n pixels to ceil(n / s)).
"""

import math

import pytest
import torch

import panoptic2.modeling.backbone.mobilenet  # noqa: F401  (registers)
import panoptic2.modeling.backbone.resnet  # noqa: F401  (registers)
import panoptic2.modeling.backbone.swidernet  # noqa: F401  (registers)
from panoptic2.config import get_cfg
from panoptic2.modeling import BACKBONE_REGISTRY, Backbone, build_backbone

# Small settings so the forward passes stay cheap on a shared 2-core CPU; the full-size
# networks are checked by parameter count in the per-backbone tests.
_SMALL = {
    "build_resnet_backbone": [
        "MODEL.RESNETS.DEPTH", 18, "MODEL.RESNETS.RES2_OUT_CHANNELS", 64,
        "MODEL.RESNETS.OUT_FEATURES", ["stem", "res2", "res3", "res4", "res5"],
    ],
    "build_mobilenetv3_backbone": ["MODEL.MOBILENET.VARIANT", "small"],
    "build_resnet_fpn_backbone": [
        "MODEL.RESNETS.DEPTH", 18, "MODEL.RESNETS.RES2_OUT_CHANNELS", 64,
        "MODEL.FPN.OUT_CHANNELS", 32,
    ],
    "build_swidernet_backbone": [
        "MODEL.SWIDERNET.STEM_WIDTH_MULTIPLIER", 0.25,
        "MODEL.SWIDERNET.WIDTH_MULTIPLIER", 0.125,
        "MODEL.SWIDERNET.LAYER_MULTIPLIER", 0.34,
        "MODEL.SWIDERNET.USE_SAC_BEYOND_STRIDE", 32,
        "MODEL.SWIDERNET.OUT_FEATURES", ["stem", "res1", "res2", "res3", "res4", "res5"],
    ],
}  # fmt: skip
# Output-stride settings per backbone: (overrides, expected largest stride).
_OUTPUT_STRIDES = {
    "build_resnet_backbone": [
        ([], 32),
        (["MODEL.RESNETS.RES5_DILATION", 2], 16),
        (["MODEL.RESNETS.RES4_DILATION", 2, "MODEL.RESNETS.RES5_DILATION", 4], 8),
    ],
    "build_mobilenetv3_backbone": [
        (["MODEL.MOBILENET.OUTPUT_STRIDE", 32], 32),
        (["MODEL.MOBILENET.OUTPUT_STRIDE", 16], 16),
    ],
    "build_swidernet_backbone": [
        (["MODEL.SWIDERNET.OUTPUT_STRIDE", 32], 32),
        (["MODEL.SWIDERNET.OUTPUT_STRIDE", 16], 16),
        (["MODEL.SWIDERNET.OUTPUT_STRIDE", 8], 8),
    ],
}


def _cases():
    for name in sorted(n for n, _ in BACKBONE_REGISTRY):
        for overrides, max_stride in _OUTPUT_STRIDES.get(name, [([], None)]):
            yield pytest.param(name, overrides, max_stride, id=f"{name}-os{max_stride}")


@pytest.mark.parametrize("name, overrides, max_stride", list(_cases()))
def test_backbone_contract(name, overrides, max_stride):
    cfg = get_cfg()
    cfg.MODEL.BACKBONE.NAME = name
    cfg.merge_from_list([str(v) for v in _SMALL.get(name, []) + overrides])
    torch.manual_seed(0)
    backbone = build_backbone(cfg).eval()
    assert isinstance(backbone, Backbone)
    shapes = backbone.output_shape()
    height, width = 65, 97
    with torch.no_grad():
        features = backbone(torch.randn(2, len(cfg.MODEL.PIXEL_MEAN), height, width))
    assert list(features) == list(shapes), "forward must return output_shape()'s names in order"
    for feature_name, spec in shapes.items():
        expected = (
            2,
            spec.channels,
            math.ceil(height / spec.stride),
            math.ceil(width / spec.stride),
        )
        assert tuple(features[feature_name].shape) == expected, feature_name
        assert features[feature_name].dtype == torch.float32
    if max_stride is not None:
        assert max(s.stride for s in shapes.values()) == max_stride
    strides = [s.stride for s in shapes.values()]
    assert strides == sorted(strides), "features are listed from fine to coarse"


def test_every_builder_of_this_issue_is_registered():
    names = {n for n, _ in BACKBONE_REGISTRY}
    assert {
        "build_resnet_backbone",
        "build_mobilenetv3_backbone",
        "build_swidernet_backbone",
    } <= names

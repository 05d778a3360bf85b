"""Model registries: listing, building through the config, contract checks."""

import pytest
import torch
from torch import nn

from panoptic2.config import get_cfg
from panoptic2.modeling import (
    BACKBONE_REGISTRY,
    META_ARCH_REGISTRY,
    Backbone,
    ShapeSpec,
    build_backbone,
    build_model,
)


class _TinyBackbone(Backbone):
    def __init__(self, cfg, input_shape):
        super().__init__()
        self.conv = nn.Conv2d(input_shape.channels, 4, 3, stride=2, padding=1)
        self._out_features = ["res2"]
        self._out_feature_channels = {"res2": 4}
        self._out_feature_strides = {"res2": 2}

    def forward(self, x):
        return {"res2": self.conv(x)}


@pytest.fixture
def registered():
    BACKBONE_REGISTRY.register(_TinyBackbone)
    BACKBONE_REGISTRY.register(nn.Identity)  # not a Backbone: building it must fail
    yield
    BACKBONE_REGISTRY.remove("_TinyBackbone")
    BACKBONE_REGISTRY.remove("Identity")


def test_registry_listing_shows_registered_names(registered):
    listing = repr(BACKBONE_REGISTRY)
    assert "_TinyBackbone" in listing and "BACKBONE" in listing


def test_build_backbone_from_config_and_output_shape(registered):
    cfg = get_cfg()
    cfg.MODEL.BACKBONE.NAME = "_TinyBackbone"
    backbone = build_backbone(cfg)
    assert backbone.output_shape() == {"res2": ShapeSpec(channels=4, stride=2)}
    # The contract: a feature of stride s has ceil(size / s) pixels.
    assert backbone(torch.zeros(1, 3, 9, 7))["res2"].shape == (1, 4, 5, 4)


def test_build_backbone_rejects_non_backbone(registered):
    cfg = get_cfg()
    cfg.MODEL.BACKBONE.NAME = "Identity"
    with pytest.raises(TypeError, match="not a panoptic2.modeling.Backbone"):
        build_backbone(cfg)


def test_unknown_meta_arch_names_the_registry():
    cfg = get_cfg()
    cfg.MODEL.META_ARCHITECTURE = "NoSuchModel"
    with pytest.raises(KeyError, match="NoSuchModel"):
        build_model(cfg)


def test_build_model_places_model_on_resolved_device():
    @META_ARCH_REGISTRY.register()
    class _Dummy(nn.Module):
        def __init__(self, cfg):
            super().__init__()
            self.w = nn.Parameter(torch.zeros(1))

    try:
        cfg = get_cfg()
        cfg.MODEL.META_ARCHITECTURE = "_Dummy"
        cfg.MODEL.DEVICE = "cpu"
        assert build_model(cfg).w.device.type == "cpu"
        if not torch.cuda.is_available():
            cfg.MODEL.DEVICE = "cuda"
            with pytest.raises(RuntimeError, match="CUDA is not available"):
                build_model(cfg)
    finally:
        META_ARCH_REGISTRY.remove("_Dummy")

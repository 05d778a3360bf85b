"""The plugin loads through its configs alone, and every project config builds its model."""

import glob
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from panoptic2.config import load_config
from panoptic2.modeling import META_ARCH_REGISTRY

PROJECT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPO = os.path.dirname(os.path.dirname(PROJECT))
CONFIGS = sorted(
    p
    for p in glob.glob(os.path.join(PROJECT, "configs", "**", "*.yaml"), recursive=True)
    if not os.path.basename(p).startswith("Base-")
)
SHAPES_CONFIG = os.path.join(PROJECT, "configs", "shapes", "deeplabv3plus_R18_os16_voc.yaml")


def test_load_config_alone_imports_the_plugin():
    # A fresh interpreter where nothing imported the plugin: only the PLUGINS key can.
    code = textwrap.dedent(
        f"""
        import sys
        from panoptic2.config import load_config
        from panoptic2.modeling import META_ARCH_REGISTRY, SEM_SEG_HEADS_REGISTRY
        assert "projects.DeepLab.deeplab" not in sys.modules
        cfg = load_config({SHAPES_CONFIG!r})
        assert "projects.DeepLab.deeplab" in sys.modules
        assert "SemanticSegmentor" in META_ARCH_REGISTRY
        assert "DeepLabV3Head" in SEM_SEG_HEADS_REGISTRY
        assert "DeepLabV3PlusHead" in SEM_SEG_HEADS_REGISTRY
        assert cfg.MODEL.DEEPLAB.ASPP_CHANNELS == 128
        assert cfg.PLUGINS == ["projects.DeepLab.deeplab"]
        print("OK")
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().endswith("OK")


def test_config_extension_adds_deeplab_keys_to_get_cfg():
    import projects.DeepLab.deeplab  # noqa: F401  (registers the extension in this process)
    from panoptic2.config import get_cfg

    cfg = get_cfg()
    assert cfg.MODEL.DEEPLAB.PROJECT_CHANNELS == [48]
    assert cfg.MODEL.DEEPLAB.LOSS_TYPE == "cross_entropy"
    # Typos in the project's keys are caught like core keys.
    with pytest.raises(Exception, match="ASPP_CHANNELS"):
        load_config(SHAPES_CONFIG, ["MODEL.DEEPLAB.ASPP_CHANNEL", "64"])


def test_there_are_voc_cityscapes_and_shapes_configs():
    names = {os.path.relpath(p, os.path.join(PROJECT, "configs")) for p in CONFIGS}
    assert any(n.startswith("voc/deeplab_v3_plus") for n in names)
    assert any(n.startswith("voc/deeplab_v3_R") for n in names)
    assert any(n.startswith("cityscapes/deeplab_v3_plus") for n in names)
    assert any(n.startswith("cityscapes/deeplab_v3_R") for n in names)
    assert "shapes/deeplabv3plus_R18_os16_voc.yaml" in names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: os.path.relpath(p, PROJECT))
def test_config_loads_and_builds(path):
    cfg = load_config(path)
    assert cfg.MODEL.META_ARCHITECTURE == "SemanticSegmentor"
    # Big models are built on the meta device (no memory, no init cost) and run there:
    # a forward checks that the backbone, the head and the output shapes fit together.
    with torch.device("meta"):
        model = META_ARCH_REGISTRY.get(cfg.MODEL.META_ARCHITECTURE)(cfg).eval()
        image = torch.empty(3, 65, 97, dtype=torch.uint8)
        with torch.no_grad():
            (out,) = model([{"image": image, "height": 130, "width": 194}])
    assert out["sem_seg"].shape == (cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES, 130, 194)
    assert cfg.MODEL.SEM_SEG_HEAD.NAME in ("DeepLabV3Head", "DeepLabV3PlusHead")

"""panoptic2.model_zoo: shipped configs by name, published checkpoints, built models."""

import os
import pickle
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from panoptic2 import model_zoo
from panoptic2.checkpoint import IncompleteWeightsError
from panoptic2.model_zoo import CHECKPOINTS, ModelZooEntry
from panoptic2.modeling import build_model
from panoptic2.utils import url_handlers

REPO = Path(__file__).resolve().parents[2]
PFPN = "coco/panoptic_fpn_R_50_1x.yaml"
PFPN_URL = (
    "detectron2://COCO-PanopticSegmentation/panoptic_fpn_R_50_1x/139514544/model_final_dbfeb4.pkl"
)
DEEPLAB = "projects/DeepLab/configs/cityscapes/deeplab_v3_R_103_os16_mg124_poly_90k_bs16.yaml"


def _cache_path(cache, detectron2_url):
    return cache.joinpath("detectron2", *detectron2_url[len("detectron2://") :].split("/"))


def _write_detectron2_pickle(path, state):
    """A checkpoint in Detectron2's model-zoo .pkl layout (numpy arrays under "model")."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump({"model": {k: v.numpy() for k, v in state.items()}, "__author__": "test"}, f)


def test_get_config_file_of_shipped_configs():
    assert model_zoo.get_config_file(PFPN) == str(REPO / "configs" / PFPN)
    assert model_zoo.get_config_file("configs/" + PFPN) == str(REPO / "configs" / PFPN)
    assert model_zoo.get_config_file(DEEPLAB) == str(REPO / DEEPLAB)
    # A Detectron2 name from the catalog names the config reproducing it.
    d2 = "COCO-PanopticSegmentation/panoptic_fpn_R_50_1x.yaml"
    assert model_zoo.get_config_file(d2) == str(REPO / "configs" / PFPN)
    names = model_zoo.list_configs()
    assert PFPN in names and DEEPLAB in names and "toy/mlp.yaml" in names
    with pytest.raises(FileNotFoundError, match="did you mean coco/panoptic_fpn_R_50_1x.yaml"):
        model_zoo.get_config_file("coco/panoptic_fpn_R_50_1.yaml")


def test_get_config_with_and_without_trained_weights():
    cfg = model_zoo.get_config(PFPN)
    assert cfg.MODEL.META_ARCHITECTURE == "PanopticFPN"
    assert cfg.MODEL.WEIGHTS == "detectron2://ImageNetPretrained/MSRA/R-50.pkl"
    trained = model_zoo.get_config(PFPN, trained=True, overrides=["SOLVER.MAX_ITER", "7"])
    assert trained.MODEL.WEIGHTS == PFPN_URL
    assert trained.SOLVER.MAX_ITER == 7
    deeplab = model_zoo.get_config(DEEPLAB, trained=True)  # imports its project's plugin
    assert deeplab.MODEL.META_ARCHITECTURE == "SemanticSegmentor"
    assert deeplab.MODEL.WEIGHTS.startswith("detectron2://DeepLab/Cityscapes-Semantic")


def test_get_checkpoint_url():
    assert model_zoo.get_checkpoint_url(PFPN) == PFPN_URL
    d2 = "COCO-PanopticSegmentation/panoptic_fpn_R_50_1x.yaml"
    assert model_zoo.get_checkpoint_url(d2) == PFPN_URL
    with pytest.raises(LookupError, match="No published checkpoint for config 'toy/mlp.yaml'"):
        model_zoo.get_checkpoint_url("toy/mlp.yaml")


# The URL Detectron2's model_zoo.get_checkpoint_url builds for its COCO configs:
# <prefix><config without .yaml>/<model id>/model_final_<6 hex>.pkl.
_D2_COCO_URL = re.compile(
    r"^detectron2://(?P<config>COCO-[A-Za-z]+/\w+)/\d+/model_final_[0-9a-f]{6}\.pkl$"
)


@pytest.mark.parametrize("detectron2_config", sorted(CHECKPOINTS))
def test_catalog_entry(detectron2_config):
    entry = CHECKPOINTS[detectron2_config]
    assert isinstance(entry, ModelZooEntry)
    assert entry.checkpoint.startswith("detectron2://") and entry.checkpoint.endswith(".pkl")
    if detectron2_config.startswith("COCO-"):
        match = _D2_COCO_URL.match(entry.checkpoint)
        assert match and match.group("config") + ".yaml" == detectron2_config
    # Our config keeps Detectron2's file name.
    assert Path(entry.config).name == Path(detectron2_config).name
    path = (
        REPO / entry.config
        if entry.config.startswith("projects/")
        else REPO / "configs" / entry.config
    )
    if not path.is_file():
        pytest.skip(f"{entry.config} (reproducing {detectron2_config}) is not in the checkout")
    assert model_zoo.get_config_file(detectron2_config) == str(path)


@pytest.mark.slow
def test_get_trained_loads_the_cached_checkpoint(offline_cache):
    torch.manual_seed(0)
    reference = build_model(model_zoo.get_config(PFPN, overrides=["MODEL.DEVICE", "cpu"]))
    state = {k: v + 0.5 if v.is_floating_point() else v for k, v in reference.state_dict().items()}
    _write_detectron2_pickle(_cache_path(offline_cache, PFPN_URL), state)

    model = model_zoo.get(
        "COCO-PanopticSegmentation/panoptic_fpn_R_50_1x.yaml", trained=True, device="cpu"
    )
    assert model.training
    loaded = model.state_dict()
    assert loaded.keys() == state.keys()
    for key, value in state.items():
        assert torch.equal(loaded[key], value), key


def test_get_trained_refuses_a_checkpoint_that_does_not_fill_the_model(offline_cache, monkeypatch):
    # A catalog entry added for the test (the toy MLP), as a user adds one.
    url = "detectron2://Test/toy/model_final_000000.pkl"
    monkeypatch.setitem(CHECKPOINTS, "Test/toy.yaml", ModelZooEntry("toy/mlp.yaml", url))
    state = build_model(model_zoo.get_config("toy/mlp.yaml", overrides=["MODEL.DEVICE", "cpu"]))
    state = state.state_dict()
    _write_detectron2_pickle(_cache_path(offline_cache, url), state)
    model = model_zoo.get("Test/toy.yaml", trained=True, device="cpu")
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key

    partial = {k: v for k, v in state.items() if k != "net.3.bias"}
    _write_detectron2_pickle(_cache_path(offline_cache, url), partial)
    with pytest.raises(IncompleteWeightsError, match=r"net\.3\.bias"):
        model_zoo.get("toy/mlp.yaml", trained=True, device="cpu")


def test_offline_get_names_the_file_to_place(offline_cache):
    with pytest.raises(
        url_handlers.DownloadError, match=re.escape(str(_cache_path(offline_cache, PFPN_URL)))
    ):
        model_zoo.get(PFPN, trained=True, device="cpu")


@pytest.mark.slow
def test_project_configs_load_from_any_directory(tmp_path):
    script = (
        "import panoptic2, sys; from panoptic2 import model_zoo; "
        f"cfg = model_zoo.get_config({DEEPLAB!r}); "
        "print(panoptic2.__file__); print(cfg.MODEL.META_ARCHITECTURE)"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    if out.returncode != 0 and "No module named 'panoptic2'" in out.stderr:
        pytest.skip("panoptic2 is not installed in editable mode")
    assert out.returncode == 0, out.stderr[-3000:]
    package, arch = out.stdout.split()[-2:]
    if Path(package).resolve().parents[1] != REPO:
        pytest.skip(f"the installed panoptic2 is another checkout ({package})")
    assert arch == "SemanticSegmentor"


def test_install_without_configs_is_explained(tmp_path, monkeypatch):
    from panoptic2.model_zoo import model_zoo as module

    # A non-editable install: the package sits in site-packages, with no configs/ beside it.
    fake = tmp_path / "site-packages" / "panoptic2" / "model_zoo" / "model_zoo.py"
    monkeypatch.setattr(module, "__file__", str(fake))
    with pytest.raises(FileNotFoundError, match="configs are not installed.*editable mode"):
        model_zoo.get_config_file(PFPN)

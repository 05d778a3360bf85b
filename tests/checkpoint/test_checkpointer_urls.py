"""Checkpointer.load with detectron2:// and torchvision:// URLs, served from the local
cache without network access, and the message an offline load gives."""

import pickle

import pytest
import torch
from torch import nn

from panoptic2.checkpoint import Checkpointer
from panoptic2.utils.url_handlers import DownloadError


def _model():
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.GroupNorm(2, 4))


def test_detectron2_pickle_loads_from_the_cache(offline_cache):
    source = _model()
    # Detectron2's model-zoo layout: numpy arrays under "model".
    weights = {k: v.numpy() for k, v in source.state_dict().items()}
    path = offline_cache / "detectron2" / "Test" / "tiny" / "model_final_000000.pkl"
    path.parent.mkdir(parents=True)
    with open(path, "wb") as f:
        pickle.dump({"model": weights, "__author__": "Detectron2 Model Zoo"}, f)

    target = _model()
    checkpointer = Checkpointer(target)
    checkpointer.load("detectron2://Test/tiny/model_final_000000.pkl")
    for key, value in target.state_dict().items():
        assert torch.equal(value, torch.as_tensor(weights[key])), key
    assert checkpointer.last_load_report.fraction == 1.0


def test_torchvision_state_dict_loads_from_the_cache(offline_cache):
    import torchvision

    url = torchvision.models.get_weight("ResNet18_Weights.IMAGENET1K_V1").url
    path = offline_cache.joinpath(*url.split("://", 1)[1].split("/")[1:])
    path.parent.mkdir(parents=True)
    source = _model()
    torch.save(source.state_dict(), path)  # torchvision files are bare state dicts
    target = _model()
    Checkpointer(target).load("torchvision://ResNet18_Weights.IMAGENET1K_V1")
    for key, value in target.state_dict().items():
        assert torch.equal(value, source.state_dict()[key]), key


def test_offline_load_names_the_file_to_place(offline_cache):
    with pytest.raises(DownloadError) as info:
        Checkpointer(_model()).load("detectron2://ImageNetPretrained/MSRA/R-101.pkl")
    assert str(offline_cache / "detectron2" / "ImageNetPretrained" / "MSRA" / "R-101.pkl") in str(
        info.value
    )
    assert all(not p.is_file() or p.suffix == ".lock" for p in offline_cache.rglob("*"))

"""Tests of panoptic2/checkpoint/c2_model_loading.py."""

import pickle

import numpy as np
import pytest
import torch

from panoptic2.checkpoint import Checkpointer, convert_c2_name, convert_c2_names

from .test_weight_conversion import module_with

# Caffe2 blob -> (expected converted name, shape)
BLOBS = {
    "conv1_w": ("stem.conv1.weight", (4, 3, 7, 7)),
    "res_conv1_bn_s": ("stem.conv1.norm.weight", (4,)),
    "res_conv1_bn_b": ("stem.conv1.norm.bias", (4,)),
    "res2_0_branch2a_w": ("res2.0.conv1.weight", (2, 4, 1, 1)),
    "res2_0_branch2a_bn_s": ("res2.0.conv1.norm.weight", (2,)),
    "res2_0_branch2b_w": ("res2.0.conv2.weight", (2, 2, 3, 3)),
    "res2_0_branch2c_bn_b": ("res2.0.conv3.norm.bias", (8,)),
    "res2_0_branch1_w": ("res2.0.shortcut.weight", (8, 4, 1, 1)),
    "res2_0_branch1_bn_s": ("res2.0.shortcut.norm.weight", (8,)),
    "res2_1_branch2a_bn_rm": ("res2.1.conv1.norm.running_mean", (2,)),
    "fc1000_w": ("linear.weight", (10, 8)),
    "fc1000_b": ("linear.bias", (10,)),
}


def _blobs() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    arrays = {k: rng.standard_normal(shape).astype(np.float32) for k, (_, shape) in BLOBS.items()}
    arrays["res2_0_branch2a_w_momentum"] = np.ones((2, 4, 1, 1), np.float32)
    return arrays


def test_convert_c2_names_by_hand():
    names = list(_blobs())
    assert convert_c2_names(names) == {k: new for k, (new, _) in BLOBS.items()}
    assert convert_c2_name("res5_2_branch2c_gn_s") == "res5.2.conv3.norm.weight"
    assert convert_c2_name("conv5_mask_b") == "roi_heads.mask_head.deconv.bias"
    assert convert_c2_name("some_other_blob_w") == "some.other.blob.weight"


@pytest.mark.parametrize("layout", ["detectron2", "blobs", "bare"])
def test_caffe2_pickle_loads_converted_values(tmp_path, layout):
    arrays = _blobs()
    data = {
        "detectron2": {"model": arrays, "__author__": "Caffe2"},
        "blobs": {"blobs": arrays},
        "bare": arrays,
    }[layout]
    path = tmp_path / "R-toy.pkl"
    with open(path, "wb") as f:
        pickle.dump(data, f)

    model = module_with({f"backbone.{new}": shape for new, shape in BLOBS.values()})
    model.add_module("extra", torch.nn.Linear(1, 1))
    extra = Checkpointer(model, "").load(str(path))
    assert extra == {}
    ours = model.state_dict()
    for blob, (new, _) in BLOBS.items():
        assert torch.equal(ours[f"backbone.{new}"], torch.from_numpy(arrays[blob])), blob
    assert ours["backbone.res2.0.conv1.weight"].dtype == torch.float32


def test_bad_pickle_names_the_file_and_key(tmp_path):
    path = tmp_path / "bad.pkl"
    with open(path, "wb") as f:
        pickle.dump({"conv1_w": np.zeros(3), "oops": "text"}, f)
    with pytest.raises(ValueError, match=r"bad.pkl.*'oops'"):
        Checkpointer(torch.nn.Linear(1, 1), "").load(str(path))


def test_colliding_c2_names_are_an_error():
    with pytest.raises(ValueError, match="conv1_w"):
        convert_c2_names(["conv1_w", "stem_conv1_w"])

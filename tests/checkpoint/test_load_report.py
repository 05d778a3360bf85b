"""Tests of panoptic2/checkpoint/load_report.py and the report Checkpointer.load records."""

import pytest
import torch
from torch import nn

from panoptic2.checkpoint import (
    Checkpointer,
    IncompleteWeightsError,
    LoadReport,
    require_loaded_weights,
)


def _net() -> nn.Module:
    """A big layer (most of the elements) and a small one."""
    net = nn.Module()
    net.big = nn.Linear(20, 10)  # 210 elements
    net.small = nn.Linear(2, 2)  # 6 elements
    return net


def _save(tmp_path, net: nn.Module, name: str, drop=()) -> str:
    """A checkpoint of this project's format, with some model tensors left out."""
    Checkpointer(net, str(tmp_path), save_to_disk=True).save(name)
    path = tmp_path / f"{name}.pth"
    data = torch.load(path, weights_only=True)
    for key in drop:
        del data["model"][key]
    torch.save(data, path)
    return str(path)


def test_exact_name_loads_are_reported(tmp_path):
    full = _save(tmp_path, _net(), "full")
    ckpt = Checkpointer(_net(), "")
    assert ckpt.last_load_report is None
    ckpt.load(full)
    report = ckpt.last_load_report
    assert report.source == full and report.fraction == 1.0
    assert set(report.loaded) == {"big.weight", "big.bias", "small.weight", "small.bias"}
    assert report.not_loaded == () and report.unexpected == ()
    require_loaded_weights(report)  # nothing to complain about

    assert report.whole_model

    partial = _save(tmp_path, _net(), "partial", drop=["big.weight"])
    with pytest.raises(
        IncompleteWeightsError, match=r"(?s)partial.pth is a whole-model.*big.weight"
    ):
        ckpt.load(partial)
    assert ckpt.last_load_report.source == full  # the failed load recorded nothing
    ckpt.allow_partial_weights = True
    ckpt.load(partial)
    report = ckpt.last_load_report
    assert report.missing == ("big.weight",)
    assert (report.loaded_numel, report.total_numel) == (16, 216)


def test_shape_mismatch_and_unexpected_keys_count_as_not_loaded(tmp_path):
    other = _net()
    other.small = nn.Linear(2, 3)  # another head size
    other.extra = nn.Linear(1, 1)
    path = _save(tmp_path, other, "other")
    with pytest.raises(IncompleteWeightsError, match=r"\(3, 2\) vs \(2, 2\)"):
        Checkpointer(_net(), "").load(path)
    ckpt = Checkpointer(_net(), "", allow_partial_weights=True)
    ckpt.load(path)
    report = ckpt.last_load_report
    assert report.incorrect_shapes == ("small.weight", "small.bias")
    assert report.missing == ()
    assert set(report.unexpected) == {"extra.weight", "extra.bias"}
    assert report.loaded == ("big.weight", "big.bias")


def test_foreign_loads_are_reported(tmp_path):
    path = tmp_path / "foreign.pth"
    torch.save({"layer.weight": torch.zeros(10, 20), "unused": torch.zeros(3)}, path)
    ckpt = Checkpointer(_net(), "")
    ckpt.load(str(path))
    report = ckpt.last_load_report
    assert not report.whole_model  # it fills nothing and names no part of the model
    assert report.loaded == ()  # "layer.weight" is a suffix of no model key
    assert set(report.missing) == {"big.weight", "big.bias", "small.weight", "small.bias"}
    assert set(report.unexpected) == {"layer.weight", "unused"}

    torch.save({"weight": torch.zeros(10, 20), "bias": torch.zeros(10)}, path)
    model = nn.Module()
    model.big = nn.Linear(20, 10)
    ckpt = Checkpointer(model, "")
    ckpt.load(str(path))
    assert ckpt.last_load_report.loaded == ("big.weight", "big.bias")


def test_no_file_is_reported_as_nothing_loaded():
    ckpt = Checkpointer(_net(), "")
    ckpt.load("")
    report = ckpt.last_load_report
    assert report.source == "" and report.loaded == () and report.fraction == 0.0
    with pytest.raises(IncompleteWeightsError, match="No weights were loaded.*Pass the flag"):
        require_loaded_weights(report, how_to_allow="Pass the flag.")
    with pytest.raises(IncompleteWeightsError, match="No weights were loaded"):
        require_loaded_weights(None)


def test_require_loaded_weights_counts_elements_and_lists_names():
    state = {f"layer{i}.weight": torch.zeros(10) for i in range(30)}
    state["head.weight"] = torch.zeros(1)
    # 29 of 31 tensors, but 290 of 301 elements (96 %): enough.
    report = LoadReport.build("w.pth", state, missing=["layer0.weight", "head.weight"])
    require_loaded_weights(report)

    # 25 of 31 tensors missing: 60 of 301 elements loaded.
    missing = [f"layer{i}.weight" for i in range(24)] + ["head.weight"]
    report = LoadReport.build("w.pth", state, missing=missing, unexpected=["foo"])
    with pytest.raises(IncompleteWeightsError) as err:
        require_loaded_weights(report, max_names=3, how_to_allow="Say --allow.")
    message = str(err.value)
    assert "Only 19.9% of the model's weights" in message and "from w.pth" in message
    assert "6 of 31 tensors" in message and "25 tensors did not load" in message
    assert "layer0.weight, layer1.weight, layer2.weight and 22 more" in message
    assert message.endswith("Say --allow.")
    require_loaded_weights(report, min_fraction=0.1)

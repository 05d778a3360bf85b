"""Tests of panoptic2/checkpoint/safe_loading.py: no code runs from a weight file, and
damaged files get a clear message."""

import collections
import os
import pickle

import numpy as np
import pytest
import torch
from torch import nn

from panoptic2.checkpoint import (
    Checkpointer,
    CorruptCheckpointError,
    UnsafeCheckpointError,
    read_weights_pickle,
)


class _OpensMarker:
    """Unpickling calls open(marker, "w"), which creates the marker file."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


class _RunsShell:
    """Unpickling calls os.system("touch marker")."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize(
    "payload, refused",
    [(_OpensMarker, "io.open"), (_RunsShell, f"{os.system.__module__}.system")],
)
def test_malicious_pkl_is_refused_and_runs_nothing(tmp_path, payload, refused):
    marker = tmp_path / "pwned"
    path = tmp_path / "model.pkl"
    with open(path, "wb") as f:
        pickle.dump({"model": {"w": np.zeros(2, np.float32), "x": payload(str(marker))}}, f)

    model = nn.Linear(2, 1)
    before = model.weight.detach().clone()
    with pytest.raises(UnsafeCheckpointError) as err:
        Checkpointer(model, "").load(str(path))
    message = str(err.value)
    assert str(path) in message and f"it pickles {refused}" in message
    assert "numpy arrays are allowed in .pkl weights" in message
    assert not marker.exists()
    assert torch.equal(model.weight, before)


def _zoo_arrays():
    rng = np.random.default_rng(0)
    return {
        "weight": rng.standard_normal((3, 4)).astype(np.float32),
        "bias": rng.standard_normal(3).astype(np.float32),
    }


@pytest.mark.parametrize("protocol", [2, 4, 5])
@pytest.mark.parametrize("layout", ["detectron2", "caffe2", "ordered"])
def test_model_zoo_pickles_still_load(tmp_path, protocol, layout):
    arrays = _zoo_arrays()
    data = {
        "detectron2": {
            "model": arrays,
            "__author__": "Detectron2 Model Zoo",
            "matching_heuristics": True,
        },
        "caffe2": {"blobs": {"fc_w": arrays["weight"], "fc_b": arrays["bias"]}, "lr": 0.1},
        "ordered": {"model": collections.OrderedDict(arrays), "iter": np.int64(90000)},
    }[layout]
    path = tmp_path / "zoo.pkl"
    with open(path, "wb") as f:
        pickle.dump(data, f, protocol=protocol)

    model = nn.Sequential()
    model.add_module("fc", nn.Linear(4, 3))
    Checkpointer(model, "").load(str(path))
    assert torch.equal(model.fc.weight, torch.from_numpy(arrays["weight"]))
    assert torch.equal(model.fc.bias, torch.from_numpy(arrays["bias"]))


def test_numpy1_spelling_and_scalars_load(tmp_path):
    """Files pickled under numpy 1 name numpy.core; they load under numpy 2 as well."""
    data = pickle.dumps({"a": np.arange(4, dtype=np.int32), "s": np.float32(1.5)}, protocol=2)
    data = data.replace(b"numpy._core.", b"numpy.core.")
    assert b"numpy.core.multiarray" in data
    path = tmp_path / "old.pkl"
    path.write_bytes(data)
    loaded = read_weights_pickle(str(path))
    assert np.array_equal(loaded["a"], np.arange(4, dtype=np.int32))
    assert loaded["s"] == np.float32(1.5)


def test_codecs_encode_is_limited_to_latin1(tmp_path):
    # GLOBAL _codecs.encode; ("x", "rot13"); REDUCE; STOP
    path = tmp_path / "codec.pkl"
    path.write_bytes(b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00xX\x05\x00\x00\x00rot13\x86R.")
    with pytest.raises(UnsafeCheckpointError, match=r"codec.pkl.*'rot13'"):
        read_weights_pickle(str(path))


def test_corrupt_pkl_is_named(tmp_path):
    path = tmp_path / "cut.pkl"
    path.write_bytes(pickle.dumps({"model": _zoo_arrays()})[:40])
    with pytest.raises(CorruptCheckpointError, match=r"'.*cut.pkl' is not a checkpoint or is"):
        Checkpointer(nn.Linear(4, 3), "").load(str(path))


def _write_bad(path, kind):
    if kind == "random":
        path.write_bytes(np.random.default_rng(0).bytes(5000))
    elif kind == "text":
        path.write_text("model: not really\n")
    elif kind == "empty":
        path.write_bytes(b"")
    else:  # a checkpoint cut short, as by a full disk or an interrupted copy
        good = path.with_name("good.pth")
        legacy = kind == "truncated_legacy"
        torch.save({"model": nn.Linear(50, 50).state_dict()}, good,
                   _use_new_zipfile_serialization=not legacy)  # fmt: skip
        data = good.read_bytes()
        path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize("kind", ["random", "text", "empty", "truncated", "truncated_legacy"])
def test_corrupt_pth_says_so_without_opt_out_advice(tmp_path, kind):
    path = tmp_path / "model.pth"
    _write_bad(path, kind)
    with pytest.raises(CorruptCheckpointError) as err:
        Checkpointer(nn.Linear(50, 50), "").load(str(path))
    message = str(err.value)
    assert message.startswith(f"'{path}' is not a checkpoint or is corrupt (")
    assert "weights_only" not in message
    assert err.value.path == str(path) and err.value.reason


class _Note:
    """A plain object; weights-only loading does not rebuild it."""


def test_disallowed_objects_keep_their_own_message(tmp_path):
    path = tmp_path / "objects.pth"
    torch.save({"model": {}, "note": _Note()}, path)
    with pytest.raises(UnsafeCheckpointError) as err:
        Checkpointer(nn.Linear(1, 1), "").load(str(path))
    message = str(err.value)
    assert str(path) in message and f"{__name__}._Note" in message
    # The opt-out is named together with what it means.
    assert (
        "Checkpointer(..., weights_only=False), which lets the file run arbitrary code" in message
    )

"""Tests of panoptic2/checkpoint/checkpointer.py."""

import logging
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from fvcore.common.checkpoint import PeriodicCheckpointer as FvcorePeriodicCheckpointer
from torch import nn

from panoptic2.checkpoint import (
    Checkpointer,
    CorruptCheckpointError,
    IncompleteWeightsError,
    PeriodicCheckpointer,
)
from panoptic2.data.label_space import LabelSpace
from panoptic2.modeling.meta_arch.base import LabelSpaceMixin

REPO_ROOT = Path(__file__).resolve().parents[2]
BIG = 4_000_000  # elements of the buffer written slowly by the killed subprocess


class Custom:
    """A picklable object that weights_only loading must refuse."""

    def __init__(self, value: int) -> None:
        self.value = value


def _big_model(value: float) -> nn.Module:
    model = nn.Linear(1, 1)
    model.register_buffer("big", torch.full((BIG,), value))
    return model


_KILLED_SAVE = """
import io, sys, time, torch
from torch import nn
from panoptic2.checkpoint import Checkpointer

model = nn.Linear(1, 1)
model.register_buffer("big", torch.full(({big},), 2.0))
real_save = torch.save

def slow_save(obj, f):
    # A slow disk: the serialized bytes trickle into the (temp) file in small chunks.
    buf = io.BytesIO()
    real_save(obj, buf)
    data = buf.getvalue()
    for i in range(0, len(data), 1 << 16):
        f.write(data[i : i + (1 << 16)])
        f.flush()
        time.sleep(0.05)

torch.save = slow_save
Checkpointer(model, sys.argv[1], save_to_disk=True).save(sys.argv[2], iteration=2)
print("save finished")
"""


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX SIGKILL")
@pytest.mark.parametrize("second_name", ["model_final", "model_0000001"])
def test_save_killed_midway_keeps_previous_checkpoint(tmp_path, second_name):
    Checkpointer(_big_model(1.0), str(tmp_path), save_to_disk=True).save("model_final", iteration=1)
    before = (tmp_path / "model_final.pth").read_bytes()

    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLED_SAVE.format(big=BIG), str(tmp_path), second_name],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            temps = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
            if temps and temps[0].stat().st_size > 0:
                break
            assert proc.poll() is None, proc.communicate()[1].decode()
            time.sleep(0.01)
        else:
            pytest.fail("the temp file of the save never appeared")
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert b"save finished" not in proc.stdout.read()

    # The pointer and the previous file are untouched and load.
    assert (tmp_path / "last_checkpoint").read_text() == "model_final.pth"
    assert (tmp_path / "model_final.pth").read_bytes() == before
    if second_name != "model_final":
        assert not (tmp_path / f"{second_name}.pth").exists()
    model = _big_model(0.0)
    extra = Checkpointer(model, str(tmp_path)).resume_or_load("", resume=True)
    assert extra == {"iteration": 1}
    assert torch.all(model.big == 1.0)


def test_save_contents_extras_and_no_leftovers(tmp_path):
    model = nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    model(torch.ones(1, 3)).sum().backward()
    opt.step()
    ckpt = Checkpointer(model, str(tmp_path / "sub"), save_to_disk=True, optimizer=opt)
    ckpt.save("model_0000009", iteration=9, note="x")
    assert sorted(os.listdir(tmp_path / "sub")) == ["last_checkpoint", "model_0000009.pth"]
    data = torch.load(tmp_path / "sub" / "model_0000009.pth", weights_only=True)
    assert data["iteration"] == 9 and data["note"] == "x"
    assert torch.equal(data["model"]["weight"], model.weight)
    assert data["optimizer"]["param_groups"][0]["lr"] == 0.5

    other = nn.Linear(3, 2)
    other_opt = torch.optim.SGD(other.parameters(), lr=0.1, momentum=0.9)
    extra = Checkpointer(other, str(tmp_path / "sub"), optimizer=other_opt).load(
        str(tmp_path / "sub" / "model_0000009.pth")
    )
    assert extra == {"iteration": 9, "note": "x"}
    assert torch.equal(other.weight, model.weight)
    assert other_opt.param_groups[0]["lr"] == 0.5
    assert torch.equal(
        other_opt.state[other.weight]["momentum_buffer"], opt.state[model.weight]["momentum_buffer"]
    )

    with pytest.raises(ValueError, match="reserved"):
        ckpt.save("x", optimizer=1)
    with pytest.raises(ValueError, match="directory"):
        ckpt.save("a/b")


def test_save_skipped_when_not_saving_to_disk(tmp_path):
    Checkpointer(nn.Linear(1, 1), str(tmp_path), save_to_disk=False).save("m")
    assert os.listdir(tmp_path) == []
    # save_to_disk=None means "main process": a single process is the main one.
    Checkpointer(nn.Linear(1, 1), str(tmp_path)).save("m")
    assert sorted(os.listdir(tmp_path)) == ["last_checkpoint", "m.pth"]


def _filled_linear(value: float) -> nn.Linear:
    model = nn.Linear(2, 2)
    nn.init.constant_(model.weight, value)
    nn.init.constant_(model.bias, value)
    return model


def test_resume_or_load_picks_last_checkpoint(tmp_path, log):
    run = tmp_path / "run"
    saver = Checkpointer(_filled_linear(4.0), str(run), save_to_disk=True)
    saver.save("model_0000004", iteration=4)
    saver.model = _filled_linear(9.0)
    saver.save("model_0000009", iteration=9)
    weights = tmp_path / "init.pth"
    torch.save(_filled_linear(7.0).state_dict(), weights)

    model = _filled_linear(0.0)
    ckpt = Checkpointer(model, str(run))
    extra = ckpt.resume_or_load(str(weights), resume=True)
    assert extra == {"iteration": 9}
    assert torch.all(model.weight == 9.0)
    banner = [r for r in log.records if "RESUMED" in r.getMessage()]
    assert banner and banner[0].levelno == logging.WARNING
    assert "model_0000009.pth" in banner[0].getMessage()
    assert "iteration 9" in banner[0].getMessage()

    # resume=False ignores the run directory and initialises from the weights.
    assert ckpt.resume_or_load(str(weights), resume=False) == {}
    assert torch.all(model.weight == 7.0)

    # A path as `resume` resumes from that very file.
    extra = ckpt.resume_or_load(str(weights), resume=str(run / "model_0000004.pth"))
    assert extra == {"iteration": 4}
    assert torch.all(model.weight == 4.0)

    # Nothing to resume: load the weights.
    fresh = Checkpointer(model, str(tmp_path / "empty"))
    assert fresh.resume_or_load(str(weights), resume=True) == {}
    assert torch.all(model.weight == 7.0)

    os.remove(run / "model_0000009.pth")
    with pytest.raises(FileNotFoundError, match="model_0000009.pth"):
        ckpt.resume_or_load(str(weights), resume=True)


def test_load_missing_file_and_unknown_checkpointable(tmp_path):
    ckpt = Checkpointer(nn.Linear(1, 1), str(tmp_path))
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        ckpt.load(str(tmp_path / "nope.pth"))
    assert ckpt.load("") == {}
    with pytest.raises(KeyError, match="optimizer"):
        ckpt.load(str(tmp_path / "nope.pth"), checkpointables=["optimizer"])


def test_weights_only_refuses_custom_objects_and_opt_out_works(tmp_path):
    source = _filled_linear(3.0)
    path = tmp_path / "custom.pth"
    torch.save({"model": source.state_dict(), "custom": Custom(5)}, path)

    model = _filled_linear(0.0)
    with pytest.raises(RuntimeError, match="weights_only=False") as err:
        Checkpointer(model, "").load(str(path))
    assert str(path) in str(err.value)
    assert torch.all(model.weight == 0.0)

    extra = Checkpointer(model, "", weights_only=False).load(str(path))
    assert isinstance(extra["custom"], Custom) and extra["custom"].value == 5
    assert torch.all(model.weight == 3.0)


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Module()
        self.backbone.conv = nn.Conv2d(2, 3, 1)
        self.head = nn.Module()
        self.head.fc = nn.Linear(3, 4)
        self.head.new = nn.Linear(4, 1, bias=False)


@pytest.mark.parametrize("layout", ["plain", "model", "state_dict", "module_prefix"])
def test_foreign_state_dict_loads_matches_and_logs_table(tmp_path, log, layout):
    theirs = {
        "conv.weight": torch.randn(3, 2, 1, 1),
        "conv.bias": torch.randn(3),
        "fc.weight": torch.randn(5, 3),  # wrong shape: skipped
        "fc.bias": torch.randn(4),
        "extra.weight": torch.randn(2),  # not in the model
    }
    if layout == "module_prefix":  # saved from a DistributedDataParallel-wrapped model
        theirs = {f"module.{k}": v for k, v in theirs.items()}
    wrapped = {"plain": theirs, "model": {"model": theirs}, "state_dict": {"state_dict": theirs}}
    path = tmp_path / "foreign.pth"
    torch.save(wrapped.get(layout, theirs), path)
    theirs = {k.removeprefix("module."): v for k, v in theirs.items()}

    model = _Net()
    fc_weight_before = model.head.fc.weight.detach().clone()
    new_before = model.head.new.weight.detach().clone()
    # It has weights for "head" but not for all of it: a partial load the caller accepts.
    Checkpointer(model, "", allow_partial_weights=True).load(str(path))

    assert torch.equal(model.backbone.conv.weight, theirs["conv.weight"])
    assert torch.equal(model.backbone.conv.bias, theirs["conv.bias"])
    assert torch.equal(model.head.fc.bias, theirs["fc.bias"])
    assert torch.equal(model.head.fc.weight, fc_weight_before)
    assert torch.equal(model.head.new.weight, new_before)

    text = log.text
    assert "backbone.conv.{bias,weight}" in text and "| conv.{bias,weight}" in text
    assert "head.fc.bias" in text and "(4,)" in text
    problems = next(r.getMessage() for r in log.records if "Weights not loaded" in r.getMessage())
    assert re.search(r"missing in checkpoint +\| head.new.weight ", problems)
    assert re.search(r"unused from checkpoint +\| extra.weight ", problems)
    assert len(problems.splitlines()) == 6  # title, header, rule, three rows
    assert "shape mismatch, skipped" in problems and "head.fc.weight <- fc.weight" in problems
    assert "(5, 3) vs (4, 3)" in problems


def test_whole_model_checkpoint_that_leaves_tensors_unloaded_is_an_error(tmp_path):
    theirs = {
        "conv.weight": torch.randn(3, 2, 1, 1),
        "conv.bias": torch.randn(3),
        "fc.weight": torch.randn(5, 3),  # another shape
        "fc.bias": torch.randn(4),  # fills a tensor outside the backbone: a whole model
    }
    path = tmp_path / "foreign.pth"
    torch.save(theirs, path)
    model = _Net()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ckpt = Checkpointer(model, "")
    with pytest.raises(IncompleteWeightsError) as err:
        ckpt.load(str(path))
    message = str(err.value)
    assert f"{path} is a whole-model checkpoint (it has weights for head)" in message
    assert "2 of the model's 5 tensors would not load" in message
    assert re.search(r"missing in checkpoint +\| head.new.weight ", message)
    assert "head.fc.weight <- fc.weight" in message and "(5, 3) vs (4, 3)" in message
    assert "MODEL.ALLOW_PARTIAL_WEIGHTS True" in message
    # Nothing was loaded.
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key

    # With allow_partial_weights the rest loads, and the report says what did not.
    ckpt = Checkpointer(model, "", allow_partial_weights=True)
    ckpt.load(str(path))
    assert torch.equal(model.head.fc.bias, theirs["fc.bias"])
    report = ckpt.last_load_report
    assert report.whole_model
    assert report.missing == ("head.new.weight",) and report.incorrect_shapes == ("head.fc.weight",)

    # Unused names of a top-level part of the model also make it a whole-model checkpoint.
    torch.save({**theirs, "fc.weight": torch.randn(4, 3), "head.extra.weight": torch.ones(1)}, path)
    with pytest.raises(IncompleteWeightsError, match="head.new.weight"):
        Checkpointer(_Net(), "").load(str(path))


def test_backbone_only_checkpoint_loads_with_a_warning(tmp_path, log):
    theirs = {
        "conv.weight": torch.randn(3, 2, 1, 1),
        "conv.bias": torch.randn(3),
        "fc1000.weight": torch.randn(10, 3),  # an ImageNet classifier: no part of the model
    }
    path = tmp_path / "imagenet.pth"
    torch.save(theirs, path)
    model = _Net()
    ckpt = Checkpointer(model, "")
    ckpt.load(str(path))
    assert torch.equal(model.backbone.conv.weight, theirs["conv.weight"])
    report = ckpt.last_load_report
    assert not report.whole_model
    assert set(report.missing) == {"head.fc.weight", "head.fc.bias", "head.new.weight"}
    assert "initialises the backbone only" in log.text
    problems = next(r for r in log.records if "Weights not loaded" in r.getMessage())
    assert problems.levelno == logging.WARNING and "head.fc.{bias,weight}" in problems.getMessage()


def test_foreign_file_without_weights_is_a_clear_error(tmp_path):
    path = tmp_path / "bad.pth"
    torch.save({"epoch": 3, "weights_here": [1, 2]}, path)
    with pytest.raises(ValueError, match="bad.pth.*cannot find the weights"):
        Checkpointer(nn.Linear(1, 1), "").load(str(path))


def _count_files(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir())


def test_periodic_checkpointer_keeps_last_n_and_final(tmp_path):
    ckpt = Checkpointer(nn.Linear(1, 1), str(tmp_path), save_to_disk=True)
    periodic = PeriodicCheckpointer(ckpt, period=2, max_iter=11, max_to_keep=2)
    assert isinstance(periodic, FvcorePeriodicCheckpointer)
    for it in range(11):
        periodic.step(it, extra_value=it)
    assert _count_files(tmp_path) == [
        "last_checkpoint",
        "model_0000007.pth",
        "model_0000009.pth",
        "model_final.pth",
    ]
    assert (tmp_path / "last_checkpoint").read_text() == "model_final.pth"
    final = torch.load(tmp_path / "model_final.pth", weights_only=True)
    assert final["iteration"] == 10 and final["extra_value"] == 10


def test_periodic_checkpointer_spares_pointed_to_and_resumed_files(tmp_path):
    ckpt = Checkpointer(nn.Linear(1, 1), str(tmp_path), save_to_disk=True)
    # Left by the run before a resume (older ones) and by a longer earlier run (newer one).
    for it in (1, 3, 99):
        ckpt.save(f"model_{it:07d}", iteration=it)
    ckpt.save("model_best", iteration=3)
    (tmp_path / "best_checkpoint").write_text("model_0000001.pth")

    periodic = PeriodicCheckpointer(ckpt, period=2, max_to_keep=2)
    for it in range(4, 10):
        periodic.step(it)
    assert _count_files(tmp_path) == [
        "best_checkpoint",
        "last_checkpoint",
        "model_0000001.pth",  # another pointer names it
        "model_0000007.pth",
        "model_0000009.pth",
        "model_0000099.pth",  # newer than this run: not ours to delete
        "model_best.pth",
    ]


def test_periodic_checkpointer_rejects_bad_arguments():
    ckpt = Checkpointer(nn.Linear(1, 1), "")
    with pytest.raises(ValueError, match="period"):
        PeriodicCheckpointer(ckpt, period=0)
    with pytest.raises(ValueError, match="max_to_keep"):
        PeriodicCheckpointer(ckpt, period=1, max_to_keep=0)


class _Labelled(LabelSpaceMixin, nn.Module):
    def __init__(self, label_space=None):
        super().__init__()
        self.linear = nn.Linear(2, 2)
        self.label_space = label_space


def _space(names):
    ids = range(len(names))
    return LabelSpace(
        classes=names,
        colors=[(0, 0, 0)] * len(names),
        thing_ids=[],
        stuff_ids=ids,
        thing_dataset_ids=[],
        stuff_dataset_ids=ids,
        label_divisor=1,
        ignore_label=255,
    )


def test_label_space_round_trips_through_a_checkpoint(tmp_path, log):
    trained = _Labelled(_space(["sky", "road"]))
    Checkpointer(trained, str(tmp_path)).save("m")
    assert "label_space" in torch.load(tmp_path / "m.pth", weights_only=True)

    fresh = _Labelled()  # e.g. a predictor built with no dataset registered
    Checkpointer(fresh).load(str(tmp_path / "m.pth"))
    assert fresh.label_space == _space(["sky", "road"])
    assert torch.equal(fresh.linear.weight, trained.linear.weight)

    # A model built for another dataset keeps its own, with a warning naming both.
    other = _Labelled(_space(["grass", "water"]))
    Checkpointer(other).load(str(tmp_path / "m.pth"))
    assert other.label_space == _space(["grass", "water"])
    assert "differs from the one stored in" in log.text
    assert "classes ('grass', 'water') vs ('sky', 'road')" in log.text

    # A model without a label space attribute ignores the stored one.
    plain = nn.Module()
    plain.linear = nn.Linear(2, 2)
    Checkpointer(plain).load(str(tmp_path / "m.pth"))
    assert torch.equal(plain.linear.weight, trained.linear.weight)


def _periodic_run(run: Path, iterations=(9, 19, 29)) -> None:
    """Periodic checkpoints whose weights hold their iteration; the pointer names the last."""
    saver = Checkpointer(_filled_linear(0.0), str(run), save_to_disk=True)
    for it in iterations:
        saver.model = _filled_linear(float(it))
        saver.save(f"model_{it:07d}", iteration=it)


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_resume_falls_back_to_previous_complete_checkpoint(tmp_path, log):
    run = tmp_path / "run"
    _periodic_run(run, iterations=(9, 19, 29))
    _truncate(run / "model_0000029.pth")
    _truncate(run / "model_0000019.pth")

    model = _filled_linear(-1.0)
    extra = Checkpointer(model, str(run)).resume_or_load("", resume=True)
    assert extra == {"iteration": 9}
    assert torch.all(model.weight == 9.0)
    warnings = [r.getMessage() for r in log.records if r.levelno == logging.WARNING]
    assert any(
        "model_0000029.pth' is not a checkpoint or is corrupt" in w
        and "previous complete checkpoint" in w
        for w in warnings
    )
    assert any("RESUMED from" in w and "model_0000009.pth" in w for w in warnings)

    # An explicitly chosen file gets no fallback: the error names it.
    with pytest.raises(CorruptCheckpointError, match=r"model_0000029.pth' is not a checkpoint"):
        Checkpointer(model, str(run)).resume_or_load("", resume=str(run / "model_0000029.pth"))


def test_resume_with_no_loadable_checkpoint_names_them_all(tmp_path):
    run = tmp_path / "run"
    _periodic_run(run, iterations=(9, 19))
    for name in ("model_0000009.pth", "model_0000019.pth"):
        (run / name).write_text("garbage")
    with pytest.raises(CorruptCheckpointError) as err:
        Checkpointer(_filled_linear(0.0), str(run)).resume_or_load("", resume=True)
    message = str(err.value)
    assert message.startswith(f"Cannot resume from {run}: no checkpoint there loads")
    assert "model_0000019.pth (it starts with b'garbage'" in message
    assert "model_0000009.pth (" in message


def test_leftover_temp_files_are_removed_when_a_saving_run_starts(tmp_path, log):
    run = tmp_path / "run"
    _periodic_run(run, iterations=(9,))
    leftovers = [".model_0000019.pth.0123456789ab.tmp", ".last_checkpoint.abcdef012345.tmp"]
    unrelated = [".config.yaml.0123456789ab.tmp", ".model_0000019.pth.tmp"]
    for name in leftovers + unrelated:
        (run / name).write_bytes(b"partial")

    # Evaluation-only (save_to_disk=False) leaves another run's directory alone.
    Checkpointer(_filled_linear(0.0), str(run), save_to_disk=False).resume_or_load("")
    assert all((run / name).exists() for name in leftovers)

    extra = Checkpointer(_filled_linear(0.0), str(run), save_to_disk=True).resume_or_load("")
    assert extra == {"iteration": 9}
    assert not any((run / name).exists() for name in leftovers)
    assert all((run / name).exists() for name in unrelated)
    removed = [r.getMessage() for r in log.records if r.getMessage().startswith("Removed ")]
    assert len(set(removed)) == 2 and "interrupted save of model_0000019.pth" in " ".join(removed)


def _bn_model(device: str) -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)).to(device)


def test_saved_tensors_are_on_the_cpu_and_keep_state_dict_metadata(tmp_path):
    model = _bn_model("cpu")
    optimizer = torch.optim.Adam(model.parameters())
    model(torch.randn(2, 3, 5, 5)).sum().backward()
    optimizer.step()
    Checkpointer(model, str(tmp_path), optimizer=optimizer).save("m")
    data = torch.load(tmp_path / "m.pth", weights_only=True)
    # BatchNorm's state-dict version travels in _metadata; load_state_dict reads it.
    assert data["model"]._metadata[""]["version"] == 1
    assert data["model"]._metadata["1"]["version"] == model[1]._version
    tensors = [*data["model"].values()]
    for state in data["optimizer"]["state"].values():
        tensors += [v for v in state.values() if isinstance(v, torch.Tensor)]
    assert tensors and {t.device.type for t in tensors} == {"cpu"}


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_a_cuda_checkpoint_loads_on_the_cpu_without_map_location(tmp_path):
    model = _bn_model("cuda")
    Checkpointer(model, str(tmp_path)).save("m")
    data = torch.load(tmp_path / "m.pth", weights_only=True)
    assert {t.device.type for t in data["model"].values()} == {"cpu"}
    cpu_model = _bn_model("cpu")
    Checkpointer(cpu_model).load(str(tmp_path / "m.pth"))
    for (name, a), b in zip(model.state_dict().items(), cpu_model.state_dict().values()):
        assert torch.equal(a.cpu(), b), name

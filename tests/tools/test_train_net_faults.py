"""tools/train_net.py under faults: hostile weight files and plugins, evaluation of weights
that did not load, corrupt checkpoints, and runs killed between checkpoints.

Every run uses the toy plugin (tests/engine/toy_plugin.py), so each takes a few seconds.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import torch
from torch import nn

from panoptic2.checkpoint import Checkpointer
from panoptic2.config import load_config
from panoptic2.modeling import build_model
from panoptic2.utils.plugins import load_plugins
from tests.engine.toy_plugin import toy_overrides

REPO = Path(__file__).resolve().parents[2]
PLUGIN = "tests.engine.toy_plugin"


def _start(args, *, env_extra=None):
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("PANOPTIC2_ALLOWED_PLUGINS", None)
    env.update(env_extra or {})
    cmd = [sys.executable, str(REPO / "tools" / "train_net.py"), "--plugin", PLUGIN, *args]
    return subprocess.Popen(
        cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def _run(args, *, ok=True, **kwargs) -> str:
    proc = _start(args, **kwargs)
    out, _ = proc.communicate(timeout=300)
    if ok:
        assert proc.returncode == 0, out[-4000:]
    else:
        assert proc.returncode != 0, out[-4000:]
    return out


def _eval_args(output_dir, weights, *extra):
    return ["--eval-only", *extra, *toy_overrides(str(output_dir), **{"MODEL.WEIGHTS": weights})]


class _OpensMarker:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_eval_only_refuses_a_malicious_pkl(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pkl"
    with open(evil, "wb") as f:
        pickle.dump({"model": {"net.0.weight": _OpensMarker(str(marker))}}, f)
    out = _run(_eval_args(tmp_path / "out", str(evil)), ok=False)
    assert f"Refusing to load {evil}: it pickles io.open, which could run code" in out
    assert not marker.exists()
    assert not (tmp_path / "out" / "inference").exists()


@pytest.fixture(scope="module")
def toy_checkpoints(tmp_path_factory):
    """A full checkpoint of the toy model, one without its first layer's weight, one of a
    wider toy model (every shape differs) and a state dict of an unrelated module."""
    root = tmp_path_factory.mktemp("toy_checkpoints")
    load_plugins([PLUGIN])
    paths = {}
    for name, hidden in (("full", 32), ("wider", 64)):
        cfg = load_config(None, toy_overrides(str(root), **{"TOY.HIDDEN": hidden}))
        Checkpointer(build_model(cfg), str(root), save_to_disk=True).save(name)
        paths[name] = str(root / f"{name}.pth")
    data = torch.load(paths["full"], weights_only=True)
    del data["model"]["net.0.weight"]
    paths["half"] = str(root / "half.pth")
    torch.save(data, paths["half"])
    paths["foreign"] = str(root / "foreign.pth")
    torch.save(nn.ModuleDict({"conv": nn.Conv2d(3, 5, 3)}).state_dict(), paths["foreign"])
    return paths


def test_eval_only_without_weights_is_an_error(tmp_path):
    out = _run(_eval_args(tmp_path, ""), ok=False)
    assert "IncompleteWeightsError: No weights were loaded" in out
    assert "--allow-partial-weights" in out
    assert not (tmp_path / "inference").exists()


def test_eval_only_with_weights_of_another_model_is_an_error(tmp_path, toy_checkpoints):
    out = _run(_eval_args(tmp_path, toy_checkpoints["foreign"]), ok=False)
    assert "of the model's weights (by element count;" in out
    assert f"loaded from {toy_checkpoints['foreign']}" in out
    assert "net.0.weight" in out  # the unmatched tensors are listed
    assert not (tmp_path / "inference").exists()


@pytest.mark.parametrize("kind", ["half", "wider"])
def test_eval_only_with_an_incomplete_checkpoint_of_the_model_is_an_error(
    tmp_path, toy_checkpoints, kind
):
    out = _run(_eval_args(tmp_path, toy_checkpoints[kind]), ok=False)
    assert f"{toy_checkpoints[kind]} is a whole-model checkpoint of panoptic2" in out
    assert "net.0.weight" in out  # the tensors that would not load are listed
    if kind == "wider":
        assert "shape mismatch" in out
    assert "--allow-partial-weights" in out
    assert not (tmp_path / "inference").exists()


@pytest.mark.parametrize(
    "weights, extra",
    [
        ("half", ["--allow-partial-weights"]),
        ("", ["--allow-partial-weights"]),
        ("", ["MODEL.ALLOW_PARTIAL_WEIGHTS", "True"]),
        ("full", []),
    ],
)
def test_eval_only_runs_with_full_or_explicitly_partial_weights(
    tmp_path, toy_checkpoints, weights, extra
):
    flags = [f for f in extra if f.startswith("--")]
    opts = [f for f in extra if not f.startswith("--")]
    args = _eval_args(tmp_path, toy_checkpoints.get(weights, ""), *flags) + opts
    _run(args)
    results = json.loads((tmp_path / "inference" / "toy_val" / "results.json").read_text())
    assert results["toy"]["num_images"] == 64


def test_config_plugin_from_outside_the_project_is_refused_unless_allowed(tmp_path):
    name = f"p2_faulty_plugin_{uuid.uuid4().hex[:8]}"
    marker = tmp_path / "pwned"
    (tmp_path / f"{name}.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    cfg = tmp_path / "exp.yaml"
    cfg.write_text(f"PLUGINS: [{name}]\n")
    env = {"PYTHONPATH": os.pathsep.join([str(REPO), str(tmp_path)])}
    args = ["--config-file", str(cfg), *_eval_args(tmp_path / "out", "", "--allow-partial-weights")]

    out = _run(args, ok=False, env_extra=env)
    assert f"Refusing to import plugin '{name}' named in PLUGINS of config file '{cfg}'" in out
    assert f"--allow-plugin {name}" in out
    assert not marker.exists()

    _run(["--allow-plugin", name, *args], env_extra=env)
    assert marker.exists()


def _records(output_dir: Path) -> list[dict]:
    lines = (output_dir / "metrics.json").read_text().splitlines()
    return [json.loads(line) for line in lines]


def _training_iterations(output_dir: Path) -> list[int]:
    return [r["iteration"] for r in _records(output_dir) if "total_loss" in r]


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX SIGKILL")
def test_resume_after_kill_between_checkpoints(tmp_path):
    """Killed at iteration 33 after the checkpoint of iteration 29: resuming logs each
    iteration once; with that checkpoint truncated and a save's temp file left over, the
    run resumes from iteration 19's checkpoint and removes the temp file."""
    n, period, block = 50, 10, 33
    opts = {"SOLVER.MAX_ITER": n, "SOLVER.CHECKPOINT_PERIOD": period, "LOG_PERIOD": 1}
    killed = tmp_path / "killed"
    proc = _start(
        toy_overrides(
            str(killed), **opts, **{"HOOKS.CUSTOM": "[LossRecorder,BlockAfterIteration]"}
        ),
        env_extra={"PANOPTIC2_TEST_BLOCK_AFTER": str(block)},
    )
    try:
        deadline = time.time() + 240
        while not (killed / "blocked").exists():
            assert proc.poll() is None, proc.stdout.read()[-4000:]
            assert time.time() < deadline, "training never reached the blocking iteration"
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
    assert (killed / "last_checkpoint").read_text() == "model_0000029.pth"
    assert _training_iterations(killed) == list(range(block + 1))

    # Plain resume: iterations 30..33 are dropped from metrics.json, then logged once.
    resumed = tmp_path / "resumed"
    shutil.copytree(killed, resumed)
    out = _run(["--resume", *toy_overrides(str(resumed), **opts)])
    assert "RESUMING at iteration 30" in out
    assert f"Dropped {block - 29} records after iteration 29" in out
    assert _training_iterations(resumed) == list(range(n))

    # The checkpoint the pointer names is cut short; a killed save left its temp file.
    broken = tmp_path / "broken"
    shutil.copytree(killed, broken)
    ckpt = broken / "model_0000029.pth"
    ckpt.write_bytes(ckpt.read_bytes()[:1000])
    leftover = broken / ".model_0000039.pth.0123456789ab.tmp"
    leftover.write_bytes(b"half a checkpoint")
    out = _run(["--resume", *toy_overrides(str(broken), **opts)])
    assert f"'{ckpt}' is not a checkpoint or is corrupt (" in out
    assert "resuming from the previous complete checkpoint" in out
    assert "RESUMING at iteration 20" in out
    assert f"Removed {leftover}, left by an interrupted save of model_0000039.pth" in out
    assert not leftover.exists()
    assert _training_iterations(broken) == list(range(n))

"""DefaultTrainer end to end on the toy plugin: training, 2-process equivalence (gloo),
exact resume after SIGKILL, plugins in spawned workers, evaluation outputs."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from panoptic2.config import load_config
from panoptic2.engine import DefaultTrainer, default_argument_parser
from panoptic2.utils.plugins import load_plugins

from .toy_plugin import toy_overrides

REPO = Path(__file__).resolve().parents[2]
PLUGIN = "tests.engine.toy_plugin"


def _run_train_net(args, *, env_extra=None, wait=True, timeout=300):
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.update(env_extra or {})
    cmd = [sys.executable, str(REPO / "tools" / "train_net.py"), "--plugin", PLUGIN, *args]
    proc = subprocess.Popen(
        cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    if not wait:
        return proc
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out[-4000:]
    return out


def _losses(output_dir):
    with open(os.path.join(output_dir, "losses.json")) as f:
        return dict((int(it), v) for it, v in json.load(f))


def _weights(path):
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


def test_toy_training_loss_falls_and_evaluates(tmp_path):
    load_plugins([PLUGIN])
    cfg = load_config(None, toy_overrides(str(tmp_path), **{"SOLVER.MAX_ITER": 300}))
    trainer = DefaultTrainer(cfg)
    trainer.resume_or_load(resume=False)
    results = trainer.train()

    losses = _losses(tmp_path)
    assert sorted(losses) == list(range(300))
    first = sum(losses[i] for i in range(20)) / 20
    last = sum(losses[i] for i in range(280, 300)) / 20
    assert last < 0.5 * first, (first, last)
    # Chance is 25 %; a trained MLP separates the linear teacher's classes well.
    assert results["toy"]["accuracy"] > 80
    assert results["toy"]["num_images"] == 64

    saved = json.loads((tmp_path / "inference" / "toy_val" / "results.json").read_text())
    assert saved == results
    records = [json.loads(line) for line in (tmp_path / "metrics.json").read_text().splitlines()]
    assert any(r.get("toy/accuracy") == pytest.approx(results["toy"]["accuracy"]) for r in records)
    assert any("lr" in r and "total_loss" in r for r in records)
    # Periodic checkpoints and the final one, with the pointer naming the final.
    assert (tmp_path / "model_0000099.pth").exists()
    assert (tmp_path / "model_final.pth").exists()
    assert (tmp_path / "last_checkpoint").read_text().strip() == "model_final.pth"


def test_trainer_refuses_frozen_compiled_weights(tmp_path):
    load_plugins([PLUGIN])
    overrides = toy_overrides(str(tmp_path), **{"MODEL.COMPILE": True})
    cfg = load_config(None, [*overrides, "MODEL.COMPILE_FREEZE", True])
    with pytest.raises(ValueError, match="MODEL.COMPILE_FREEZE .* inference-only runs"):
        DefaultTrainer(cfg)


@pytest.mark.slow
def test_two_processes_match_one_process_and_plugin_reaches_workers(tmp_path):
    """Same total batch over 2 gloo processes gives the same loss curve and weights as
    1 process: gradients are averaged and the sampler shards one global stream. The toy
    dataset exists only through --plugin, so the workers must have imported it."""
    one, two = tmp_path / "one", tmp_path / "two"
    opts = {"SOLVER.MAX_ITER": 120, "SOLVER.CHECKPOINT_PERIOD": 1000}
    _run_train_net(["--num-gpus", "1", *toy_overrides(str(one), **opts)])
    out = _run_train_net(["--num-gpus", "2", *toy_overrides(str(two), **opts)])
    assert "World size: 2" in (two / "log.txt").read_text(), out[-2000:]
    assert (two / "log.txt.rank1").exists()

    l1, l2 = _losses(one), _losses(two)
    assert sorted(l1) == sorted(l2) == list(range(120))
    for it in l1:
        assert l2[it] == pytest.approx(l1[it], rel=1e-4, abs=1e-6), it
    w1, w2 = _weights(one / "model_final.pth"), _weights(two / "model_final.pth")
    for key in w1:
        torch.testing.assert_close(w2[key], w1[key], rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_exact_resume_after_sigkill(tmp_path):
    """Train N straight; separately train, SIGKILL after the N/2 checkpoint, resume: the
    final weights are bit-identical (dropout exercises the restored RNG state)."""
    n = 60
    opts = {
        "SOLVER.MAX_ITER": n,
        "SOLVER.CHECKPOINT_PERIOD": n // 2,
        "TOY.DROPOUT": 0.2,
        "DETERMINISTIC": True,
        "DATALOADER.NUM_WORKERS": 1,
    }
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    _run_train_net(toy_overrides(str(straight), **opts))

    killed_opts = dict(opts, **{"HOOKS.CUSTOM": "[LossRecorder,BlockAfterIteration]"})
    proc = _run_train_net(
        toy_overrides(str(resumed), **killed_opts),
        env_extra={"PANOPTIC2_TEST_BLOCK_AFTER": str(n // 2 + 3)},
        wait=False,
    )
    deadline = time.time() + 240
    while not (resumed / "blocked").exists():
        assert proc.poll() is None, proc.stdout.read()[-4000:]
        assert time.time() < deadline, "training never reached the blocking iteration"
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (resumed / "model_final.pth").exists()
    assert (resumed / "last_checkpoint").read_text().strip() == f"model_{n // 2 - 1:07d}.pth"

    out = _run_train_net(["--resume", *toy_overrides(str(resumed), **opts)])
    assert f"RESUMING at iteration {n // 2}" in out
    w_straight = _weights(straight / "model_final.pth")
    w_resumed = _weights(resumed / "model_final.pth")
    for key in w_straight:
        assert torch.equal(w_straight[key], w_resumed[key]), key
    # The resumed run's losses continue the straight run's exactly.
    ls, lr = _losses(straight), _losses(resumed)
    assert sorted(lr) == list(range(n // 2, n))
    assert all(lr[it] == ls[it] for it in lr)


def test_resume_from_explicit_checkpoint_path(tmp_path):
    load_plugins([PLUGIN])
    cfg = load_config(
        None,
        toy_overrides(
            str(tmp_path / "a"), **{"SOLVER.MAX_ITER": 40, "SOLVER.CHECKPOINT_PERIOD": 20}
        ),
    )
    trainer = DefaultTrainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()

    cfg_b = load_config(None, toy_overrides(str(tmp_path / "b"), **{"SOLVER.MAX_ITER": 40}))
    trainer_b = DefaultTrainer(cfg_b)
    trainer_b.resume_or_load(resume=str(tmp_path / "a" / "model_0000019.pth"))
    assert trainer_b.start_iter == 20
    reference = _weights(tmp_path / "a" / "model_0000019.pth")
    for key, value in trainer_b.model.state_dict().items():
        assert torch.equal(value, reference[key])


def test_argument_parser_flags_and_overrides():
    parser = default_argument_parser()
    args = parser.parse_args(
        [
            "--config-file",
            "a.yaml",
            "--num-gpus",
            "2",
            "--plugin",
            "x",
            "--plugin",
            "y",
            "SOLVER.BASE_LR",
            "0.1",
            "SEED=3",
        ]
    )
    assert args.config_file == "a.yaml" and args.num_gpus == 2
    assert args.plugin == ["x", "y"]
    assert args.opts == ["SOLVER.BASE_LR", "0.1", "SEED=3"]
    assert args.resume is False
    assert parser.parse_args(["--resume"]).resume is True
    assert parser.parse_args(["--resume", "ckpt.pth"]).resume == "ckpt.pth"
    # A bare --resume followed by overrides does not take the first key as its path.
    args = parser.parse_args(["--resume", "SOLVER.MAX_ITER", "10", "SEED=1"])
    assert args.resume is True and args.opts == ["SOLVER.MAX_ITER", "10", "SEED=1"]


def test_hooks_disabled_and_custom_replacement(tmp_path):
    load_plugins([PLUGIN])
    cfg = load_config(None, toy_overrides(str(tmp_path), **{"HOOKS.DISABLED": "[PeriodicWriter]"}))
    names = [h.name for h in DefaultTrainer(cfg).hooks]
    assert "PeriodicWriter" not in names
    assert names[0] == "IterationTimer" and names[-1] == "LossRecorder"
    with pytest.raises(KeyError, match="HOOKS.DISABLED names 'NoSuchHook'"):
        DefaultTrainer(
            load_config(None, toy_overrides(str(tmp_path), **{"HOOKS.DISABLED": "[NoSuchHook]"}))
        )

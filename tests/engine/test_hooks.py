"""The default hooks, each on a tiny trainer with a hand-checkable effect."""

import itertools
import math

import pytest
import torch
from torch import nn

from panoptic2.checkpoint import Checkpointer
from panoptic2.engine import SimpleTrainer, hooks
from panoptic2.utils.events import EventWriter


class _Model(nn.Module):
    def __init__(self, bn=False):
        super().__init__()
        self.w = nn.Parameter(torch.ones(2))
        self.bn = nn.BatchNorm1d(2, momentum=0.5) if bn else None

    def forward(self, batch):
        x = batch if not isinstance(batch, list) else torch.stack(batch)
        if self.bn is not None:
            x = self.bn(x)
        return {"loss": ((x * self.w).sum(dim=1) ** 2).mean()}


def _trainer(model=None, data=None, lr=0.01):
    model = model or _Model()
    data = data if data is not None else itertools.repeat(torch.ones(4, 2))
    return SimpleTrainer(model, data, torch.optim.SGD(model.parameters(), lr=lr))


def test_flatten_results_nests_with_slashes_and_drops_non_numbers():
    flat = hooks.flatten_results(
        {"panoptic_seg": {"PQ": 61.0, "per_class": {"car": 1}}, "note": "x", "ok": True}
    )
    assert flat == {"panoptic_seg/PQ": 61.0, "panoptic_seg/per_class/car": 1.0}


def test_eval_hook_period_and_final_and_scalars():
    calls = []

    def evaluate():
        calls.append(trainer.iter)
        return {"task": {"score": float(len(calls))}}

    trainer = _trainer()
    trainer.register_hooks([hooks.EvalHook(4, evaluate)])
    trainer.train(0, 10)
    # After iterations 3 and 7 (the 4th and 8th), and once after training.
    assert calls == [3, 7, 10]
    history = trainer.storage.history("task/score").values()
    assert [v for v, _ in history] == [1.0, 2.0, 3.0]


def test_eval_hook_records_nan_metrics():
    # pycocotools reports "no large objects" as -1, which evaluators turn into NaN.
    trainer = _trainer()
    trainer.register_hooks([hooks.EvalHook(0, lambda: {"bbox": {"AP": 40.0, "APl": float("nan")}})])
    trainer.train(0, 2)
    latest = trainer.storage.latest()
    assert latest["bbox/AP"][0] == 40.0 and math.isnan(latest["bbox/APl"][0])


def test_lr_scheduler_hook_records_lr_then_steps():
    trainer = _trainer(lr=1.0)
    sched = torch.optim.lr_scheduler.LambdaLR(trainer.optimizer, lambda it: 0.5**it)
    trainer.register_hooks([hooks.LRScheduler(trainer.optimizer, sched)])
    trainer.train(0, 4)
    assert [v for v, _ in trainer.storage.history("lr").values()] == [1.0, 0.5, 0.25, 0.125]
    assert trainer.hooks[0].state_dict()["last_epoch"] == 4


def test_best_checkpointer_saves_only_on_improvement(tmp_path):
    scores = iter([1.0, float("nan"), 3.0, 2.0])
    trainer = _trainer()
    ckpt = Checkpointer(trainer.model, str(tmp_path))
    saved = []
    orig_save = ckpt.save
    ckpt.save = lambda name, **kw: (saved.append(kw["iteration"]), orig_save(name, **kw))
    ckpt.save("model_0000000", iteration=0)
    saved.clear()
    trainer.register_hooks(
        [
            hooks.EvalHook(2, lambda: {"m": {"v": next(scores)}}, eval_after_train=False),
            hooks.BestCheckpointer(ckpt, "m/v", mode="max"),
        ]
    )
    trainer.train(0, 8)
    # 1.0 (iter 1) is saved; NaN (iter 3) is never compared; 3.0 (iter 5) beats 1.0;
    # 2.0 (iter 7) is worse.
    assert saved == [1, 5]
    best = trainer.hooks[1]
    assert best.state_dict() == {"best_metric": 3.0, "best_iter": 5}
    assert (tmp_path / "model_best.pth").exists()
    # Resuming continues from the latest periodic state, never from the best copy.
    assert (tmp_path / "last_checkpoint").read_text().strip() == "model_0000000.pth"


def test_precise_bn_sets_exact_population_statistics():
    torch.manual_seed(0)
    batches = [torch.randn(8, 2) * 3 + 5 for _ in range(6)]
    model = _Model(bn=True)
    trainer = _trainer(model=model, data=itertools.cycle(batches), lr=0.0)
    trainer.register_hooks([hooks.PreciseBN(0, model, lambda: iter(batches), num_iter=6)])
    trainer.train(0, 3)
    # The population statistics of all the data seen (Wu & Johnson's estimator): training
    # momentum (0.5 here) leaves no trace.
    all_x = torch.cat(batches)
    torch.testing.assert_close(model.bn.running_mean, all_x.mean(0))
    torch.testing.assert_close(model.bn.running_var, all_x.var(0, unbiased=False))


def test_validation_loss_is_mean_over_batches_and_leaves_bn_untouched():
    model = _Model(bn=True)
    val = [torch.full((2, 2), 1.0), torch.tensor([[1.0, 0.0], [0.0, 1.0]])]
    trainer = _trainer(model=model, lr=0.0)
    hook = hooks.ValidationLoss(2, model, lambda: iter(val))
    trainer.register_hooks([hook])
    trainer.train(0, 2)
    before = model.bn.running_mean.clone()
    losses = hook.compute()
    torch.testing.assert_close(model.bn.running_mean, before)
    # BN in eval mode: x_hat = (x - running_mean) / sqrt(running_var + eps); w = 1.
    expected = []
    for x in val:
        xh = (x - model.bn.running_mean) / torch.sqrt(model.bn.running_var + model.bn.eps)
        expected.append(((xh * model.w).sum(1) ** 2).mean().item())
    assert losses["val_loss"] == pytest.approx(sum(expected) / 2, rel=1e-5)
    assert losses["val_total_loss"] == pytest.approx(losses["val_loss"])
    assert trainer.storage.history("val_loss").values()[-1][1] == 1


class _CountingWriter(EventWriter):
    def __init__(self):
        self.writes, self.closed = 0, False

    def write(self):
        self.writes += 1

    def close(self):
        self.closed = True


def test_periodic_writer_period_last_iter_and_close():
    writer = _CountingWriter()
    trainer = _trainer()
    trainer.register_hooks([hooks.PeriodicWriter([writer], period=3)])
    trainer.train(0, 7)
    # after iterations 2, 5 and 6 (last), then once more in after_train
    assert writer.writes == 4 and writer.closed


def test_iteration_timer_records_time_after_warmup():
    trainer = _trainer()
    trainer.register_hooks([hooks.IterationTimer(warmup_iter=2)])
    trainer.train(0, 5)
    times = trainer.storage.history("time").values()
    assert [it for _, it in times] == [2, 3, 4]
    assert all(t >= 0 for t, _ in times)

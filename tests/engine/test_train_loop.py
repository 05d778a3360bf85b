"""SimpleTrainer / AMPTrainer / TrainerBase: steps, hook order and state, failures."""

import itertools
import logging

import pytest
import torch
from torch import nn

from panoptic2.engine import AMPTrainer, HookBase, Priority, SimpleTrainer
from panoptic2.utils.events import EventStorage


class _Linear(nn.Module):
    """Least squares on a fixed batch: loss = mean((w x - y)^2)."""

    def __init__(self, nan_at_call=None):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(3))
        self.calls = 0
        self.nan_at_call = nan_at_call

    def forward(self, batch):
        self.calls += 1
        x, y = batch
        loss = ((x @ self.w - y) ** 2).mean()
        if self.calls == self.nan_at_call:
            loss = loss * float("nan")
        return {"loss_mse": loss, "loss_zero": self.w.sum() * 0}


def _loader():
    x = torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0], [1.0, 1.0, 0]])
    y = torch.tensor([1.0, 2.0, 3.0, 3.0])
    return itertools.repeat((x, y))


class _Recorder(HookBase):
    def __init__(self, name, log, priority=Priority.NORMAL):
        self._name = name
        self.log = log
        self.priority = priority
        self.state = {"count": 0}

    @property
    def name(self):
        return self._name

    def before_step(self):
        self.log.append(f"{self._name}.before_step")

    def after_backward(self):
        # Gradients exist here, before the optimizer step.
        assert self.trainer.model.w.grad is not None
        self.log.append(f"{self._name}.after_backward")

    def after_step(self):
        self.state["count"] += 1
        self.log.append(f"{self._name}.after_step")

    def state_dict(self):
        return dict(self.state)

    def load_state_dict(self, state):
        self.state = dict(state)


def test_simple_trainer_converges_to_least_squares_solution():
    model = _Linear()
    trainer = SimpleTrainer(model, _loader(), torch.optim.SGD(model.parameters(), lr=0.2))
    trainer.train(0, 300)
    # Exact least-squares solution of the 4x3 system, computed independently.
    x, y = next(_loader())
    expected = torch.linalg.lstsq(x, y.unsqueeze(1)).solution.squeeze(1)
    torch.testing.assert_close(model.w.detach(), expected, atol=1e-4, rtol=0)
    history = trainer.storage.history("total_loss").values()
    assert len(history) == 300 and history[-1][0] < history[0][0] * 1e-3
    # total_loss is the sum of the terms; each term is recorded too.
    assert trainer.storage.history("loss_mse").latest() == pytest.approx(history[-1][0])


def test_hooks_run_by_priority_then_registration_order_and_order_is_logged(caplog):
    log = []
    model = _Linear()
    trainer = SimpleTrainer(model, _loader(), torch.optim.SGD(model.parameters(), lr=0.1))
    with caplog.at_level(logging.INFO, logger="panoptic2"):
        trainer.register_hooks(
            [
                _Recorder("late", log, Priority.LOW),
                _Recorder("first_normal", log),
                _Recorder("early", log, Priority.HIGH),
                _Recorder("second_normal", log),
            ]
        )
    assert "early(HIGH), first_normal(NORMAL), second_normal(NORMAL), late(LOW)" in caplog.text
    trainer.train(0, 1)
    assert log == [
        "early.before_step",
        "first_normal.before_step",
        "second_normal.before_step",
        "late.before_step",
        "early.after_backward",
        "first_normal.after_backward",
        "second_normal.after_backward",
        "late.after_backward",
        "early.after_step",
        "first_normal.after_step",
        "second_normal.after_step",
        "late.after_step",
    ]


def test_state_dict_holds_iteration_hooks_and_optimizer():
    log = []
    model = _Linear()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    trainer = SimpleTrainer(model, _loader(), opt)
    trainer.register_hooks([_Recorder("rec", log)])
    trainer.train(0, 5)
    state = trainer.state_dict()
    assert state["iteration"] == 5
    assert state["hooks"] == {"rec": {"count": 5}}

    model2 = _Linear()
    trainer2 = SimpleTrainer(
        model2, _loader(), torch.optim.SGD(model2.parameters(), lr=0.1, momentum=0.9)
    )
    trainer2.register_hooks([_Recorder("rec", [])])
    trainer2.load_state_dict(state)
    assert trainer2.iter == 5 and trainer2.hooks[0].state == {"count": 5}
    momentum = opt.state_dict()["state"][0]["momentum_buffer"]
    torch.testing.assert_close(
        trainer2.optimizer.state_dict()["state"][0]["momentum_buffer"], momentum
    )


def test_non_finite_loss_names_the_term_and_iteration():
    model = _Linear(nan_at_call=4)  # the 4th forward is iteration 3
    trainer = SimpleTrainer(model, _loader(), torch.optim.SGD(model.parameters(), lr=0.1))
    with pytest.raises(FloatingPointError, match=r"at iteration 3: loss_mse=nan"):
        trainer.train(0, 10)


def test_metrics_recorded_later_land_at_their_own_iteration():
    """What the XLA runner relies on: losses fetched every LOG_PERIOD steps are recorded at
    the iterations that produced them, with the same checks and names as every step."""
    with EventStorage(start_iter=9) as storage:
        SimpleTrainer._record_metrics({"loss_a": 1.0, "loss_b": 0.5}, 0.25, 6)
        SimpleTrainer._record_metrics({"loss_a": 3.0, "loss_b": 1.0}, 0.5, 7)
        assert storage.history("loss_a").values() == [(1.0, 6), (3.0, 7)]
        assert storage.history("total_loss").values() == [(1.5, 6), (4.0, 7)]
        assert storage.history("data_time").values() == [(0.25, 6), (0.5, 7)]
        with pytest.raises(FloatingPointError, match=r"at iteration 8: loss_b=inf"):
            SimpleTrainer._record_metrics({"loss_a": 1.0, "loss_b": float("inf")}, 0.0, 8)


def test_duplicate_hook_names_are_rejected():
    model = _Linear()
    trainer = SimpleTrainer(model, _loader(), torch.optim.SGD(model.parameters(), lr=0.1))
    with pytest.raises(ValueError, match="same name"):
        trainer.register_hooks([_Recorder("a", []), _Recorder("a", [])])


def test_amp_bfloat16_on_cpu_trains_like_float32():
    torch.manual_seed(0)
    model = _Linear()
    trainer = AMPTrainer(
        model, _loader(), torch.optim.SGD(model.parameters(), lr=0.2), precision="bfloat16"
    )
    assert trainer.grad_scaler is None and trainer.device_type == "cpu"
    trainer.train(0, 300)
    x, y = next(_loader())
    expected = torch.linalg.lstsq(x, y.unsqueeze(1)).solution.squeeze(1)
    # bfloat16 has an 8-bit mantissa: the fit is close but not float32-exact.
    torch.testing.assert_close(model.w.detach(), expected, atol=0.05, rtol=0)


def test_amp_float16_without_cuda_is_a_clear_error():
    model = _Linear()
    with pytest.raises(ValueError, match="float16 AMP needs a CUDA device"):
        AMPTrainer(
            model, _loader(), torch.optim.SGD(model.parameters(), lr=0.1), precision="float16"
        )
    with pytest.raises(ValueError, match="Unknown AMP precision 'fp8'"):
        AMPTrainer(model, _loader(), torch.optim.SGD(model.parameters(), lr=0.1), precision="fp8")


def test_data_loader_iterator_creation_does_not_consume_training_rng():
    model = _Linear()
    loader = torch.utils.data.DataLoader([(torch.ones(3), torch.tensor(1.0))] * 8, batch_size=2)
    trainer = SimpleTrainer(model, loader, torch.optim.SGD(model.parameters(), lr=0.1))
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    trainer._next_batch()
    torch.testing.assert_close(torch.rand(3), expected)

"""Tests of panoptic2.layers.batch_norm."""

import logging
import os

import pytest
import torch
import torch.distributed as dist
from torch import nn

from panoptic2.engine.launch import launch
from panoptic2.layers import batch_norm
from panoptic2.layers.batch_norm import (
    FrozenBatchNorm2d,
    NaiveSyncBatchNorm,
    convert_frozen_batchnorm,
    get_norm,
)
from panoptic2.utils import comm


def _randomize_bn(bn: nn.BatchNorm2d, generator: torch.Generator) -> None:
    c = bn.num_features
    with torch.no_grad():
        bn.running_mean.copy_(torch.randn(c, generator=generator))
        bn.running_var.copy_(torch.rand(c, generator=generator) + 0.5)
        if bn.affine:
            bn.weight.copy_(torch.randn(c, generator=generator))
            bn.bias.copy_(torch.randn(c, generator=generator))


def test_convert_frozen_batchnorm_preserves_outputs():
    g = torch.Generator().manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3),
        nn.BatchNorm2d(4, eps=1e-3),
        nn.ReLU(),
        nn.Sequential(nn.BatchNorm2d(4, affine=False)),
    )
    _randomize_bn(model[1], g)
    _randomize_bn(model[3][0], g)
    model.eval()
    x = torch.randn(2, 3, 8, 8, generator=g)
    expected = model(x)

    converted = convert_frozen_batchnorm(model)
    assert converted is model
    assert type(model[1]) is FrozenBatchNorm2d and type(model[3][0]) is FrozenBatchNorm2d
    assert model[1].eps == 1e-3
    # Frozen: no trainable parameters left in the norm layers, and train mode changes nothing.
    assert list(model[1].parameters()) == []
    model.train()
    torch.testing.assert_close(model(x), expected)


def test_convert_top_level_bn_and_reject_untracked():
    bn = nn.BatchNorm2d(3)
    _randomize_bn(bn, torch.Generator().manual_seed(1))
    frozen = FrozenBatchNorm2d.convert_frozen_batchnorm(bn)
    assert isinstance(frozen, FrozenBatchNorm2d) and frozen is not bn
    torch.testing.assert_close(frozen.running_var, bn.running_var)
    with pytest.raises(ValueError, match="running statistics"):
        convert_frozen_batchnorm(nn.BatchNorm2d(3, track_running_stats=False))


@pytest.mark.parametrize("momentum", [0.1, None])
def test_naive_sync_bn_is_batchnorm_in_one_process(momentum):
    g = torch.Generator().manual_seed(2)
    ref = nn.BatchNorm2d(3, momentum=momentum)
    ours = NaiveSyncBatchNorm(3, momentum=momentum)
    _randomize_bn(ref, g)
    ours.load_state_dict(ref.state_dict())
    for _ in range(2):
        x = torch.randn(4, 3, 5, 5, generator=g)
        torch.testing.assert_close(ours(x), ref(x))
    torch.testing.assert_close(ours.running_mean, ref.running_mean)
    torch.testing.assert_close(ours.running_var, ref.running_var)
    ours.eval()
    ref.eval()
    torch.testing.assert_close(ours(x), ref(x))


def _check_sync_bn_case(split: int, momentum, affine: bool) -> None:
    """Rank 0 gets samples [:split], rank 1 the rest; compare with full-batch BatchNorm2d."""
    rank = comm.get_rank()
    g = torch.Generator().manual_seed(10 + split)
    ref = nn.BatchNorm2d(3, momentum=momentum, affine=affine).double()
    _randomize_bn(ref, g)
    ref = ref.float()
    ours = NaiveSyncBatchNorm(3, momentum=momentum, affine=affine)
    ours.load_state_dict(ref.state_dict())
    for _ in range(2):  # two steps, so the running statistics update twice
        # A large offset checks the variance does not lose precision to cancellation.
        x = torch.randn(8, 3, 5, 4, generator=g) * 2 + 3
        grad_out = torch.randn(8, 3, 5, 4, generator=g)
        x_ref = x.clone().requires_grad_(True)
        out_ref = ref(x_ref)
        (out_ref * grad_out).sum().backward()

        shard = slice(0, split) if rank == 0 else slice(split, 8)
        x_ours = x[shard].clone().requires_grad_(True)
        out = ours(x_ours)
        (out * grad_out[shard]).sum().backward()

        torch.testing.assert_close(out, out_ref[shard], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(x_ours.grad, x_ref.grad[shard], atol=1e-5, rtol=1e-5)
        if affine:
            # DDP sums (then averages) parameter gradients over ranks; the sum matches.
            for p_ours, p_ref in ((ours.weight, ref.weight), (ours.bias, ref.bias)):
                summed = p_ours.grad.clone()
                dist.all_reduce(summed)
                torch.testing.assert_close(summed, p_ref.grad, atol=1e-4, rtol=1e-5)
                p_ours.grad = None
                p_ref.grad = None
    torch.testing.assert_close(ours.running_mean, ref.running_mean, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours.running_var, ref.running_var, atol=1e-5, rtol=1e-5)
    assert int(ours.num_batches_tracked) == int(ref.num_batches_tracked) == 2


def _sync_bn_worker(out_dir: str) -> None:
    assert comm.get_world_size() == 2
    cases = [(3, 0.1, True), (5, None, False), (0, 0.1, True)]  # (0, ...): rank 0 empty
    for split, momentum, affine in cases:
        _check_sync_bn_case(split, momentum, affine)
    # Under gloo on CPU, "SyncBN" must be the all_reduce implementation.
    assert type(get_norm("SyncBN", 4)) is NaiveSyncBatchNorm
    # Eval mode: each rank uses its running statistics, no collectives.
    bn = NaiveSyncBatchNorm(3).eval()
    ref = nn.BatchNorm2d(3).eval()
    x = torch.randn(2, 3, 4, 4)
    torch.testing.assert_close(bn(x), ref(x))
    with open(os.path.join(out_dir, f"done{comm.get_rank()}"), "w") as f:
        f.write(str(len(cases)))


def test_naive_sync_bn_matches_full_batch_in_two_processes(tmp_path):
    launch(_sync_bn_worker, 2, dist_url="auto", args=(str(tmp_path),))
    assert (tmp_path / "done0").read_text() == "3"
    assert (tmp_path / "done1").read_text() == "3"


def test_get_norm_kinds():
    assert get_norm("", 8) is None
    assert get_norm(None, 8) is None
    assert type(get_norm("BN", 8)) is nn.BatchNorm2d
    assert get_norm("BN", 8).num_features == 8
    assert type(get_norm("FrozenBN", 8)) is FrozenBatchNorm2d
    assert type(get_norm("NaiveSyncBN", 8)) is NaiveSyncBatchNorm
    gn = get_norm("GN", 64)
    assert isinstance(gn, nn.GroupNorm) and gn.num_groups == 32 and gn.num_channels == 64
    with pytest.raises(ValueError, match="divisible"):
        get_norm("GN", 30)
    layer = get_norm(lambda c: nn.LayerNorm(c), 5)
    assert isinstance(layer, nn.LayerNorm) and layer.normalized_shape == (5,)
    with pytest.raises(ValueError, match="'FrozenBN'"):
        get_norm("BatchNorm", 8)
    with pytest.raises(TypeError):
        get_norm(3, 8)


def test_get_norm_syncbn_single_process_warns_once(monkeypatch):
    monkeypatch.setattr(batch_norm, "_warned_single_process_syncbn", False)
    messages = []

    class _Catch(logging.Handler):
        def emit(self, record):
            messages.append(record.getMessage())

    handler = _Catch(logging.WARNING)
    batch_norm.logger.addHandler(handler)
    try:
        first = get_norm("SyncBN", 16)
        second = get_norm("SyncBN", 16)
    finally:
        batch_norm.logger.removeHandler(handler)
    assert type(first) is nn.BatchNorm2d and type(second) is nn.BatchNorm2d
    assert first.num_features == 16
    assert len(messages) == 1 and "SyncBN" in messages[0]

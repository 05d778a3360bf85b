import math

import pytest
import torch

from panoptic2.modeling.losses import DeepLabCE, center_mse_loss, deeplab_ce_loss, offset_l1_loss


def _reference_ce(logits, labels, ignore, top_k, weights=None):
    """Sorting-based reference over explicit per-pixel losses."""
    n, c, h, w = logits.shape
    values = []
    for b in range(n):
        for y in range(h):
            for x in range(w):
                t = int(labels[b, y, x])
                if t == ignore:
                    continue
                logp = logits[b, :, y, x].log_softmax(0)[t]
                wt = 1.0 if weights is None else float(weights[b, y, x])
                values.append(-float(logp) * wt)
    values.sort(reverse=True)
    k = max(1, round(top_k * len(values)))
    return sum(values[:k]) / k


@pytest.mark.parametrize("static_shapes", [False, True])
@pytest.mark.parametrize("top_k", [1.0, 0.2, 0.5])
def test_deeplab_ce_matches_reference(top_k, static_shapes):
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 5, 6)
    labels = torch.randint(0, 4, (2, 5, 6))
    labels[0, :2] = 255
    weights = torch.rand(2, 5, 6) * 3
    for w in (None, weights):
        got = deeplab_ce_loss(
            logits,
            labels,
            ignore_label=255,
            top_k_percent_pixels=top_k,
            pixel_weights=w,
            static_shapes=static_shapes,
        )
        assert math.isclose(float(got), _reference_ce(logits, labels, 255, top_k, w), rel_tol=1e-5)


@pytest.mark.parametrize("top_k", [1.0, 0.37, 0.2, 1e-4])
def test_static_shape_ce_equals_the_eager_one_with_gradients(top_k):
    """The XLA form (masked mean, fixed-size top-k) against the eager form (indexing)."""
    torch.manual_seed(3)
    labels = torch.randint(0, 5, (2, 16, 20))
    labels[0, :5] = 255
    weights = torch.rand(2, 16, 20)
    for w in (None, weights):
        values, grads = [], []
        for static in (False, True):
            logits = torch.randn(2, 5, 16, 20, generator=torch.Generator().manual_seed(4))
            logits.requires_grad_(True)
            loss = deeplab_ce_loss(
                logits,
                labels,
                ignore_label=255,
                top_k_percent_pixels=top_k,
                pixel_weights=w,
                static_shapes=static,
            )
            loss.backward()
            values.append(loss.item())
            grads.append(logits.grad)
        assert math.isclose(values[0], values[1], rel_tol=1e-6), values
        torch.testing.assert_close(grads[1], grads[0], rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("top_k", [1.0, 0.2])
def test_static_shape_ce_with_all_pixels_ignored_is_zero_with_finite_gradient(top_k):
    logits = torch.randn(1, 3, 4, 4, requires_grad=True)
    labels = torch.full((1, 4, 4), 255)
    loss = deeplab_ce_loss(
        logits, labels, ignore_label=255, top_k_percent_pixels=top_k, static_shapes=True
    )
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(logits.grad, torch.zeros_like(logits))


def test_ignored_pixels_do_not_count_toward_k_or_mean():
    logits = torch.zeros(1, 2, 1, 4)
    logits[0, 0, 0, 0] = 5.0  # pixel 0 confidently class 0
    labels = torch.tensor([[[1, 0, 255, 255]]])
    ce1 = float(torch.nn.functional.cross_entropy(logits[:, :, 0, :1], labels[:, 0, :1]))
    ce2 = math.log(2.0)
    # Two valid pixels: mean of both (not of 4), top-50% = 1 pixel = the larger.
    assert math.isclose(
        float(deeplab_ce_loss(logits, labels, ignore_label=255)), (ce1 + ce2) / 2, rel_tol=1e-6
    )
    got = deeplab_ce_loss(logits, labels, ignore_label=255, top_k_percent_pixels=0.5)
    assert math.isclose(float(got), max(ce1, ce2), rel_tol=1e-6)


def test_all_ignored_gives_zero_with_gradient():
    logits = torch.randn(1, 3, 2, 2, requires_grad=True)
    loss = DeepLabCE(ignore_label=0, top_k_percent_pixels=0.2)(
        logits, torch.zeros(1, 2, 2, dtype=torch.long)
    )
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(logits.grad, torch.zeros_like(logits))


def test_invalid_top_k():
    with pytest.raises(ValueError):
        DeepLabCE(top_k_percent_pixels=0.0)


def test_center_and_offset_losses_explicit_sums():
    torch.manual_seed(1)
    pred_c, tgt_c = torch.rand(2, 1, 3, 4), torch.rand(2, 1, 3, 4)
    pred_o, tgt_o = torch.randn(2, 2, 3, 4), torch.randn(2, 2, 3, 4)
    w = (torch.rand(2, 3, 4) > 0.4).float() * 2
    num_c = sum(
        float(w[b, y, x]) * (float(pred_c[b, 0, y, x]) - float(tgt_c[b, 0, y, x])) ** 2
        for b in range(2)
        for y in range(3)
        for x in range(4)
    )
    num_o = sum(
        float(w[b, y, x]) * abs(float(pred_o[b, c, y, x]) - float(tgt_o[b, c, y, x]))
        for b in range(2)
        for c in range(2)
        for y in range(3)
        for x in range(4)
    )
    den = float(w.sum())
    assert math.isclose(float(center_mse_loss(pred_c, tgt_c, w)), num_c / den, rel_tol=1e-5)
    assert math.isclose(float(offset_l1_loss(pred_o, tgt_o, w)), num_o / den, rel_tol=1e-5)


def test_zero_weights_give_zero_not_nan():
    pred = torch.rand(1, 2, 3, 3, requires_grad=True)
    loss = offset_l1_loss(pred, torch.rand(1, 2, 3, 3), torch.zeros(1, 3, 3))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(pred.grad, torch.zeros_like(pred))
    with pytest.raises(ValueError, match="weights"):
        center_mse_loss(torch.rand(1, 1, 3, 3), torch.rand(1, 1, 3, 3), torch.ones(1, 1, 3, 3))

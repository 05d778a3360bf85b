"""subsample_labels: counts, positive fraction, index sets and determinism."""

import pytest
import torch

from panoptic2.modeling.sampling import subsample_labels


def _labels(num_pos: int, num_neg: int, num_ignore: int, bg: int = 0) -> torch.Tensor:
    # Positives carry several foreground values (1 and 2) to check "not -1 and not bg".
    pos = torch.tensor([1, 2] * num_pos)[:num_pos] if bg == 0 else torch.arange(num_pos) % bg
    labels = torch.cat([pos, torch.full((num_neg,), bg), torch.full((num_ignore,), -1)])
    perm = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
    return labels[perm]


def _check_sets(labels, pos_idx, neg_idx, bg):
    assert pos_idx.dtype == neg_idx.dtype == torch.int64
    assert len(set(pos_idx.tolist())) == len(pos_idx)
    assert len(set(neg_idx.tolist())) == len(neg_idx)
    assert all(labels[i] not in (-1, bg) for i in pos_idx.tolist())
    assert all(labels[i] == bg for i in neg_idx.tolist())


def test_positive_fraction_caps_positives():
    labels = _labels(num_pos=10, num_neg=100, num_ignore=20)
    pos, neg = subsample_labels(labels, num_samples=16, positive_fraction=0.25, bg_label=0)
    assert (len(pos), len(neg)) == (4, 12)
    _check_sets(labels, pos, neg, 0)


def test_few_positives_are_all_taken_and_negatives_fill_up():
    labels = _labels(num_pos=2, num_neg=100, num_ignore=5)
    pos, neg = subsample_labels(labels, 16, 0.5, 0)
    assert (len(pos), len(neg)) == (2, 14)
    assert sorted(pos.tolist()) == torch.nonzero(labels > 0).flatten().tolist()
    _check_sets(labels, pos, neg, 0)


def test_few_negatives_are_all_taken():
    labels = _labels(num_pos=50, num_neg=3, num_ignore=5)
    pos, neg = subsample_labels(labels, 16, 0.5, 0)
    assert (len(pos), len(neg)) == (8, 3)
    _check_sets(labels, pos, neg, 0)


def test_non_zero_background_label():
    # ROI heads: classes 0..2 are foreground and 3 is background.
    labels = _labels(num_pos=30, num_neg=30, num_ignore=0, bg=3)
    pos, neg = subsample_labels(labels, 20, 0.25, bg_label=3)
    assert (len(pos), len(neg)) == (5, 15)
    _check_sets(labels, pos, neg, 3)


def test_deterministic_under_a_seed():
    labels = _labels(num_pos=40, num_neg=200, num_ignore=10)
    draws = [
        subsample_labels(labels, 32, 0.5, 0, generator=torch.Generator().manual_seed(s))
        for s in (7, 7, 8)
    ]
    assert torch.equal(draws[0][0], draws[1][0]) and torch.equal(draws[0][1], draws[1][1])
    assert not torch.equal(draws[0][1], draws[2][1])
    torch.manual_seed(3)
    a = subsample_labels(labels, 32, 0.5, 0)
    torch.manual_seed(3)
    b = subsample_labels(labels, 32, 0.5, 0)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_sampling_is_roughly_uniform():
    # 4 positives, 2 drawn each time: each should be drawn about half the time.
    labels = torch.tensor([1, 1, 1, 1, 0, 0])
    g = torch.Generator().manual_seed(0)
    counts = torch.zeros(6)
    for _ in range(400):
        pos, _ = subsample_labels(labels, 4, 0.5, 0, generator=g)
        counts[pos] += 1
    assert ((counts[:4] / 400 - 0.5).abs() < 0.1).all()


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="\\(N,\\)"):
        subsample_labels(torch.zeros(2, 2), 4, 0.5, 0)
    with pytest.raises(ValueError, match="positive_fraction"):
        subsample_labels(torch.zeros(4), 4, 1.5, 0)

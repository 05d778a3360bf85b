"""Tests of projects/DeepLab/deeplab/heads.py: shapes, the low-level path, the losses."""

import pytest
import torch
from torch.nn import functional as F

from panoptic2.layers import ShapeSpec
from projects.DeepLab.deeplab import DeepLabV3Head, DeepLabV3PlusHead, build_sem_seg_loss

NUM_CLASSES = 5


def _input_shape(output_stride: int) -> dict[str, ShapeSpec]:
    # ResNet-18 channels; res5 keeps the stride of the last undilated stage.
    return {
        "res2": ShapeSpec(channels=64, stride=4),
        "res5": ShapeSpec(channels=512, stride=output_stride),
    }


def _features(h: int, w: int, output_stride: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "res2": torch.randn(2, 64, h // 4, w // 4, generator=g),
        "res5": torch.randn(2, 512, h // output_stride, w // output_stride, generator=g),
    }


def _head(cls, **kw):
    input_shape = kw.pop("input_shape", None) or _input_shape(16)
    args = dict(
        aspp_dilations=[6, 12, 18],
        aspp_dropout=0.1,
        norm="BN",
        num_classes=NUM_CLASSES,
    )
    if cls is DeepLabV3PlusHead:
        args.update(in_features=["res2", "res5"], project_channels=[48], decoder_channels=[32, 32])
    else:
        args.update(in_features=["res5"], project_channels=[], decoder_channels=[32])
    args.update(kw)
    return cls(input_shape, **args)


@pytest.mark.parametrize("output_stride", [16, 8])
@pytest.mark.parametrize("cls", [DeepLabV3Head, DeepLabV3PlusHead])
def test_head_output_shapes(cls, output_stride):
    head = _head(cls, input_shape=_input_shape(output_stride)).eval()
    h, w = 64, 96
    logits, losses = head(_features(h, w, output_stride))
    # Eval logits are upsampled by the head's stride: the full input size.
    assert logits.shape == (2, NUM_CLASSES, h, w)
    assert losses == {}
    expected_stride = 4 if cls is DeepLabV3PlusHead else output_stride
    assert head.common_stride == expected_stride
    assert head.layers(_features(h, w, output_stride)).shape == (
        2,
        NUM_CLASSES,
        h // expected_stride,
        w // expected_stride,
    )


@pytest.mark.parametrize("cls", [DeepLabV3Head, DeepLabV3PlusHead])
def test_head_training_returns_loss_at_label_size(cls):
    head = _head(cls).train()
    targets = torch.randint(0, NUM_CLASSES, (2, 64, 96))
    logits, losses = head(_features(64, 96, 16), targets)
    assert logits is None and set(losses) == {"loss_sem_seg"}
    # Near-uniform initial logits (small classifier init): loss ~ log(C).
    assert abs(losses["loss_sem_seg"].item() - torch.log(torch.tensor(NUM_CLASSES)).item()) < 0.05


def test_v3plus_uses_low_level_feature():
    torch.manual_seed(0)
    head = _head(DeepLabV3PlusHead).eval()
    # A non-trivial classifier, so that changes upstream reach the logits.
    torch.nn.init.normal_(head.predictor.weight, 0, 1.0)
    feats = _features(64, 96, 16)
    base = head.layers(feats)
    changed = dict(feats, res2=feats["res2"] + torch.randn_like(feats["res2"]))
    assert not torch.allclose(head.layers(changed), base)
    # Changing res5 matters as well (the ASPP path).
    changed5 = dict(feats, res5=feats["res5"] * 2.0 + 1.0)
    assert not torch.allclose(head.layers(changed5), base)


def test_v3_ignores_low_level_feature():
    head = _head(DeepLabV3Head).eval()
    torch.nn.init.normal_(head.predictor.weight, 0, 1.0)
    feats = _features(64, 96, 16)
    changed = dict(feats, res2=torch.randn_like(feats["res2"]))
    assert torch.equal(head.layers(changed), head.layers(feats))


def _loss_inputs():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 4, 6, 7, generator=g)
    labels = torch.randint(0, 4, (2, 6, 7), generator=g)
    labels[0, :2] = 255
    return logits, labels


def test_cross_entropy_loss_matches_torch():
    logits, labels = _loss_inputs()
    loss = build_sem_seg_loss("cross_entropy", 255, 0.2)(logits, labels)
    ref = F.cross_entropy(logits, labels, ignore_index=255)
    torch.testing.assert_close(loss, ref)


def test_hard_pixel_mining_loss_is_mean_of_top_k_valid_pixels():
    logits, labels = _loss_inputs()
    loss = build_sem_seg_loss("hard_pixel_mining", 255, 0.25)(logits, labels)
    # Independent reference: per-pixel CE via log-softmax, valid pixels only, sorted.
    logp = logits.log_softmax(1).permute(0, 2, 3, 1).reshape(-1, 4)
    flat = labels.reshape(-1)
    valid = flat != 255
    ce = -logp[valid].gather(1, flat[valid][:, None]).squeeze(1)
    k = round(0.25 * int(valid.sum()))
    ref = ce.sort(descending=True).values[:k].mean()
    torch.testing.assert_close(loss, ref)


def test_unknown_loss_type_is_an_error():
    with pytest.raises(ValueError, match="LOSS_TYPE"):
        build_sem_seg_loss("focal", 255, 0.2)

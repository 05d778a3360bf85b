"""What the meta-architectures share (panoptic2/modeling/meta_arch/base.py)."""

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from panoptic2.data.label_space import LabelSpace
from panoptic2.modeling.meta_arch.base import (
    LabelSpaceMixin,
    preprocess_images,
    sem_seg_postprocess,
)


def test_sem_seg_postprocess_crops_then_resizes():
    result = torch.arange(2 * 8 * 8, dtype=torch.float32).view(2, 8, 8)
    out = sem_seg_postprocess(result, (4, 6), 8, 12)
    ref = F.interpolate(result[None, :, :4, :6], size=(8, 12), mode="bilinear")[0]
    torch.testing.assert_close(out, ref)
    # Same size: only the crop.
    assert torch.equal(sem_seg_postprocess(result, (4, 6), 4, 6), result[:, :4, :6])


def test_preprocess_images_normalises_then_pads_with_the_mean():
    mean = torch.tensor([10.0, 20.0, 30.0]).view(3, 1, 1)
    std = torch.tensor([2.0, 4.0, 5.0]).view(3, 1, 1)
    a = torch.full((3, 5, 7), 50, dtype=torch.uint8)
    b = torch.full((3, 9, 4), 40, dtype=torch.uint8)
    images = preprocess_images([{"image": a}, {"image": b}], mean, std, 4)
    assert images.tensor.shape == (2, 3, 12, 8) and images.image_sizes == [(5, 7), (9, 4)]
    expected_a = (a.float() - mean) / std
    assert torch.equal(images[0], expected_a)
    assert (images.tensor[0, :, 5:] == 0).all() and (images.tensor[1, :, :, 4:] == 0).all()


class _Model(LabelSpaceMixin, nn.Module):
    def __init__(self, num_classes: int):
        super().__init__()
        self.sem_seg_head = nn.Module()
        self.sem_seg_head.num_classes = num_classes


def _space(num_classes: int) -> LabelSpace:
    return LabelSpace(
        classes=[f"c{i}" for i in range(num_classes)],
        colors=[(0, 0, 0)] * num_classes,
        thing_ids=[],
        stuff_ids=range(num_classes),
        thing_dataset_ids=[],
        stuff_dataset_ids=range(num_classes),
        label_divisor=1,
        ignore_label=255,
    )


def test_label_space_is_checked_when_set():
    model = _Model(3)
    assert model.label_space is None
    with pytest.raises(ValueError, match="_Model has no label space"):
        model.require_label_space()
    model.label_space = _space(3)
    assert model.require_label_space() == _space(3)
    with pytest.raises(ValueError, match=r"4 classes but the model predicts 3"):
        model.label_space = _space(4)
    assert model.label_space == _space(3)  # unchanged by the refused one
    with pytest.raises(TypeError, match="LabelSpace"):
        model.label_space = {"classes": ["a"]}

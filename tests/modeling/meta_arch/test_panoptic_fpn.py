"""PanopticFPN: training losses and inference outputs in the evaluators' formats
(panoptic2/modeling/meta_arch/panoptic_fpn.py)."""

import pytest
import torch

import panoptic2.modeling.heads.semantic_fpn  # noqa: F401  (registers SemSegFPNHead)
import panoptic2.modeling.meta_arch.panoptic_fpn  # noqa: F401  (registers PanopticFPN)
from panoptic2.modeling import build_model
from panoptic2.modeling.meta_arch.panoptic_fpn import PanopticFPN

from .test_rcnn import tiny_cfg, tiny_inputs

LOSSES = {"loss_rpn_cls", "loss_rpn_loc", "loss_cls", "loss_box_reg", "loss_mask", "loss_sem_seg"}


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model(tiny_cfg("PanopticFPN"))


def test_training_losses_finite_and_backward(model):
    assert isinstance(model, PanopticFPN)
    model.train()
    losses = model(tiny_inputs())
    assert set(losses) == LOSSES
    assert all(torch.isfinite(v) and v.dim() == 0 for v in losses.values())
    sum(losses.values()).backward()
    assert model.sem_seg_head.predictor.weight.grad.abs().sum() > 0
    assert model.roi_heads.box_predictor.cls_score.weight.grad.abs().sum() > 0
    model.zero_grad()


def test_training_needs_sem_seg(model):
    model.train()
    inputs = tiny_inputs()
    del inputs[0]["sem_seg"]
    with pytest.raises(ValueError, match=r"sem_seg.*img0\.png"):
        model(inputs)


def test_inference_outputs(model):
    model.eval()
    with torch.no_grad():
        outputs = model(tiny_inputs(train=False))
    out = outputs[0]
    assert set(out) == {"sem_seg", "instances", "panoptic_seg"}
    assert out["sem_seg"].shape == (4, 128, 160)  # things + 3 stuff, original size
    ids, info = out["panoptic_seg"]
    assert ids.shape == (128, 160) and ids.dtype == torch.int64
    listed = {s["id"] for s in info}
    assert set(torch.unique(ids).tolist()) - {-1} == listed
    for s in info:
        assert s["category_id"] in ({1, 2, 3} if s["isthing"] else {4, 5, 6})
        assert ("score" in s) == s["isthing"]
    inst = out["instances"]
    assert inst.pred_masks.shape[1:] == (128, 160)
    assert set(inst.pred_classes.tolist()) <= {1, 2, 3}


def test_combine_disabled(model):
    model.eval()
    model.combine_on = False
    try:
        with torch.no_grad():
            out = model(tiny_inputs(train=False)[:1])[0]
    finally:
        model.combine_on = True
    assert "panoptic_seg" not in out and "sem_seg" in out

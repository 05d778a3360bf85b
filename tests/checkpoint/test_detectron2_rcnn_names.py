"""Tests of panoptic2/checkpoint/detectron2_rcnn_names.py and the Caffe2 head names of
c2_model_loading.py: Detectron2 and Detectron checkpoints of Faster R-CNN, Mask R-CNN and
Panoptic FPN load into our models through MODEL.WEIGHTS, every tensor, with their values."""

import logging
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from panoptic2.checkpoint import Checkpointer, IncompleteWeightsError, choose_and_align
from panoptic2.checkpoint.c2_model_loading import prepare_c2_weights
from panoptic2.checkpoint.detectron2_rcnn_names import rename_detectron2_rcnn
from panoptic2.config import load_config
from panoptic2.modeling import META_ARCH_REGISTRY, build_model

from .detectron2_rcnn_reference import Arch, caffe2_model, detectron2_model

REPO = Path(__file__).resolve().parents[2]
CONFIGS = {
    "panoptic_fpn": "configs/coco/panoptic_fpn_R_50_1x.yaml",
    "mask_rcnn": "configs/coco/mask_rcnn_R_50_FPN_1x.yaml",
    "faster_rcnn": "configs/coco/faster_rcnn_R_50_FPN_1x.yaml",
}
# Detectron2's key names with small widths, so each model builds in a fraction of a second.
SMALL = Arch(stem=8, res2=32, width=8, fpn=16, fc=32, mask=16, classes=3, sem_seg=32)
SMALL_R18 = Arch(
    depth=18, stem=16, res2=64, width=64, fpn=16, fc=32, mask=16, classes=3, sem_seg=32
)


def _cfg(family: str, arch: Arch, weights: str = ""):
    """The family's COCO config with the small widths and no dataset (no label space)."""
    opts = ["MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", weights, "DATASETS.TRAIN", "[]"]
    return load_config(
        str(REPO / CONFIGS[family]), [*opts, "DATASETS.TEST", "[]", *arch.overrides()]
    )


def _random(shapes: dict[str, tuple[int, ...]], seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {name: torch.randn(shape, generator=gen) for name, shape in shapes.items()}


def _load_weights(
    family: str, arch: Arch, path: str, **kwargs
) -> tuple[torch.nn.Module, Checkpointer]:
    """Builds the family's model and loads ``path`` as MODEL.WEIGHTS, as training does."""
    cfg = _cfg(family, arch, path)
    model = build_model(cfg)
    checkpointer = Checkpointer(model, "", **kwargs)
    checkpointer.resume_or_load(cfg.MODEL.WEIGHTS, resume=False)
    return model, checkpointer


def test_rename_detectron2_rcnn_by_hand():
    keys = [
        "backbone.fpn_lateral3.norm.weight",
        "backbone.fpn_lateral4.weight",
        "backbone.fpn_output3.weight",
        "backbone.fpn_output5.norm.bias",
        "backbone.fpn_lateral5.weight",
        "backbone.bottom_up.res2.0.conv1.weight",
        "roi_heads.box_head.conv2.norm.bias",
        "roi_heads.box_head.fc1.weight",
        "roi_heads.mask_head.mask_fcn4.bias",
        "roi_heads.mask_head.predictor.weight",
        "sem_seg_head.p3.0.norm.weight",
        "sem_seg_head.p5.4.weight",
        "roi_heads.box_head.fcs.0.weight",  # ours: kept
        "roi_heads.box_head.fc0.weight",  # no Detectron2 layer is numbered 0: kept
    ]
    assert rename_detectron2_rcnn(keys) == {
        # levels 3..5 are ranks 0..2; index 1 of a torchvision FPN block is its norm
        "backbone.fpn_lateral3.norm.weight": "backbone.fpn.inner_blocks.0.1.weight",
        "backbone.fpn_lateral4.weight": "backbone.fpn.inner_blocks.1.0.weight",
        "backbone.fpn_output3.weight": "backbone.fpn.layer_blocks.0.0.weight",
        "backbone.fpn_output5.norm.bias": "backbone.fpn.layer_blocks.2.1.bias",
        "backbone.fpn_lateral5.weight": "backbone.fpn.inner_blocks.2.0.weight",
        "backbone.bottom_up.res2.0.conv1.weight": "backbone.bottom_up.res2.0.conv1.weight",
        "roi_heads.box_head.conv2.norm.bias": "roi_heads.box_head.convs.1.norm.bias",
        "roi_heads.box_head.fc1.weight": "roi_heads.box_head.fcs.0.weight",
        "roi_heads.mask_head.mask_fcn4.bias": "roi_heads.mask_head.convs.3.bias",
        "roi_heads.mask_head.predictor.weight": "roi_heads.mask_head.predictor.weight",
        # the semantic head's levels are ranked on their own (p3, p5 -> 0, 1)
        "sem_seg_head.p3.0.norm.weight": "sem_seg_head.scale_heads.0.0.norm.weight",
        "sem_seg_head.p5.4.weight": "sem_seg_head.scale_heads.1.4.weight",
        "roi_heads.box_head.fcs.0.weight": "roi_heads.box_head.fcs.0.weight",
        "roi_heads.box_head.fc0.weight": "roi_heads.box_head.fc0.weight",
    }


@pytest.mark.parametrize("family", ["panoptic_fpn", "mask_rcnn", "faster_rcnn"])
def test_reference_key_lists_describe_our_models(family):
    """Detectron2's tensors (written from its model definitions) pair one to one with ours,
    shape for shape, for the full-size R-50 and R-101 models of the shipped configs."""
    for depth in (50, 101):
        cfg = _cfg(family, Arch(depth=depth))
        with torch.device("meta"):
            model = META_ARCH_REGISTRY.get(cfg.MODEL.META_ARCHITECTURE)(cfg)
        ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        entries = detectron2_model(family, Arch(depth=depth))
        assert len({d for d, _, _ in entries}) == len(entries)
        assert {o: s for _, o, s in entries} == ours
        assert len(entries) == len(ours)


@pytest.mark.parametrize("family", ["panoptic_fpn", "mask_rcnn", "faster_rcnn"])
@pytest.mark.parametrize("fmt", ["pth", "pkl"])
def test_detectron2_checkpoint_loads_every_tensor(tmp_path, family, fmt):
    entries = detectron2_model(family, SMALL)
    theirs = _random({d: s for d, _, s in entries})
    path = tmp_path / f"model_final.{fmt}"
    if fmt == "pth":  # what Detectron2's DetectionCheckpointer writes
        torch.save({"model": theirs, "iteration": 89999}, path)
    else:  # a Detectron2 model-zoo file; old ones also hold the (unused) pixel statistics
        arrays = {k: v.numpy() for k, v in theirs.items()}
        arrays["pixel_mean"] = np.zeros((3, 1, 1), np.float32)
        with open(path, "wb") as f:
            pickle.dump({"model": arrays, "__author__": "Detectron2 Model Zoo"}, f)

    model, checkpointer = _load_weights(family, SMALL, str(path))
    report = checkpointer.last_load_report
    assert report.whole_model and report.not_loaded == ()
    assert report.unexpected == (() if fmt == "pth" else ("pixel_mean",))
    state = model.state_dict()
    assert len(state) == len(entries)
    for d2_name, our_name, _ in entries:
        assert torch.equal(state[our_name], theirs[d2_name]), (d2_name, our_name)


def test_detectron2_resnet18_checkpoint_loads_every_tensor(tmp_path):
    entries = detectron2_model("panoptic_fpn", SMALL_R18)
    assert not any(".conv3." in d for d, _, _ in entries)  # basic blocks
    theirs = _random({d: s for d, _, s in entries}, seed=1)
    path = tmp_path / "r18.pth"
    torch.save({"model": theirs}, path)
    model, checkpointer = _load_weights("panoptic_fpn", SMALL_R18, str(path))
    assert checkpointer.last_load_report.not_loaded == ()
    state = model.state_dict()
    for d2_name, our_name, _ in entries:
        assert torch.equal(state[our_name], theirs[d2_name]), (d2_name, our_name)


@pytest.mark.parametrize("family", ["mask_rcnn", "faster_rcnn"])
def test_caffe2_detectron_checkpoint_loads_with_detectron2_class_order(tmp_path, family):
    entries, statistics = caffe2_model(family, SMALL)
    blobs = {b: t.numpy() for b, t in _random({b: s for b, _, s, _ in entries}, seed=2).items()}
    blobs["fc6_w_momentum"] = np.zeros_like(blobs["fc6_w"])  # optimizer state, dropped
    path = tmp_path / "detectron.pkl"
    with open(path, "wb") as f:  # Detectron's layout: the weights and the training config
        pickle.dump({"blobs": blobs, "cfg": "MODEL:\n  TYPE: generalized_rcnn\n"}, f)

    model, checkpointer = _load_weights(family, SMALL, str(path))
    report = checkpointer.last_load_report
    assert report.whole_model and report.not_loaded == () and report.unexpected == ()
    state = model.state_dict()
    assert len(state) == len(entries) + len(statistics)
    for blob, ours, _, expected in entries:
        assert torch.equal(state[ours], expected(torch.from_numpy(blobs[blob]))), (blob, ours)
    for name in statistics:  # AffineChannel: mean 0, variance 1
        value = 0.0 if name.endswith("running_mean") else 1.0
        assert torch.all(state[name] == value), name

    # By hand: background (row 0 in Caffe2) is the last class of ours and has no deltas.
    predictor = model.roi_heads.box_predictor
    assert torch.equal(predictor.cls_score.weight[-1], torch.from_numpy(blobs["cls_score_w"][0]))
    assert torch.equal(predictor.cls_score.bias[:-1], torch.from_numpy(blobs["cls_score_b"][1:]))
    assert torch.equal(predictor.bbox_pred.weight[:4], torch.from_numpy(blobs["bbox_pred_w"][4:8]))
    if family == "mask_rcnn":
        logits = model.roi_heads.mask_head.predictor.weight
        assert torch.equal(logits, torch.from_numpy(blobs["mask_fcn_logits_w"][1:]))


def test_prepare_c2_weights_class_agnostic_and_affine_statistics():
    weights = {
        "bbox_pred_w": torch.arange(16.0).view(8, 2),  # class-agnostic: background + 1 box
        "bbox_pred_b": torch.arange(8.0),
        "mask_fcn_logits_w": torch.ones(1, 4, 1, 1),  # class-agnostic mask: kept
        "cls_score_b": torch.tensor([9.0, 1.0, 2.0]),
        "res2_0_branch2a_bn_s": torch.full((3,), 2.0),
        "res3_0_branch2a_bn_s": torch.full((2,), 2.0),
        "res3_0_branch2a_bn_rm": torch.full((2,), 5.0),  # has statistics: left alone
    }
    out = prepare_c2_weights(weights)
    assert torch.equal(out["bbox_pred_w"], torch.arange(8.0, 16.0).view(4, 2))
    assert torch.equal(out["bbox_pred_b"], torch.tensor([4.0, 5.0, 6.0, 7.0]))
    assert torch.equal(out["mask_fcn_logits_w"], weights["mask_fcn_logits_w"])
    assert torch.equal(out["cls_score_b"], torch.tensor([1.0, 2.0, 9.0]))
    assert torch.equal(out["res2_0_branch2a_bn_rm"], torch.zeros(3))
    assert torch.equal(out["res2_0_branch2a_bn_riv"], torch.ones(3))
    assert "res3_0_branch2a_bn_riv" not in out
    assert torch.equal(weights["cls_score_b"], torch.tensor([9.0, 1.0, 2.0]))  # not in place


def test_unconverted_fpn_names_refuse_to_load_and_name_the_tensors(tmp_path):
    """The failure this converter prevents: loaded by name only, Detectron2's FPN (and the
    other renamed layers) would stay random while the rest loads."""
    entries = detectron2_model("panoptic_fpn", SMALL)
    theirs = _random({d: s for d, _, s in entries})
    path = tmp_path / "model_final.pth"
    torch.save({"model": theirs}, path)
    cfg = _cfg("panoptic_fpn", SMALL, str(path))
    model = build_model(cfg)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    checkpointer = Checkpointer(model, "")
    checkpointer.weight_format = "identity"
    with pytest.raises(IncompleteWeightsError) as err:
        checkpointer.resume_or_load(cfg.MODEL.WEIGHTS, resume=False)
    message = str(err.value)
    assert (
        "is a whole-model checkpoint (it has weights for proposal_generator, roi_heads" in message
    )
    assert "49 of the model's 330 tensors would not load" in message
    for i in range(4):
        assert f"backbone.fpn.inner_blocks.{i}.0.{{bias,weight}}" in message
        assert f"backbone.fpn.layer_blocks.{i}.0.{{bias,weight}}" in message
    assert "backbone.fpn_lateral2.{bias,weight}" in message  # listed as unused
    assert "roi_heads.box_head.fcs.0.{bias,weight}" in message
    for key, value in model.state_dict().items():  # nothing was loaded
        assert torch.equal(value, before[key]), key


def test_whole_model_with_other_class_counts_is_an_error_unless_partial_is_allowed(tmp_path, log):
    """Detectron2's 80-class COCO model into a 3-class model: the predictors differ."""
    coco = Arch(**{**SMALL.__dict__, "classes": 80})
    entries = detectron2_model("mask_rcnn", coco)
    theirs = _random({d: s for d, _, s in entries})
    path = tmp_path / "coco.pth"
    torch.save({"model": theirs}, path)
    with pytest.raises(IncompleteWeightsError) as err:
        _load_weights("mask_rcnn", SMALL, str(path))
    message = str(err.value)
    assert (
        "roi_heads.box_predictor.cls_score.weight <- roi_heads.box_predictor.cls_score.weight"
        in message
    )
    assert "(81, 32) vs (4, 32)" in message and "ALLOW_PARTIAL_WEIGHTS" in message

    model, checkpointer = _load_weights("mask_rcnn", SMALL, str(path), allow_partial_weights=True)
    report = checkpointer.last_load_report
    assert set(report.incorrect_shapes) == {
        f"roi_heads.{name}.{attr}"
        for name in ("box_predictor.cls_score", "box_predictor.bbox_pred", "mask_head.predictor")
        for attr in ("weight", "bias")
    }
    assert torch.equal(
        model.roi_heads.box_head.fcs[0].weight, theirs["roi_heads.box_head.fc1.weight"]
    )
    assert "Loading the rest (allow_partial_weights)" in log.text


def test_imagenet_caffe2_backbone_loads_with_a_warning(tmp_path, log):
    """MSRA's R-50.pkl: backbone blobs (AffineChannel) and the classifier, nothing else."""
    entries, statistics = caffe2_model("mask_rcnn", SMALL)
    backbone = [e for e in entries if e[1].startswith("backbone.bottom_up.")]
    blobs = {b: t.numpy() for b, t in _random({b: s for b, _, s, _ in backbone}).items()}
    blobs["fc1000_w"] = np.zeros((10, 256), np.float32)
    blobs["fc1000_b"] = np.zeros(10, np.float32)
    path = tmp_path / "R-50.pkl"
    with open(path, "wb") as f:
        pickle.dump(blobs, f)

    model, checkpointer = _load_weights("mask_rcnn", SMALL, str(path))
    report = checkpointer.last_load_report
    assert not report.whole_model
    assert set(report.loaded) == {ours for _, ours, _, _ in backbone} | set(statistics)
    assert "backbone.fpn.inner_blocks.0.0.weight" in report.missing
    assert set(report.unexpected) == {"fc1000_w", "fc1000_b"}
    state = model.state_dict()
    for blob, ours, _, _ in backbone:
        assert torch.equal(state[ours], torch.from_numpy(blobs[blob])), blob
    assert "initialises the backbone only" in log.text
    warnings = [r.getMessage() for r in log.records if r.levelno == logging.WARNING]
    assert any("Weights not loaded" in w and "backbone.fpn.inner_blocks" in w for w in warnings)


def test_detectron2_converter_is_chosen_over_identity_and_ties_keep_identity():
    entries = detectron2_model("faster_rcnn", SMALL)
    model_state = {o: torch.zeros(s) for _, o, s in entries}
    theirs = {d: torch.zeros(s) for d, _, s in entries}
    assert choose_and_align(model_state, theirs).converter == "detectron2_rcnn"
    # A checkpoint in our names loads as it is.
    assert choose_and_align(model_state, model_state).converter == "identity"

"""Detectron2's and Detectron's (Caffe2) tensor names for the R-CNN family, written from
their model definitions, each paired with the name of the same tensor in our models.

Detectron2 (``detectron2/modeling``): ``backbone/resnet.py`` (``BasicStem``, ``BasicBlock``,
``BottleneckBlock``: a ``shortcut`` only where in != out channels), ``backbone/fpn.py``
(``fpn_lateral{L}``, ``fpn_output{L}``, bias only without norm), ``proposal_generator/rpn.py``
(``StandardRPNHead``), ``roi_heads/box_head.py`` (``conv{k}``, ``fc{k}`` added as modules,
the lists are plain Python lists), ``roi_heads/fast_rcnn.py`` (``cls_score``, ``bbox_pred``),
``roi_heads/mask_head.py`` (``mask_fcn{k}``, ``deconv``, ``predictor``) and
``meta_arch/semantic_seg.py`` (``SemSegFPNHead``: each level's convs registered under the
feature's name ``p{L}``, interleaved with upsampling modules, so indices 0, 2, 4).

Detectron (``detectron/modeling``): ``ResNet.py`` with ``AffineChannel`` norms (``_bn_s``,
``_bn_b``, no statistics), ``FPN.py`` (``fpn_inner_res{S}_{last}_sum[_lateral]``,
``fpn_res{S}_{last}_sum``), ``rpn_heads.py`` (level 2's ``conv_rpn_fpn2`` etc., shared),
``fast_rcnn_heads.py`` (``fc6``, ``fc7``, ``cls_score``, ``bbox_pred`` with the background
class first) and ``mask_rcnn_heads.py`` (``_[mask]_fcn{k}``, ``conv5_mask``,
``mask_fcn_logits`` with a background map first).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

BLOCKS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}
FROZEN_BN = ("weight", "bias", "running_mean", "running_var")


@dataclass(frozen=True)
class Arch:
    """The sizes of an R-CNN-family model (Detectron2's config keys in comments)."""

    depth: int = 50  # RESNETS.DEPTH
    stem: int = 64  # RESNETS.STEM_OUT_CHANNELS
    res2: int = 256  # RESNETS.RES2_OUT_CHANNELS
    width: int = 64  # RESNETS.WIDTH_PER_GROUP (bottleneck channels of res2)
    fpn: int = 256  # FPN.OUT_CHANNELS
    fc: int = 1024  # ROI_BOX_HEAD.FC_DIM
    mask: int = 256  # ROI_MASK_HEAD.CONV_DIM
    classes: int = 80  # ROI_HEADS.NUM_CLASSES
    sem_seg: int = 128  # SEM_SEG_HEAD.CONVS_DIM
    sem_seg_classes: int = 54  # SEM_SEG_HEAD.NUM_CLASSES

    def overrides(self) -> list[str]:
        return [
            "MODEL.RESNETS.DEPTH", str(self.depth),
            "MODEL.RESNETS.STEM_OUT_CHANNELS", str(self.stem),
            "MODEL.RESNETS.RES2_OUT_CHANNELS", str(self.res2),
            "MODEL.RESNETS.WIDTH_PER_GROUP", str(self.width),
            "MODEL.FPN.OUT_CHANNELS", str(self.fpn),
            "MODEL.ROI_BOX_HEAD.FC_DIM", str(self.fc),
            "MODEL.ROI_MASK_HEAD.CONV_DIM", str(self.mask),
            "MODEL.ROI_HEADS.NUM_CLASSES", str(self.classes),
            "MODEL.SEM_SEG_HEAD.CONVS_DIM", str(self.sem_seg),
            "MODEL.SEM_SEG_HEAD.NUM_CLASSES", str(self.sem_seg_classes),
        ]  # fmt: skip

    def stage_channels(self) -> list[tuple[int, int, int]]:
        """``(in, bottleneck, out)`` channels of res2..res5."""
        out, bottleneck, in_ch, stages = self.res2, self.width, self.stem, []
        for _ in range(4):
            stages.append((in_ch, bottleneck, out))
            in_ch, out, bottleneck = out, out * 2, bottleneck * 2
        return stages


# (Detectron2 name, our name, shape)
Entry = tuple[str, str, tuple[int, ...]]


def _same(name: str, shape: tuple[int, ...]) -> Entry:
    return (name, name, shape)


def detectron2_resnet(arch: Arch) -> list[Entry]:
    """``backbone.bottom_up.*`` of ``build_resnet_fpn_backbone`` with FrozenBN; our names
    are the same."""
    p = "backbone.bottom_up."
    entries = [_same(f"{p}stem.conv1.weight", (arch.stem, 3, 7, 7))]
    entries += [_same(f"{p}stem.conv1.norm.{a}", (arch.stem,)) for a in FROZEN_BN]

    def conv(name: str, shape: tuple[int, ...]) -> None:
        entries.append(_same(f"{name}.weight", shape))
        entries.extend(_same(f"{name}.norm.{a}", (shape[0],)) for a in FROZEN_BN)

    for s, (n, (in_ch, bottleneck, out)) in enumerate(
        zip(BLOCKS[arch.depth], arch.stage_channels())
    ):
        for b in range(n):
            block = f"{p}res{s + 2}.{b}"
            if in_ch != out:
                conv(f"{block}.shortcut", (out, in_ch, 1, 1))
            if arch.depth < 50:
                conv(f"{block}.conv1", (out, in_ch, 3, 3))
                conv(f"{block}.conv2", (out, out, 3, 3))
            else:
                conv(f"{block}.conv1", (bottleneck, in_ch, 1, 1))
                conv(f"{block}.conv2", (bottleneck, bottleneck, 3, 3))
                conv(f"{block}.conv3", (out, bottleneck, 1, 1))
            in_ch = out
    return entries


def _resnet_out_channels(arch: Arch) -> list[int]:
    return [out for _, _, out in arch.stage_channels()]


def detectron2_fpn(arch: Arch) -> list[Entry]:
    """``backbone.fpn_{lateral,output}{2..5}`` (no norm) -> torchvision's FPN blocks."""
    entries = []
    for i, in_ch in enumerate(_resnet_out_channels(arch)):
        level = i + 2
        for theirs, ours, shape in (
            ("fpn_lateral", "fpn.inner_blocks", (arch.fpn, in_ch, 1, 1)),
            ("fpn_output", "fpn.layer_blocks", (arch.fpn, arch.fpn, 3, 3)),
        ):
            entries.append(
                (f"backbone.{theirs}{level}.weight", f"backbone.{ours}.{i}.0.weight", shape)
            )
            entries.append(
                (f"backbone.{theirs}{level}.bias", f"backbone.{ours}.{i}.0.bias", (arch.fpn,))
            )
    return entries


def detectron2_rpn(arch: Arch, anchors: int = 3) -> list[Entry]:
    p = "proposal_generator.rpn_head."
    c = arch.fpn
    return [
        _same(f"{p}conv.weight", (c, c, 3, 3)),
        _same(f"{p}conv.bias", (c,)),
        _same(f"{p}objectness_logits.weight", (anchors, c, 1, 1)),
        _same(f"{p}objectness_logits.bias", (anchors,)),
        _same(f"{p}anchor_deltas.weight", (4 * anchors, c, 1, 1)),
        _same(f"{p}anchor_deltas.bias", (4 * anchors,)),
    ]


def detectron2_box_head(arch: Arch, pooler: int = 7) -> list[Entry]:
    """The "2fc" head and the class-specific predictor (background last)."""
    k = arch.classes
    return [
        ("roi_heads.box_head.fc1.weight", "roi_heads.box_head.fcs.0.weight", (arch.fc, arch.fpn * pooler**2)),
        ("roi_heads.box_head.fc1.bias", "roi_heads.box_head.fcs.0.bias", (arch.fc,)),
        ("roi_heads.box_head.fc2.weight", "roi_heads.box_head.fcs.1.weight", (arch.fc, arch.fc)),
        ("roi_heads.box_head.fc2.bias", "roi_heads.box_head.fcs.1.bias", (arch.fc,)),
        _same("roi_heads.box_predictor.cls_score.weight", (k + 1, arch.fc)),
        _same("roi_heads.box_predictor.cls_score.bias", (k + 1,)),
        _same("roi_heads.box_predictor.bbox_pred.weight", (4 * k, arch.fc)),
        _same("roi_heads.box_predictor.bbox_pred.bias", (4 * k,)),
    ]  # fmt: skip


def detectron2_mask_head(arch: Arch, num_conv: int = 4) -> list[Entry]:
    p = "roi_heads.mask_head."
    entries = []
    for k in range(num_conv):
        in_ch = arch.fpn if k == 0 else arch.mask
        entries.append(
            (f"{p}mask_fcn{k + 1}.weight", f"{p}convs.{k}.weight", (arch.mask, in_ch, 3, 3))
        )
        entries.append((f"{p}mask_fcn{k + 1}.bias", f"{p}convs.{k}.bias", (arch.mask,)))
    entries += [
        _same(f"{p}deconv.weight", (arch.mask, arch.mask, 2, 2)),  # ConvTranspose2d: (in, out, ...)
        _same(f"{p}deconv.bias", (arch.mask,)),
        _same(f"{p}predictor.weight", (arch.classes, arch.mask, 1, 1)),
        _same(f"{p}predictor.bias", (arch.classes,)),
    ]
    return entries


def detectron2_sem_seg_head(arch: Arch) -> list[Entry]:
    """``SemSegFPNHead`` on p2..p5, common stride 4, GN (convs without bias)."""
    entries = []
    for i, level in enumerate(range(2, 6)):
        for k in range(max(1, level - 2)):
            j = 2 * k if level > 2 else k  # upsampling modules sit between the convs
            in_ch = arch.fpn if k == 0 else arch.sem_seg
            theirs, ours = f"sem_seg_head.p{level}.{j}", f"sem_seg_head.scale_heads.{i}.{j}"
            entries.append((f"{theirs}.weight", f"{ours}.weight", (arch.sem_seg, in_ch, 3, 3)))
            for a in ("weight", "bias"):
                entries.append((f"{theirs}.norm.{a}", f"{ours}.norm.{a}", (arch.sem_seg,)))
    entries += [
        _same("sem_seg_head.predictor.weight", (arch.sem_seg_classes, arch.sem_seg, 1, 1)),
        _same("sem_seg_head.predictor.bias", (arch.sem_seg_classes,)),
    ]
    return entries


def detectron2_model(family: str, arch: Arch) -> list[Entry]:
    """Every tensor of Detectron2's ``family`` model: ``faster_rcnn``, ``mask_rcnn`` or
    ``panoptic_fpn``."""
    entries = detectron2_resnet(arch) + detectron2_fpn(arch) + detectron2_rpn(arch)
    entries += detectron2_box_head(arch)
    if family in ("mask_rcnn", "panoptic_fpn"):
        entries += detectron2_mask_head(arch)
    if family == "panoptic_fpn":
        entries += detectron2_sem_seg_head(arch)
    return entries


# (Caffe2 blob, our name, shape in the file, file tensor -> expected model tensor)
C2Entry = tuple[str, str, tuple[int, ...], Callable[[torch.Tensor], torch.Tensor]]


def _keep(t: torch.Tensor) -> torch.Tensor:
    return t


def _background_last(t: torch.Tensor) -> torch.Tensor:
    return torch.cat([t[1:], t[:1]])


def _drop_background(rows: int) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda t: t[rows:]


def caffe2_model(family: str, arch: Arch) -> tuple[list[C2Entry], list[str]]:
    """Detectron's blobs of a Faster / Mask R-CNN R-50/101-FPN (``family`` ``faster_rcnn``
    or ``mask_rcnn``), and our FrozenBN statistics they have no blob for (AffineChannel:
    expected mean 0, variance 1)."""
    assert arch.depth in (50, 101), "Detectron's ResNets are bottleneck ResNets"
    entries: list[C2Entry] = []
    statistics: list[str] = []
    p = "backbone.bottom_up."

    def conv(blob: str, norm_blob: str, ours: str, shape: tuple[int, ...]) -> None:
        entries.append((f"{blob}_w", f"{ours}.weight", shape, _keep))
        entries.append((f"{norm_blob}_bn_s", f"{ours}.norm.weight", (shape[0],), _keep))
        entries.append((f"{norm_blob}_bn_b", f"{ours}.norm.bias", (shape[0],), _keep))
        statistics.extend([f"{ours}.norm.running_mean", f"{ours}.norm.running_var"])

    conv("conv1", "res_conv1", f"{p}stem.conv1", (arch.stem, 3, 7, 7))
    last_block = {}
    for s, (n, (in_ch, bottleneck, out)) in enumerate(
        zip(BLOCKS[arch.depth], arch.stage_channels())
    ):
        stage = s + 2
        last_block[stage] = n - 1
        for b in range(n):
            ours = f"{p}res{stage}.{b}"
            blob = f"res{stage}_{b}"
            if in_ch != out:
                conv(f"{blob}_branch1", f"{blob}_branch1", f"{ours}.shortcut", (out, in_ch, 1, 1))
            conv(f"{blob}_branch2a", f"{blob}_branch2a", f"{ours}.conv1", (bottleneck, in_ch, 1, 1))
            conv(
                f"{blob}_branch2b",
                f"{blob}_branch2b",
                f"{ours}.conv2",
                (bottleneck, bottleneck, 3, 3),
            )
            conv(f"{blob}_branch2c", f"{blob}_branch2c", f"{ours}.conv3", (out, bottleneck, 1, 1))
            in_ch = out

    def layer(blob: str, ours: str, shape: tuple[int, ...], fix=_keep) -> None:
        # A ConvTranspose2d's bias has shape[1] entries, every other layer's shape[0]; the
        # only one here (conv5_mask) has as many inputs as outputs.
        entries.append((f"{blob}_w", f"{ours}.weight", shape, fix))
        entries.append((f"{blob}_b", f"{ours}.bias", (shape[0],), fix))

    for i, in_ch in enumerate(_resnet_out_channels(arch)):
        stage = i + 2
        lateral = f"fpn_inner_res{stage}_{last_block[stage]}_sum" + (
            "" if stage == 5 else "_lateral"
        )
        layer(lateral, f"backbone.fpn.inner_blocks.{i}.0", (arch.fpn, in_ch, 1, 1))
        layer(
            f"fpn_res{stage}_{last_block[stage]}_sum",
            f"backbone.fpn.layer_blocks.{i}.0",
            (arch.fpn, arch.fpn, 3, 3),
        )
    rpn = "proposal_generator.rpn_head"
    layer("conv_rpn_fpn2", f"{rpn}.conv", (arch.fpn, arch.fpn, 3, 3))
    layer("rpn_cls_logits_fpn2", f"{rpn}.objectness_logits", (3, arch.fpn, 1, 1))
    layer("rpn_bbox_pred_fpn2", f"{rpn}.anchor_deltas", (12, arch.fpn, 1, 1))
    k = arch.classes
    layer("fc6", "roi_heads.box_head.fcs.0", (arch.fc, arch.fpn * 49))
    layer("fc7", "roi_heads.box_head.fcs.1", (arch.fc, arch.fc))
    layer("cls_score", "roi_heads.box_predictor.cls_score", (k + 1, arch.fc), _background_last)
    layer(
        "bbox_pred",
        "roi_heads.box_predictor.bbox_pred",
        (4 * (k + 1), arch.fc),
        _drop_background(4),
    )
    if family == "mask_rcnn":
        for j in range(4):
            in_ch = arch.fpn if j == 0 else arch.mask
            layer(f"_[mask]_fcn{j + 1}", f"roi_heads.mask_head.convs.{j}", (arch.mask, in_ch, 3, 3))
        layer("conv5_mask", "roi_heads.mask_head.deconv", (arch.mask, arch.mask, 2, 2))
        layer(
            "mask_fcn_logits",
            "roi_heads.mask_head.predictor",
            (k + 1, arch.mask, 1, 1),
            _drop_background(1),
        )
    return entries, statistics

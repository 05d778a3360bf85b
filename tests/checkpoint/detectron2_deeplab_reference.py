"""Detectron2's DeepLab-family state-dict names and shapes, written from its model code.

The reference for the ``detectron2_deeplab`` converter tests: what ``model.state_dict()`` of
Detectron2's models holds, derived by hand (no Detectron2 install) from

* ``projects/DeepLab/deeplab/resnet.py``: ``DeepLabStem`` (``stem.conv1..3``, 3x3 convs
  in -> out/2 -> out/2 -> out, no bias, a norm each) and ``build_resnet_deeplab_backbone``
  (stages ``res2`` up to the deepest output, bottleneck blocks, 3/4/6/3 or 3/4/23/3);
* ``detectron2/modeling/backbone/resnet.py``: ``BottleneckBlock`` (``conv1..3``, a
  ``shortcut`` when the channels change);
* ``detectron2/layers/aspp.py``: ``ASPP`` (``convs.0`` 1x1, ``convs.1..3`` atrous 3x3 or
  depthwise-separable, ``convs.4.1`` pooled 1x1 with bias and no norm, ``project``);
* ``detectron2/layers/blocks.py``: ``DepthwiseSeparableConv2d`` (``depthwise``,
  ``pointwise``);
* ``projects/DeepLab/deeplab/semantic_seg.py``: ``DeepLabV3PlusHead`` (``decoder.<feature>.
  project_conv`` / ``fuse_conv``, ``predictor``) and ``DeepLabV3Head`` (``aspp``,
  ``predictor``);
* ``projects/Panoptic-DeepLab/panoptic_deeplab/panoptic_seg.py``: the semantic head
  (``head``, ``predictor``) and the instance head (``center_head`` always two 3x3 convs,
  ``offset_head`` depthwise-separable in the dsconv variant, ``center_predictor``,
  ``offset_predictor``); the semantic and instance decoders follow
  ``MODEL.SEM_SEG_HEAD.USE_DEPTHWISE_SEPARABLE_CONV``.

Norm layers are BatchNorm (``BN``/``SyncBN``): ``weight``, ``bias``, ``running_mean``,
``running_var`` and the 0-d ``num_batches_tracked``; a conv with a norm has no bias.

:func:`write_detectron2_checkpoint` writes such weights in Detectron2's two file formats
(``detectron2/checkpoint/detection_checkpoint.py``): a training ``.pth``
(``{"model": state_dict, "iteration": ...}``) and a model-zoo ``.pkl``
(``{"model": {name: numpy array}, "__author__": ...}``).
"""

from __future__ import annotations

import math
import pickle
from dataclasses import dataclass

import torch

Shapes = dict[str, tuple[int, ...]]

_BLOCKS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}


def _conv(out: Shapes, name: str, c_in: int, c_out: int, k: int, *, groups: int = 1) -> None:
    """A Detectron2 ``Conv2d`` followed by BatchNorm (so without bias)."""
    out[f"{name}.weight"] = (c_out, c_in // groups, k, k)
    for attr in ("weight", "bias", "running_mean", "running_var"):
        out[f"{name}.norm.{attr}"] = (c_out,)
    out[f"{name}.norm.num_batches_tracked"] = ()


def _separable(out: Shapes, name: str, c_in: int, c_out: int, k: int) -> None:
    _conv(out, f"{name}.depthwise", c_in, c_in, k, groups=c_in)
    _conv(out, f"{name}.pointwise", c_in, c_out, 1)


def _predictor(out: Shapes, name: str, c_in: int, c_out: int) -> None:
    out[f"{name}.weight"] = (c_out, c_in, 1, 1)
    out[f"{name}.bias"] = (c_out,)


@dataclass(frozen=True)
class ResNetSpec:
    """``build_resnet_deeplab_backbone``'s inputs (``MODEL.RESNETS``)."""

    depth: int = 50
    stem_out_channels: int = 128
    res2_out_channels: int = 256
    width_per_group: int = 64
    deepest_stage: int = 5

    def channels(self, stage: str) -> int:
        return self.res2_out_channels * 2 ** (int(stage[-1]) - 2)


def resnet_deeplab(spec: ResNetSpec, prefix: str = "backbone") -> Shapes:
    """Keys of ``build_resnet_deeplab_backbone`` with the DeepLab stem."""
    out: Shapes = {}
    stem = spec.stem_out_channels
    _conv(out, f"{prefix}.stem.conv1", 3, stem // 2, 3)
    _conv(out, f"{prefix}.stem.conv2", stem // 2, stem // 2, 3)
    _conv(out, f"{prefix}.stem.conv3", stem // 2, stem, 3)
    c_in, c_out, mid = stem, spec.res2_out_channels, spec.width_per_group
    for stage, blocks in zip(range(2, spec.deepest_stage + 1), _BLOCKS[spec.depth]):
        for b in range(blocks):
            block = f"{prefix}.res{stage}.{b}"
            if c_in != c_out:
                _conv(out, f"{block}.shortcut", c_in, c_out, 1)
            _conv(out, f"{block}.conv1", c_in, mid, 1)
            _conv(out, f"{block}.conv2", mid, mid, 3)
            _conv(out, f"{block}.conv3", mid, c_out, 1)
            c_in = c_out
        c_out, mid = c_out * 2, mid * 2
    return out


def aspp(name: str, c_in: int, c_out: int, separable: bool) -> Shapes:
    out: Shapes = {}
    _conv(out, f"{name}.convs.0", c_in, c_out, 1)
    for i in (1, 2, 3):
        if separable:
            _separable(out, f"{name}.convs.{i}", c_in, c_out, 3)
        else:
            _conv(out, f"{name}.convs.{i}", c_in, c_out, 3)
    _predictor(out, f"{name}.convs.4.1", c_in, c_out)  # image pooling: bias, no norm
    _conv(out, f"{name}.project", 5 * c_out, c_out, 1)
    return out


@dataclass(frozen=True)
class DecoderSpec:
    """``DeepLabV3PlusHead``'s decoder inputs (features from shallow to deep)."""

    in_features: tuple[str, ...]
    project_channels: tuple[int, ...]
    convs_dim: int
    aspp_channels: int
    separable: bool = False


def deeplab_decoder(name: str, spec: DecoderSpec, backbone: ResNetSpec) -> Shapes:
    """``<name>.decoder.<feature>.{project_conv,fuse_conv}`` of ``DeepLabV3PlusHead``."""
    n = len(spec.in_features)
    decoder_channels = [spec.convs_dim] * (n - 1) + [spec.aspp_channels]
    deepest = spec.in_features[-1]
    out = aspp(
        f"{name}.decoder.{deepest}.project_conv",
        backbone.channels(deepest),
        spec.aspp_channels,
        spec.separable,
    )
    for idx, feature in enumerate(spec.in_features[:-1]):
        stage = f"{name}.decoder.{feature}"
        project = spec.project_channels[idx]
        _conv(out, f"{stage}.project_conv", backbone.channels(feature), project, 1)
        fused_in = project + decoder_channels[idx + 1]
        if spec.separable:
            _separable(out, f"{stage}.fuse_conv", fused_in, decoder_channels[idx], 5)
        else:
            _conv(out, f"{stage}.fuse_conv.0", fused_in, decoder_channels[idx], 3)
            _conv(out, f"{stage}.fuse_conv.1", decoder_channels[idx], decoder_channels[idx], 3)
    return out


def _tower(out: Shapes, name: str, c_in: int, c_head: int, separable: bool) -> None:
    if separable:
        _separable(out, name, c_in, c_head, 5)
    else:
        _conv(out, f"{name}.0", c_in, c_in, 3)
        _conv(out, f"{name}.1", c_in, c_head, 3)


def panoptic_deeplab(
    backbone: ResNetSpec,
    semantic: DecoderSpec,
    instance: DecoderSpec,
    *,
    num_classes: int,
    semantic_head_channels: int,
    instance_head_channels: int,
) -> Shapes:
    """Detectron2's ``PanopticDeepLab`` (``semantic.separable`` is the dsconv switch)."""
    out = resnet_deeplab(backbone)
    out.update(deeplab_decoder("sem_seg_head", semantic, backbone))
    separable = semantic.separable
    _tower(out, "sem_seg_head.head", semantic.convs_dim, semantic_head_channels, separable)
    _predictor(out, "sem_seg_head.predictor", semantic_head_channels, num_classes)
    out.update(deeplab_decoder("ins_embed_head", instance, backbone))
    hc = instance_head_channels
    _tower(out, "ins_embed_head.center_head", instance.convs_dim, hc, separable=False)
    _predictor(out, "ins_embed_head.center_predictor", hc, 1)
    _tower(out, "ins_embed_head.offset_head", instance.convs_dim, hc, separable)
    _predictor(out, "ins_embed_head.offset_predictor", hc, 2)
    return out


def deeplab_v3(backbone: ResNetSpec, *, aspp_channels: int, num_classes: int) -> Shapes:
    """Detectron2's ``SemanticSegmentor`` with ``DeepLabV3Head`` (ASPP on ``res5``)."""
    out = resnet_deeplab(backbone)
    out.update(aspp("sem_seg_head.aspp", backbone.channels("res5"), aspp_channels, False))
    _predictor(out, "sem_seg_head.predictor", aspp_channels, num_classes)
    return out


def deeplab_v3_plus(backbone: ResNetSpec, decoder: DecoderSpec, *, num_classes: int) -> Shapes:
    """Detectron2's ``SemanticSegmentor`` with ``DeepLabV3PlusHead``."""
    out = resnet_deeplab(backbone)
    out.update(deeplab_decoder("sem_seg_head", decoder, backbone))
    _predictor(out, "sem_seg_head.predictor", decoder.convs_dim, num_classes)
    return out


def to_detectron2_name(ours: str, *, deeplab_v3_head: bool = False) -> str:
    """Our model key -> Detectron2's, written independently of the converter under test:
    our heads' decoder module sits between the head and its stages, and Detectron2's
    ``DeepLabV3Head`` names its ASPP (our ``res5`` stage) ``aspp``."""
    name = ours.replace(".decoder.decoder.", ".decoder.")
    if deeplab_v3_head:
        name = name.replace("sem_seg_head.decoder.res5.project_conv.", "sem_seg_head.aspp.")
    return name


def parameter_count(shapes: Shapes) -> int:
    """Elements of the parameters (BatchNorm statistics are buffers)."""
    buffers = ("running_mean", "running_var", "num_batches_tracked")
    return sum(math.prod(s) for k, s in shapes.items() if not k.endswith(buffers))


def random_state_dict(shapes: Shapes, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors of the given shapes: float32, positive variances, int64 counters."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for name, shape in shapes.items():
        if name.endswith("num_batches_tracked"):
            state[name] = torch.randint(1, 10**6, shape, generator=generator)
        elif name.endswith("running_var"):
            state[name] = torch.rand(shape, generator=generator) + 0.5
        else:
            state[name] = torch.randn(shape, generator=generator)
    return state


def write_detectron2_checkpoint(path: str, state: dict[str, torch.Tensor]) -> None:
    """Writes ``state`` as Detectron2 does: ``.pkl`` model-zoo pickle, else a ``.pth``."""
    if path.endswith(".pkl"):
        arrays = {name: tensor.numpy() for name, tensor in state.items()}
        with open(path, "wb") as f:
            pickle.dump({"model": arrays, "__author__": "Detectron2 Model Zoo"}, f)
    else:
        torch.save({"model": state, "iteration": 89999}, path)

"""Detectron2 YAML configs, translated key by key into panoptic2's config.

A Detectron2 config file (its ``_BASE_`` files included) is read on top of Detectron2's own
defaults (:mod:`.detectron2_defaults`, with its DeepLab or Panoptic-DeepLab project's keys
when the file uses that project), and then every Detectron2 key goes through the one table
here, :data:`TRANSLATIONS`, which does one of three things:

* **translates** it: the same key (most keys: Detectron2 names were kept), a renamed key
  (DeepLab head keys -> ``MODEL.DEEPLAB.*``), or other values (``build_resnet_deeplab_backbone``
  -> ``build_resnet_backbone``; COCO Panoptic-DeepLab's 133 classes -> our 134 with void 0);
* **drops** it with the reason (``VERSION``; ``MODEL.RPN.*`` of a model without an RPN, which
  Detectron2 does not read either; ``INPUT.CROP.TYPE: absolute``, the only crop type here);
* **refuses** it with an error naming the file, the key, the value and why
  (``MODEL.KEYPOINT_ON: True``, ``ROI_HEADS.NAME: CascadeROIHeads``, a key Detectron2 does
  not have).

Every translated key is logged (keys from files and the command line at INFO, keys that come
from Detectron2's defaults at DEBUG). A file is Detectron2's when ``load_config`` is told so
(``config_format="detectron2"``, ``tools/train_net.py --config-format detectron2``), or, by
default, when its ``_BASE_`` chain sets ``VERSION: 2`` (every file of Detectron2's model zoo
does; panoptic2's never do). Command-line overrides of such a run are Detectron2 keys too;
keys that only panoptic2 has (``MODEL.ALLOW_PARTIAL_WEIGHTS``, ``TEST.MAX_IMAGES``...) apply
as they are, after the translation. ``MODEL.WEIGHTS`` values such as ``detectron2://...`` are
kept: panoptic2's URL handlers resolve them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from panoptic2.config.config import (
    ConfigError,
    UnknownConfigKeyError,
    _decode_value,
    _flatten,
    _load_tree,
    _split_overrides,
    _suggest,
    _YamlTree,
)

from .detectron2_defaults import (
    CORE_DEFAULTS,
    DEEPLAB_DEFAULTS,
    PANOPTIC_DEEPLAB_DEFAULTS,
)
from .detectron2_rules import (
    DEEPLAB_BACKBONE,
    DEEPLAB_HEADS,
    FPN_BACKBONE,
    PLUGINS,
    Context,
    Refused,
    Rule,
    accept,
    amp,
    by_head,
    crop_enabled,
    datasets,
    deeplab_backbone,
    deeplab_common_stride,
    deeplab_in_features,
    deeplab_v3_convs_dim,
    device,
    drop,
    equal,
    filter_empty,
    ignore_value,
    meta_architecture,
    names,
    num_classes,
    panoptic_deeplab_dsconv,
    same,
    scheduler_is,
    sem_seg_head_name,
    semantic_dsconv,
    to,
    when,
)
from .detectron2_yaml import Detectron2YamlLoader, decode_value

__all__ = [
    "CONFIG_FORMATS",
    "DETECTRON2_DEFAULTS",
    "TRANSLATIONS",
    "Detectron2Translation",
    "KeyTranslation",
    "load_detectron2_tree",
    "translate_detectron2_config",
]

logger = logging.getLogger(__name__)

CONFIG_FORMATS = ("auto", "panoptic2", "detectron2")
# The source of a key that no file or override set.
DETECTRON2_DEFAULTS = "Detectron2's defaults"
_COMMAND_LINE = "the command line"
_RCNN_GROUPS = {
    "BACKBONE",
    "RESNETS",
    "FPN",
    "PROPOSAL_GENERATOR",
    "ANCHOR_GENERATOR",
    "RPN",
    "ROI_HEADS",
    "ROI_BOX_HEAD",
    "ROI_MASK_HEAD",
}
# Meta-architecture -> the MODEL.<group> nodes its model reads (in Detectron2 and here).
_GROUPS_READ = {
    "GeneralizedRCNN": _RCNN_GROUPS,
    "PanopticFPN": _RCNN_GROUPS | {"SEM_SEG_HEAD", "PANOPTIC_FPN"},
    "PanopticDeepLab": {"BACKBONE", "RESNETS", "FPN", "SEM_SEG_HEAD", "INS_EMBED_HEAD"}
    | {"PANOPTIC_DEEPLAB"},
    "SemanticSegmentor": {"BACKBONE", "RESNETS", "FPN", "SEM_SEG_HEAD"},
}


@dataclass(frozen=True)
class KeyTranslation:
    """What became of one Detectron2 key.

    Attributes:
        detectron2_key: the dotted Detectron2 key.
        value: its value in the Detectron2 config.
        source: the file that set it, "the command line", or :data:`DETECTRON2_DEFAULTS`.
        targets: panoptic2 key -> value; empty when the key is dropped. ``PLUGINS`` lists a
            plugin module the key needs.
        note: why the key was dropped or how its value changed; "" for a plain copy.
    """

    detectron2_key: str
    value: Any
    source: str
    targets: dict[str, Any]
    note: str

    def describe(self) -> str:
        what = f"{self.detectron2_key} = {self.value!r}"
        if not self.targets:
            return f"{what}: dropped ({self.note})"
        targets = ", ".join(f"{k} = {v!r}" for k, v in self.targets.items())
        return f"{what} -> {targets}" + (f" ({self.note})" if self.note else "")


@dataclass
class Detectron2Translation:
    """A Detectron2 config translated: panoptic2 keys, plugins, and one record per key.

    Attributes:
        config: flat panoptic2 key -> value (``PLUGINS`` excluded).
        plugins: plugin modules the translated config needs (the DeepLab heads').
        records: one :class:`KeyTranslation` per key of the Detectron2 config.
        project: the Detectron2 project whose keys the config uses: "", "DeepLab" or
            "Panoptic-DeepLab".
    """

    config: dict[str, Any] = field(default_factory=dict)
    plugins: list[str] = field(default_factory=list)
    records: list[KeyTranslation] = field(default_factory=list)
    project: str = ""


_NOT_DEEPLAB_BACKBONE = f"read only by Detectron2's {DEEPLAB_BACKBONE}"
_CROP_OFF = "cropping is disabled (INPUT.CROP.ENABLED False)"
_NO_PROJECTION_LIST = (
    "Detectron2's heads project every IN_FEATURES entry but the deepest and do not read it"
)


# ---------------------------------------------------------------------------------------
# The table: every key of Detectron2's config (core, DeepLab, Panoptic-DeepLab) -> its rule
# ---------------------------------------------------------------------------------------
# Keys with the same name and meaning in both configs.
_SAME_NAME = (  # noqa: SIM905 (one string keeps this list of 120 keys short)
    "MODEL.MASK_ON MODEL.WEIGHTS MODEL.PIXEL_MEAN MODEL.PIXEL_STD INPUT.MIN_SIZE_TRAIN "
    "INPUT.MIN_SIZE_TRAIN_SAMPLING INPUT.MAX_SIZE_TRAIN INPUT.MIN_SIZE_TEST INPUT.MAX_SIZE_TEST "
    "INPUT.RANDOM_FLIP INPUT.CROP.ENABLED INPUT.FORMAT DATALOADER.NUM_WORKERS "
    "DATALOADER.ASPECT_RATIO_GROUPING DATALOADER.REPEAT_THRESHOLD MODEL.BACKBONE.FREEZE_AT "
    "MODEL.FPN.IN_FEATURES MODEL.FPN.OUT_CHANNELS MODEL.FPN.NORM MODEL.FPN.FUSE_TYPE "
    "MODEL.PROPOSAL_GENERATOR.MIN_SIZE MODEL.ANCHOR_GENERATOR.SIZES "
    "MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS MODEL.ANCHOR_GENERATOR.OFFSET MODEL.RPN.IN_FEATURES "
    "MODEL.RPN.BOUNDARY_THRESH MODEL.RPN.IOU_THRESHOLDS MODEL.RPN.IOU_LABELS "
    "MODEL.RPN.BATCH_SIZE_PER_IMAGE MODEL.RPN.POSITIVE_FRACTION MODEL.RPN.BBOX_REG_LOSS_TYPE "
    "MODEL.RPN.BBOX_REG_LOSS_WEIGHT MODEL.RPN.BBOX_REG_WEIGHTS MODEL.RPN.SMOOTH_L1_BETA "
    "MODEL.RPN.LOSS_WEIGHT MODEL.RPN.PRE_NMS_TOPK_TRAIN MODEL.RPN.PRE_NMS_TOPK_TEST "
    "MODEL.RPN.POST_NMS_TOPK_TRAIN MODEL.RPN.POST_NMS_TOPK_TEST MODEL.RPN.NMS_THRESH "
    "MODEL.RPN.CONV_DIMS MODEL.ROI_HEADS.NUM_CLASSES MODEL.ROI_HEADS.IN_FEATURES "
    "MODEL.ROI_HEADS.IOU_THRESHOLDS MODEL.ROI_HEADS.IOU_LABELS "
    "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE MODEL.ROI_HEADS.POSITIVE_FRACTION "
    "MODEL.ROI_HEADS.SCORE_THRESH_TEST MODEL.ROI_HEADS.NMS_THRESH_TEST "
    "MODEL.ROI_HEADS.PROPOSAL_APPEND_GT MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_WEIGHT "
    "MODEL.ROI_BOX_HEAD.BBOX_REG_WEIGHTS MODEL.ROI_BOX_HEAD.SMOOTH_L1_BETA "
    "MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION MODEL.ROI_BOX_HEAD.POOLER_SAMPLING_RATIO "
    "MODEL.ROI_BOX_HEAD.POOLER_TYPE MODEL.ROI_BOX_HEAD.NUM_FC MODEL.ROI_BOX_HEAD.FC_DIM "
    "MODEL.ROI_BOX_HEAD.NUM_CONV MODEL.ROI_BOX_HEAD.CONV_DIM MODEL.ROI_BOX_HEAD.NORM "
    "MODEL.ROI_BOX_HEAD.CLS_AGNOSTIC_BBOX_REG MODEL.ROI_MASK_HEAD.POOLER_RESOLUTION "
    "MODEL.ROI_MASK_HEAD.POOLER_SAMPLING_RATIO MODEL.ROI_MASK_HEAD.NUM_CONV "
    "MODEL.ROI_MASK_HEAD.CONV_DIM MODEL.ROI_MASK_HEAD.NORM MODEL.ROI_MASK_HEAD.CLS_AGNOSTIC_MASK "
    "MODEL.ROI_MASK_HEAD.POOLER_TYPE MODEL.PANOPTIC_FPN.INSTANCE_LOSS_WEIGHT "
    "MODEL.PANOPTIC_FPN.COMBINE.ENABLED MODEL.PANOPTIC_FPN.COMBINE.OVERLAP_THRESH "
    "MODEL.PANOPTIC_FPN.COMBINE.STUFF_AREA_LIMIT "
    "MODEL.PANOPTIC_FPN.COMBINE.INSTANCES_CONFIDENCE_THRESH MODEL.RESNETS.DEPTH "
    "MODEL.RESNETS.OUT_FEATURES MODEL.RESNETS.NUM_GROUPS MODEL.RESNETS.NORM "
    "MODEL.RESNETS.WIDTH_PER_GROUP MODEL.RESNETS.STRIDE_IN_1X1 MODEL.RESNETS.RES5_DILATION "
    "MODEL.RESNETS.RES2_OUT_CHANNELS MODEL.RESNETS.STEM_OUT_CHANNELS SOLVER.MAX_ITER "
    "SOLVER.BASE_LR SOLVER.MOMENTUM SOLVER.NESTEROV SOLVER.WEIGHT_DECAY SOLVER.WEIGHT_DECAY_NORM "
    "SOLVER.WARMUP_FACTOR SOLVER.WARMUP_ITERS SOLVER.WARMUP_METHOD SOLVER.CHECKPOINT_PERIOD "
    "SOLVER.IMS_PER_BATCH SOLVER.BIAS_LR_FACTOR SOLVER.WEIGHT_DECAY_BIAS "
    "SOLVER.CLIP_GRADIENTS.ENABLED TEST.EVAL_PERIOD TEST.DETECTIONS_PER_IMAGE "
    "TEST.PRECISE_BN.ENABLED TEST.PRECISE_BN.NUM_ITER OUTPUT_DIR SEED CUDNN_BENCHMARK "
    # Panoptic-DeepLab project
    "INPUT.GAUSSIAN_SIGMA INPUT.IGNORE_STUFF_IN_OFFSET INPUT.SMALL_INSTANCE_AREA "
    "INPUT.SMALL_INSTANCE_WEIGHT INPUT.IGNORE_CROWD_IN_SEMANTIC MODEL.INS_EMBED_HEAD.NAME "
    "MODEL.INS_EMBED_HEAD.IN_FEATURES MODEL.INS_EMBED_HEAD.PROJECT_CHANNELS "
    "MODEL.INS_EMBED_HEAD.ASPP_CHANNELS MODEL.INS_EMBED_HEAD.ASPP_DILATIONS "
    "MODEL.INS_EMBED_HEAD.ASPP_DROPOUT MODEL.INS_EMBED_HEAD.HEAD_CHANNELS "
    "MODEL.INS_EMBED_HEAD.CONVS_DIM MODEL.INS_EMBED_HEAD.COMMON_STRIDE MODEL.INS_EMBED_HEAD.NORM "
    "MODEL.INS_EMBED_HEAD.CENTER_LOSS_WEIGHT MODEL.INS_EMBED_HEAD.OFFSET_LOSS_WEIGHT "
    "MODEL.PANOPTIC_DEEPLAB.STUFF_AREA MODEL.PANOPTIC_DEEPLAB.CENTER_THRESHOLD "
    "MODEL.PANOPTIC_DEEPLAB.NMS_KERNEL MODEL.PANOPTIC_DEEPLAB.TOP_K_INSTANCE "
    "MODEL.PANOPTIC_DEEPLAB.PREDICT_INSTANCES MODEL.PANOPTIC_DEEPLAB.SIZE_DIVISIBILITY "
    "MODEL.PANOPTIC_DEEPLAB.BENCHMARK_NETWORK_SPEED"
).split()

_SEM = "MODEL.SEM_SEG_HEAD."
_V3_HAS_NO_DECODER = "DeepLabV3Head has no decoder"

TRANSLATIONS: dict[str, Rule] = {
    **dict.fromkeys(_SAME_NAME, same),
    "VERSION": accept(
        2, "the version of Detectron2's config schema this table reads", "only VERSION 2 is read"
    ),
    "MODEL.META_ARCHITECTURE": meta_architecture,
    "MODEL.DEVICE": device,
    "MODEL.LOAD_PROPOSALS": accept(False, "off", "precomputed proposals are not supported"),
    "MODEL.KEYPOINT_ON": accept(False, "off", "keypoint heads are not part of panoptic2"),
    "MODEL.BACKBONE.NAME": names(
        {
            "build_resnet_backbone": "build_resnet_backbone",
            FPN_BACKBONE: FPN_BACKBONE,
            DEEPLAB_BACKBONE: "build_resnet_backbone",
        },
        "backbones",
    ),
    "MODEL.RESNETS.RES4_DILATION": when(deeplab_backbone, _NOT_DEEPLAB_BACKBONE),
    "MODEL.RESNETS.RES5_MULTI_GRID": when(deeplab_backbone, _NOT_DEEPLAB_BACKBONE),
    "MODEL.RESNETS.STEM_TYPE": when(deeplab_backbone, _NOT_DEEPLAB_BACKBONE),
    "MODEL.RESNETS.DEFORM_ON_PER_STAGE": accept(
        [False] * 4, "no deformable stage", "deformable convolutions are not supported"
    ),
    "MODEL.RESNETS.DEFORM_MODULATED": drop("read only with deformable stages"),
    "MODEL.RESNETS.DEFORM_NUM_GROUPS": drop("read only with deformable stages"),
    "MODEL.PROPOSAL_GENERATOR.NAME": names({"RPN": "RPN"}, "proposal generators"),
    "MODEL.ANCHOR_GENERATOR.NAME": names(
        {"DefaultAnchorGenerator": "DefaultAnchorGenerator"}, "anchor generators"
    ),
    "MODEL.ANCHOR_GENERATOR.ANGLES": drop("read only by Detectron2's RotatedAnchorGenerator"),
    "MODEL.RPN.HEAD_NAME": names({"StandardRPNHead": "StandardRPNHead"}, "RPN heads"),
    "MODEL.ROI_HEADS.NAME": names({"StandardROIHeads": "StandardROIHeads"}, "ROI heads"),
    "MODEL.ROI_BOX_HEAD.NAME": accept(
        "FastRCNNConvFCHead",
        "StandardROIHeads builds this conv/FC box head from NUM_CONV and NUM_FC",
        "panoptic2's box head is FastRCNNConvFCHead",
    ),
    "MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_TYPE": names(
        {"smooth_l1": "smooth_l1"}, "box regression losses"
    ),
    "MODEL.ROI_BOX_HEAD.TRAIN_ON_PRED_BOXES": accept(False, "off", "not supported"),
    "MODEL.ROI_BOX_HEAD.USE_FED_LOSS": accept(False, "off", "the federated loss is unsupported"),
    "MODEL.ROI_BOX_HEAD.USE_SIGMOID_CE": accept(False, "off", "sigmoid CE is not supported"),
    "MODEL.ROI_BOX_HEAD.FED_LOSS_FREQ_WEIGHT_POWER": drop("read only with USE_FED_LOSS"),
    "MODEL.ROI_BOX_HEAD.FED_LOSS_NUM_CLASSES": drop("read only with USE_FED_LOSS"),
    "MODEL.ROI_MASK_HEAD.NAME": accept(
        "MaskRCNNConvUpsampleHead",
        "StandardROIHeads builds this mask head (NUM_CONV convs, then a deconv)",
        "panoptic2's mask head is MaskRCNNConvUpsampleHead",
    ),
    # Panoptic FPN's, Panoptic-DeepLab's and the DeepLab heads' keys share MODEL.SEM_SEG_HEAD.
    _SEM + "NAME": sem_seg_head_name,
    _SEM + "IN_FEATURES": by_head(deeplab_in_features, deeplab_in_features),
    _SEM + "NUM_CLASSES": by_head(num_classes, num_classes, num_classes),
    _SEM + "IGNORE_VALUE": ignore_value,
    _SEM + "CONVS_DIM": by_head(deeplab_v3_convs_dim, to("MODEL.DEEPLAB.DECODER_CHANNELS")),
    _SEM + "COMMON_STRIDE": by_head(deeplab_common_stride, deeplab_common_stride),
    _SEM + "NORM": same,
    _SEM + "LOSS_WEIGHT": same,
    _SEM + "LOSS_TYPE": by_head(to("MODEL.DEEPLAB.LOSS_TYPE"), to("MODEL.DEEPLAB.LOSS_TYPE")),
    _SEM + "PROJECT_FEATURES": drop(_NO_PROJECTION_LIST),
    _SEM + "PROJECT_CHANNELS": by_head(
        drop(_V3_HAS_NO_DECODER), to("MODEL.DEEPLAB.PROJECT_CHANNELS")
    ),
    _SEM + "ASPP_CHANNELS": by_head(
        to("MODEL.DEEPLAB.ASPP_CHANNELS"), to("MODEL.DEEPLAB.ASPP_CHANNELS")
    ),
    _SEM + "ASPP_DILATIONS": by_head(
        to("MODEL.DEEPLAB.ASPP_DILATIONS"), to("MODEL.DEEPLAB.ASPP_DILATIONS")
    ),
    _SEM + "ASPP_DROPOUT": by_head(
        to("MODEL.DEEPLAB.ASPP_DROPOUT"), to("MODEL.DEEPLAB.ASPP_DROPOUT")
    ),
    _SEM + "USE_DEPTHWISE_SEPARABLE_CONV": by_head(
        to("MODEL.DEEPLAB.USE_DEPTHWISE_SEPARABLE_CONV"),
        to("MODEL.DEEPLAB.USE_DEPTHWISE_SEPARABLE_CONV"),
        semantic_dsconv,
    ),
    _SEM + "HEAD_CHANNELS": same,
    _SEM + "LOSS_TOP_K": same,
    "MODEL.INS_EMBED_HEAD.PROJECT_FEATURES": drop(_NO_PROJECTION_LIST),
    "MODEL.PANOPTIC_DEEPLAB.USE_DEPTHWISE_SEPARABLE_CONV": panoptic_deeplab_dsconv,
    **dict.fromkeys(
        (
            "MODEL.ROI_BOX_CASCADE_HEAD.BBOX_REG_WEIGHTS",
            "MODEL.ROI_BOX_CASCADE_HEAD.IOUS",
        ),
        drop("read only by Detectron2's CascadeROIHeads"),
    ),
    **{
        k: drop("read only with MODEL.KEYPOINT_ON")
        for k in CORE_DEFAULTS
        if k.startswith("MODEL.ROI_KEYPOINT_HEAD.")
    },
    **{
        k: drop("read only by Detectron2's RetinaNet")
        for k in CORE_DEFAULTS
        if k.startswith("MODEL.RETINANET.")
    },
    "INPUT.CROP.TYPE": when(
        crop_enabled,
        _CROP_OFF,
        accept(
            "absolute",
            "panoptic2's INPUT.CROP.SIZE is always (height, width) in pixels",
            "panoptic2 crops only to an absolute (height, width)",
        ),
    ),
    "INPUT.CROP.SIZE": when(crop_enabled, _CROP_OFF),
    "INPUT.CROP.SINGLE_CATEGORY_MAX_AREA": when(crop_enabled, _CROP_OFF),
    "INPUT.MASK_FORMAT": drop(
        "panoptic2 rasterises instance masks and crops mask targets from the bitmask, as "
        "Detectron2's 'bitmask' format; 'polygon' targets differ only at boundary pixels"
    ),
    "DATASETS.TRAIN": datasets,
    "DATASETS.TEST": datasets,
    "DATASETS.PROPOSAL_FILES_TRAIN": accept([], "none", "precomputed proposals are unsupported"),
    "DATASETS.PROPOSAL_FILES_TEST": accept([], "none", "precomputed proposals are unsupported"),
    "DATASETS.PRECOMPUTED_PROPOSAL_TOPK_TRAIN": drop("read only with proposal files"),
    "DATASETS.PRECOMPUTED_PROPOSAL_TOPK_TEST": drop("read only with proposal files"),
    "DATALOADER.SAMPLER_TRAIN": names(
        {n: n for n in ("TrainingSampler", "RepeatFactorTrainingSampler")}, "samplers"
    ),
    "DATALOADER.REPEAT_SQRT": when(
        lambda ctx: ctx["DATALOADER.SAMPLER_TRAIN"] == "RepeatFactorTrainingSampler",
        "read only by RepeatFactorTrainingSampler",
        accept(True, "panoptic2's repeat factors use the square root", "only sqrt is supported"),
    ),
    "DATALOADER.FILTER_EMPTY_ANNOTATIONS": filter_empty,
    "SOLVER.OPTIMIZER": names({"ADAM": "Adam", "SGD": "SGD"}, "optimizers"),
    "SOLVER.LR_SCHEDULER_NAME": names(
        {n: n for n in ("WarmupMultiStepLR", "WarmupCosineLR", "WarmupPolyLR")}, "schedules"
    ),
    "SOLVER.STEPS": when(scheduler_is("WarmupMultiStepLR"), "read only by WarmupMultiStepLR"),
    "SOLVER.GAMMA": when(scheduler_is("WarmupMultiStepLR"), "read only by WarmupMultiStepLR"),
    "SOLVER.BASE_LR_END": when(scheduler_is("WarmupCosineLR"), "read only by WarmupCosineLR"),
    "SOLVER.POLY_LR_POWER": when(scheduler_is("WarmupPolyLR"), "read only by WarmupPolyLR"),
    "SOLVER.POLY_LR_CONSTANT_ENDING": accept(
        0.0, "0 disables it", "a constant ending of the poly schedule is not supported"
    ),
    "SOLVER.NUM_DECAYS": drop("read only by WarmupStepWithFixedGammaLR"),
    "SOLVER.RESCALE_INTERVAL": drop("read only by WarmupStepWithFixedGammaLR"),
    "SOLVER.REFERENCE_WORLD_SIZE": accept(
        0, "0 disables it", "scale SOLVER.IMS_PER_BATCH, BASE_LR and the schedule yourself"
    ),
    "SOLVER.CLIP_GRADIENTS.CLIP_TYPE": when(
        lambda ctx: ctx["SOLVER.CLIP_GRADIENTS.ENABLED"],
        "gradient clipping is disabled",
        names({"value": "value", "norm": "norm"}, "clipping types"),
    ),
    **dict.fromkeys(
        ("SOLVER.CLIP_GRADIENTS.CLIP_VALUE", "SOLVER.CLIP_GRADIENTS.NORM_TYPE"),
        when(lambda ctx: ctx["SOLVER.CLIP_GRADIENTS.ENABLED"], "gradient clipping is disabled"),
    ),
    "SOLVER.AMP.ENABLED": amp,
    "TEST.EXPECTED_RESULTS": accept([], "none", "checking expected results is not supported"),
    "TEST.KEYPOINT_OKS_SIGMAS": accept([], "none", "keypoints are not supported"),
    "TEST.AUG.ENABLED": accept(False, "off", "test-time augmentation is not supported"),
    **dict.fromkeys(
        ("TEST.AUG.MIN_SIZES", "TEST.AUG.MAX_SIZE", "TEST.AUG.FLIP"),
        drop("read only with TEST.AUG.ENABLED"),
    ),
    "FLOAT32_PRECISION": accept("", "torch's default", "set the matmul precision in a plugin"),
    "VIS_PERIOD": accept(0, "off", "training-time visualisation is not supported"),
    "GLOBAL.HACK": drop("internal to Detectron2"),
}


# ---------------------------------------------------------------------------------------
# Translation
# ---------------------------------------------------------------------------------------
def _detectron2_defaults(values: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """Detectron2's defaults for a config, and the project that adds keys to them."""
    arch = values.get("MODEL.META_ARCHITECTURE", CORE_DEFAULTS["MODEL.META_ARCHITECTURE"])
    head = values.get(_SEM + "NAME", CORE_DEFAULTS[_SEM + "NAME"])
    if arch == "PanopticDeepLab":
        return {
            **CORE_DEFAULTS,
            **DEEPLAB_DEFAULTS,
            **PANOPTIC_DEEPLAB_DEFAULTS,
        }, "Panoptic-DeepLab"
    if head in DEEPLAB_HEADS:
        return {**CORE_DEFAULTS, **DEEPLAB_DEFAULTS}, "DeepLab"
    return dict(CORE_DEFAULTS), ""


def _unread_group(key: str, ctx: Context) -> str | None:
    """Why a ``MODEL.<group>.*`` key is not read by the config's model, or None."""
    parts = key.split(".")
    if parts[0] != "MODEL" or len(parts) < 3:
        return None
    group, arch = parts[1], ctx.arch
    if group not in _GROUPS_READ[arch]:
        return f"MODEL.{group} is not read by {arch}"
    if group == "FPN" and ctx["MODEL.BACKBONE.NAME"] != FPN_BACKBONE:
        return f"MODEL.FPN is read only by {FPN_BACKBONE}"
    if group == "ROI_MASK_HEAD" and not ctx["MODEL.MASK_ON"]:
        return "read only with MODEL.MASK_ON"
    return None


def translate_detectron2_config(
    values: dict[str, Any], sources: dict[str, str] | None = None
) -> Detectron2Translation:
    """Translates a Detectron2 config (without its defaults) into panoptic2 keys.

    Args:
        values: flat Detectron2 key -> value, as the files and overrides set them (strings
            already decoded with :func:`~panoptic2.compat.detectron2_yaml.decode_value`).
        sources: Detectron2 key -> the file (or "the command line") that set it.

    Returns:
        The translation; see :class:`Detectron2Translation`.

    Raises:
        UnknownConfigKeyError: a key is not a key of Detectron2's config (with the project
            the config uses); names the source and the closest Detectron2 key.
        ConfigError: a key's value has no panoptic2 counterpart; names source, key, value, why.
    """
    sources = dict(sources or {})
    defaults, project = _detectron2_defaults(values)
    for key in values:
        if key not in defaults:
            suggestion = _suggest(key, list(defaults))
            hint = f" Did you mean '{suggestion}'?" if suggestion else ""
            within = f" with its {project} project" if project else ""
            raise UnknownConfigKeyError(
                f"Detectron2 config key '{key}' (from {_where(sources, key)}) is not a key of "
                f"Detectron2's config{within}, so it has no translation.{hint}"
            )
    complete = {**defaults, **values}
    ctx = Context(complete, sources)
    result = Detectron2Translation(project=project)
    setters: dict[str, str] = {}
    # The meta-architecture first: the rules of the other keys depend on it.
    order = ["MODEL.META_ARCHITECTURE", *(k for k in defaults if k != "MODEL.META_ARCHITECTURE")]
    for key in order:
        value, source = complete[key], sources.get(key, DETECTRON2_DEFAULTS)
        try:
            unread = _unread_group(key, ctx) if key != "MODEL.META_ARCHITECTURE" else None
            targets, note = ({}, unread) if unread else TRANSLATIONS[key](key, value, ctx)
        except Refused as e:
            raise ConfigError(
                f"Detectron2 config key '{key}' = {value!r} (from {_where(sources, key)}) cannot "
                f"be translated: {e}"
            ) from None
        record = KeyTranslation(key, value, source, _plain(targets), note)
        result.records.append(record)
        for target, target_value in targets.items():
            if target == PLUGINS:
                result.plugins.append(target_value)
                continue
            if target in setters and not equal(result.config[target], target_value):
                raise RuntimeError(f"TRANSLATIONS: {key} and {setters[target]} both set {target}")
            setters[target] = key
            result.config[target] = _plain(target_value)
    return result


def _plain(value: Any) -> Any:
    """Tuples -> lists, recursively (what panoptic2's config and YAML dumps hold)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _where(sources: dict[str, str], key: str) -> str:
    source = sources.get(key, DETECTRON2_DEFAULTS)
    return source if source in (_COMMAND_LINE, DETECTRON2_DEFAULTS) else f"file '{source}'"


@dataclass
class _TranslatedTree(_YamlTree):
    """A translated file's tree; its sources are already worded ("file 'x' (Detectron2 ...)")."""

    def source_of(self, key: str) -> str:
        return self.sources.get(key, f"file '{self.file}'")


def _nest(flat: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in flat.items():
        *parents, leaf = key.split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


def _log(translation: Detectron2Translation, filename: str) -> None:
    from_defaults = [r for r in translation.records if r.source == DETECTRON2_DEFAULTS]
    logger.info(
        "Translating Detectron2 config '%s'%s: %d keys set by files or overrides (below), %d "
        "from Detectron2's defaults (logged at DEBUG)",
        filename,
        f" ({translation.project} project)" if translation.project else "",
        len(translation.records) - len(from_defaults),
        len(from_defaults),
    )
    for record in translation.records:
        level = logging.DEBUG if record.source == DETECTRON2_DEFAULTS else logging.INFO
        logger.log(level, "Detectron2 %s [%s]", record.describe(), record.source)


def load_detectron2_tree(
    filename: str, overrides: Sequence[Any], config_format: str = "auto"
) -> tuple[_YamlTree, list[Any]] | None:
    """Reads a Detectron2 config file (and its overrides) as a translated panoptic2 tree.

    Args:
        filename: the YAML file (its ``_BASE_`` files are Detectron2's too).
        overrides: command-line tokens (``KEY VALUE`` / ``KEY=VALUE``); Detectron2 keys are
            translated with the file, keys only panoptic2 has are returned.
        config_format: one of :data:`CONFIG_FORMATS`; "auto" treats the file as Detectron2's
            when its chain sets ``VERSION: 2``.

    Returns:
        ``(tree, overrides left for panoptic2)``, or None when the file is not read as a
        Detectron2 config.

    Raises:
        ValueError: an unknown ``config_format``.
        ConfigError, UnknownConfigKeyError: see :func:`translate_detectron2_config`.
    """
    if config_format not in CONFIG_FORMATS:
        raise ValueError(f"config_format must be one of {CONFIG_FORMATS}, got {config_format!r}")
    if config_format == "panoptic2":
        return None
    raw = _load_tree(filename, loader=Detectron2YamlLoader)
    if config_format == "auto" and decode_value(raw.data.get("VERSION")) != 2:
        return None
    values = {k: decode_value(v) for k, v in _flatten(raw.data).items()}
    sources = {k: raw.sources.get(k, raw.file) for k in values}
    remaining: list[Any] = []
    known = {**CORE_DEFAULTS, **DEEPLAB_DEFAULTS, **PANOPTIC_DEEPLAB_DEFAULTS}
    for key, token in _split_overrides(overrides):
        if key in known:
            values[key] = decode_value(_decode_value(token, None))
            sources[key] = _COMMAND_LINE
        else:
            remaining += [key, token]
    translation = translate_detectron2_config(values, sources)
    _log(translation, raw.file)
    origin = {t: r for r in translation.records for t in r.targets}
    worded = {
        key: f"{_where(sources, r.detectron2_key)} (Detectron2 key '{r.detectron2_key}')"
        for key, r in origin.items()
    }
    plugins = [(module, raw.file) for module in dict.fromkeys(translation.plugins)]
    return _TranslatedTree(_nest(translation.config), worded, plugins, raw.file), remaining

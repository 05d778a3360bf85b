"""The rules of the Detectron2 -> panoptic2 config translation table.

:data:`panoptic2.compat.detectron2_config.TRANSLATIONS` maps each Detectron2 key to one of
these rules. A rule takes ``(key, value, context)``, where the context is the complete
Detectron2 config (its defaults, the files, the overrides), and returns ``(targets, note)``:
the panoptic2 keys and values it sets (none when the key is dropped) and why it dropped the
key or changed its value ("" for a plain copy). A value with no panoptic2 counterpart raises
:class:`Refused` with the reason; the caller names the file and the key.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .detectron2_defaults import DATASET_NAMES, DATASETS_WITHOUT_COUNTERPART

__all__ = [
    "DEEPLAB_BACKBONE",
    "DEEPLAB_HEADS",
    "DEEPLAB_PLUGIN",
    "FPN_BACKBONE",
    "MAPPERS",
    "PLUGINS",
    "Context",
    "Refused",
    "Rule",
    "accept",
    "amp",
    "by_head",
    "crop_enabled",
    "datasets",
    "deeplab_backbone",
    "deeplab_common_stride",
    "deeplab_in_features",
    "deeplab_v3_convs_dim",
    "device",
    "drop",
    "equal",
    "filter_empty",
    "ignore_value",
    "meta_architecture",
    "names",
    "num_classes",
    "panoptic_deeplab_dsconv",
    "same",
    "scheduler_is",
    "sem_seg_head_name",
    "semantic_dsconv",
    "to",
    "when",
]

DEEPLAB_PLUGIN = "projects.DeepLab.deeplab"
DEEPLAB_HEADS = ("DeepLabV3Head", "DeepLabV3PlusHead")
FPN_BACKBONE = "build_resnet_fpn_backbone"
DEEPLAB_BACKBONE = "build_resnet_deeplab_backbone"
PLUGINS = "PLUGINS"  # target of a rule that needs a plugin imported

# Meta-architecture -> the mapper Detectron2's trainer of that model feeds it with.
MAPPERS = {
    "GeneralizedRCNN": "DetectionMapper",
    "PanopticFPN": "PanopticFPNMapper",
    "PanopticDeepLab": "PanopticDeepLabMapper",
    "SemanticSegmentor": "SemanticSegmentationMapper",
}


class Refused(Exception):
    """A rule cannot translate its key's value; the message says why."""


# ---------------------------------------------------------------------------------------
# What a rule reads: the complete Detectron2 config
# ---------------------------------------------------------------------------------------
class Context:
    """The complete Detectron2 config (defaults + files + overrides) the rules look at."""

    def __init__(self, values: dict[str, Any], sources: dict[str, str]) -> None:
        self.values = values
        self.sources = sources

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    @property
    def arch(self) -> str:
        return self.values["MODEL.META_ARCHITECTURE"]

    @property
    def head(self) -> str:
        return self.values["MODEL.SEM_SEG_HEAD.NAME"]

    def stride(self, feature: str) -> int:
        """Stride of a ResNet output (Detectron2's dilation keys: res4 /d4, res5 /d5)."""
        dilation = {"res4": self.values.get("MODEL.RESNETS.RES4_DILATION", 1)}
        dilation["res5"] = self.values["MODEL.RESNETS.RES5_DILATION"]
        base = {"stem": 4, "res2": 4, "res3": 8, "res4": 16, "res5": 32}
        if feature not in base:
            raise Refused(f"'{feature}' is not a ResNet output (stem, res2 ... res5)")
        return base[feature] // dilation.get(feature, 1)

    def void_class(self) -> tuple[int, int] | None:
        """``(num_classes, ignore_label)`` of the model's dataset (the first training one, else
        the first test one) when its label space counts void as a class (COCO panoptic here:
        134 classes, void 0), else None."""
        from panoptic2.data import DatasetCatalog, MetadataCatalog  # late: data imports config

        named = []
        for key in ("DATASETS.TRAIN", "DATASETS.TEST"):
            value = self.values[key]
            named += [value] if isinstance(value, str) else list(value)
        name = DATASET_NAMES.get(named[0], named[0]) if named else None
        if name is None or name not in DatasetCatalog:
            return None
        meta = MetadataCatalog.get(name)
        num, ignore = meta.get("num_classes"), meta.get("ignore_label")
        if isinstance(num, int) and isinstance(ignore, int) and 0 <= ignore < num:
            return num, ignore
        return None


Rule = Callable[[str, Any, Context], tuple[dict[str, Any], str]]


# ---------------------------------------------------------------------------------------
# Rule builders
# ---------------------------------------------------------------------------------------
def same(key: str, value: Any, ctx: Context) -> tuple[dict[str, Any], str]:
    return {key: value}, ""


def to(name: str, note: str = "") -> Rule:
    return lambda key, value, ctx: ({name: value}, note)


def drop(reason: str) -> Rule:
    return lambda key, value, ctx: ({}, reason)


def accept(allowed: Any, reason: str, refusal: str) -> Rule:
    """Drops the key when its value is ``allowed`` (it then means nothing here), else refuses."""

    def rule(key: str, value: Any, ctx: Context) -> tuple[dict[str, Any], str]:
        if equal(value, allowed):
            return {}, reason
        raise Refused(refusal)

    return rule


def names(mapping: dict[str, str], what: str) -> Rule:
    """Translates a name through ``mapping``; other names have no counterpart."""

    def rule(key: str, value: Any, ctx: Context) -> tuple[dict[str, Any], str]:
        if value not in mapping:
            raise Refused(f"no panoptic2 counterpart (supported {what}: {sorted(mapping)})")
        ours = mapping[value]
        return {key: ours}, "" if ours == value else f"panoptic2 calls it '{ours}'"

    return rule


def when(condition: Callable[[Context], bool], otherwise: str, rule: Rule = same) -> Rule:
    """Applies ``rule`` when ``condition`` holds, else drops the key (it is not read)."""

    def conditional(key: str, value: Any, ctx: Context) -> tuple[dict[str, Any], str]:
        return rule(key, value, ctx) if condition(ctx) else ({}, otherwise)

    return conditional


def by_head(v3: Rule, v3_plus: Rule, panoptic_deeplab: Rule = same, fpn: Rule = same) -> Rule:
    """Dispatches a ``MODEL.SEM_SEG_HEAD`` key on the head that reads it."""
    rules = {"DeepLabV3Head": v3, "DeepLabV3PlusHead": v3_plus}
    rules |= {"PanopticDeepLabSemSegHead": panoptic_deeplab, "SemSegFPNHead": fpn}
    return lambda key, value, ctx: rules[ctx.head](key, value, ctx)


def equal(a: Any, b: Any) -> bool:
    """Equality with tuples and lists alike (YAML reads both)."""
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(equal(x, y) for x, y in zip(a, b))
    return a == b


# ---------------------------------------------------------------------------------------
# Rules with logic of their own
# ---------------------------------------------------------------------------------------
def meta_architecture(key: str, value: Any, ctx: Context) -> tuple[dict[str, Any], str]:
    if value not in MAPPERS:
        raise Refused(f"no panoptic2 meta-architecture; supported: {sorted(MAPPERS)}")
    mapper = MAPPERS[value]
    targets = {key: value, "INPUT.DATASET_MAPPER_NAME": mapper}
    note = f"the dataset mapper is {mapper}, as Detectron2's trainer of {value} uses"
    if value == "PanopticDeepLab":
        targets["MODEL.PANOPTIC_DEEPLAB.INSTANCE_SCORE_RULE"] = "centroid"
        note += "; instances are scored at their mask's centroid, as Detectron2 scores them"
    return targets, note


def sem_seg_head_name(key: str, value: Any, ctx: Context) -> tuple[dict[str, Any], str]:
    expected = {
        "PanopticFPN": ("SemSegFPNHead",),
        "PanopticDeepLab": ("PanopticDeepLabSemSegHead",),
        "SemanticSegmentor": DEEPLAB_HEADS,
    }[ctx.arch]
    if value not in expected:
        raise Refused(f"panoptic2's {ctx.arch} builds only {list(expected)}")
    if value not in DEEPLAB_HEADS:
        return {key: value}, ""
    targets = {key: value, PLUGINS: DEEPLAB_PLUGIN, "MODEL.DEEPLAB.LOSS_TOP_K": 0.2}
    pool: list[int] = []
    if ctx["INPUT.CROP.ENABLED"]:
        # Detectron2's DeepLab heads pool the ASPP image branch over the crop / encoder stride.
        in_features = ctx["MODEL.SEM_SEG_HEAD.IN_FEATURES"]
        stride = (
            ctx["MODEL.SEM_SEG_HEAD.COMMON_STRIDE"]
            if value == "DeepLabV3Head"
            else max(ctx.stride(f) for f in in_features)
        )
        crop = list(ctx["INPUT.CROP.SIZE"])
        if any(side % stride for side in crop):
            raise Refused(f"INPUT.CROP.SIZE {crop} is not divisible by the stride {stride}")
        pool = [side // stride for side in crop]
    targets["MODEL.DEEPLAB.ASPP_POOL_KERNEL_SIZE"] = pool
    return targets, (
        f"plugin {DEEPLAB_PLUGIN}; hard pixel mining keeps the top 20% of pixels and ASPP "
        f"pools over {pool or 'the whole image'}, as Detectron2's DeepLab heads do"
    )


def deeplab_in_features(key: str, value: Any, ctx: Context) -> tuple[dict[str, Any], str]:
    features = sorted(value, key=ctx.stride)
    if ctx.head == "DeepLabV3Head":
        if len(features) != 1:
            raise Refused("DeepLabV3Head reads exactly one feature")
        return {"MODEL.DEEPLAB.IN_FEATURE": features[0]}, ""
    targets = {"MODEL.DEEPLAB.IN_FEATURE": features[-1]}
    targets["MODEL.DEEPLAB.PROJECT_FEATURES"] = features[:-1]
    return targets, "the deepest feature feeds the ASPP, the others are projected"


def deeplab_common_stride(key: str, value: Any, ctx: Context) -> tuple[dict[str, Any], str]:
    features = ctx["MODEL.SEM_SEG_HEAD.IN_FEATURES"]
    stride = min(ctx.stride(f) for f in features)
    if value != stride:
        raise Refused(f"the output stride of IN_FEATURES {list(features)} is {stride}")
    return {}, "panoptic2's DeepLab heads take the output stride from their features"


def deeplab_v3_convs_dim(key: str, value: Any, ctx: Context) -> tuple[dict[str, Any], str]:
    if value != ctx["MODEL.SEM_SEG_HEAD.ASPP_CHANNELS"]:
        raise Refused("Detectron2's DeepLabV3Head needs CONVS_DIM == ASPP_CHANNELS")
    return {}, "DeepLabV3Head's classifier reads the ASPP_CHANNELS channels of the ASPP"


def num_classes(key: str, value: Any, ctx: Context) -> tuple[dict[str, Any], str]:
    void = ctx.void_class()
    if void is None:
        return {key: value}, ""
    num, ignore = void
    if value != num - 1:
        raise Refused(
            f"the training dataset has {num} classes with void ({ignore}) among them, so "
            f"Detectron2's model of it predicts {num - 1}"
        )
    if ctx.arch == "SemanticSegmentor":
        raise Refused("panoptic2's DeepLab heads predict every class of the label space")
    targets = {key: num, "MODEL.SEM_SEG_HEAD.IGNORE_VALUE": ignore}
    targets["MODEL.SEM_SEG_HEAD.PREDICT_IGNORE_CLASS"] = False
    return targets, (
        f"the label space counts void ({ignore}) as a class; the classifier keeps Detectron2's "
        f"{value} outputs"
    )


def ignore_value(key: str, value: Any, ctx: Context) -> tuple[dict[str, Any], str]:
    if ctx.arch in ("PanopticDeepLab", "SemanticSegmentor") and ctx.void_class() is not None:
        return {}, "the label space's void class is ignored (see NUM_CLASSES)"
    return {key: value}, ""


def semantic_dsconv(key: str, value: Any, ctx: Context) -> tuple[dict[str, Any], str]:
    targets = {key: value, "MODEL.INS_EMBED_HEAD.USE_DEPTHWISE_SEPARABLE_CONV": value}
    return targets, "Detectron2's instance head reads the semantic head's switch"


def panoptic_deeplab_dsconv(key: str, value: Any, ctx: Context) -> tuple[dict[str, Any], str]:
    if value != ctx["MODEL.SEM_SEG_HEAD.USE_DEPTHWISE_SEPARABLE_CONV"]:
        raise Refused("Detectron2 requires MODEL.SEM_SEG_HEAD.USE_DEPTHWISE_SEPARABLE_CONV equal")
    if not value:
        return {key: value}, ""
    targets = {key: value, "MODEL.INS_EMBED_HEAD.CENTER_HEAD_USE_DEPTHWISE_SEPARABLE_CONV": False}
    return targets, "Detectron2's center tower keeps two 3x3 convs"


def _dataset_name(name: str) -> tuple[str, str]:
    from panoptic2.data import DatasetCatalog  # late: data imports config

    if name in DATASET_NAMES:
        ours = DATASET_NAMES[name]
        return ours, "" if ours == name else f"'{name}' is '{ours}' in panoptic2"
    if name in DATASETS_WITHOUT_COUNTERPART:
        if name in DatasetCatalog:
            return name, f"'{name}' is registered here by a plugin"
        raise Refused(
            f"Detectron2's builtin dataset '{name}' has no panoptic2 counterpart "
            f"({DATASETS_WITHOUT_COUNTERPART[name]}); register a dataset under this name in a "
            "plugin (--plugin) or name another dataset"
        )
    return name, ""


def datasets(key: str, value: Any, ctx: Context) -> tuple[dict[str, Any], str]:
    requested = [value] if isinstance(value, str) else list(value)
    pairs = [_dataset_name(n) for n in requested]
    return {key: [ours for ours, _ in pairs]}, "; ".join(note for _, note in pairs if note)


def filter_empty(key: str, value: Any, ctx: Context) -> tuple[dict[str, Any], str]:
    if value and ctx.arch in ("PanopticDeepLab", "SemanticSegmentor"):
        return {key: False}, (
            "Detectron2 filters only dicts with instance 'annotations', which its panoptic and "
            "semantic datasets lack; panoptic2's filter also reads segments_info"
        )
    return {key: value}, ""


def amp(key: str, value: Any, ctx: Context) -> tuple[dict[str, Any], str]:
    if not value:
        return {key: value}, ""
    return {key: value, "SOLVER.AMP.DTYPE": "float16"}, "Detectron2's AMP is float16"


def device(key: str, value: Any, ctx: Context) -> tuple[dict[str, Any], str]:
    if key not in ctx.sources:
        return {}, "Detectron2's default 'cuda'; panoptic2's default 'auto' picks CUDA if present"
    return {key: value}, ""


def scheduler_is(name: str) -> Callable[[Context], bool]:
    return lambda ctx: ctx["SOLVER.LR_SCHEDULER_NAME"] == name


def deeplab_backbone(ctx: Context) -> bool:
    return ctx["MODEL.BACKBONE.NAME"] == DEEPLAB_BACKBONE


def crop_enabled(ctx: Context) -> bool:
    return bool(ctx["INPUT.CROP.ENABLED"])

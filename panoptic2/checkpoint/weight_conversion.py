"""Matching the names of foreign weights to ours: converters by format + suffix matching.

Loading weights trained elsewhere happens in two steps:

1. A **converter** from :data:`WEIGHT_CONVERTER_REGISTRY` renames the checkpoint's keys
   from its own convention into ours (``caffe2``: ``res2_0_branch2a_w -> res2.0.conv1.weight``;
   ``torchvision_resnet``: ``layer1.0.bn1.weight -> res2.0.conv1.norm.weight``;
   ``detectron2_rcnn``: ``backbone.fpn_lateral2.weight -> backbone.fpn.inner_blocks.0.0.
   weight``). Plugins register converters for new formats. ``"identity"`` keeps the names.
   A format that also stores some *values* differently gives its converter a ``prepare``
   attribute, ``prepare(state_dict) -> state_dict``, applied to the checkpoint's tensors
   before renaming (``caffe2``: background class first -> last, see
   :func:`~panoptic2.checkpoint.c2_model_loading.prepare_c2_weights`).
2. **Suffix matching** (:func:`align_state_dicts`) aligns each model key with the longest
   checkpoint key that is a dotted suffix of it, so ``layer1.0.conv1.weight`` loads into
   ``backbone.body.layer1.0.conv1.weight``. A checkpoint key claimed by several model keys
   (that are not the same shared tensor) is an error naming them all.

When no format is forced, :func:`choose_and_align` tries every registered converter and
keeps the one that matches the most model keys (identity wins ties), so a torchvision state
dict loads both into a module that keeps torchvision's names and into a Detectron2-style
ResNet.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

import torch
from tabulate import tabulate

from panoptic2.registry import WEIGHT_CONVERTER_REGISTRY

# Modules that register more converters, imported so that every lookup sees them.
from . import detectron2_deeplab_names  # noqa: F401
from .c2_model_loading import convert_c2_names, prepare_c2_weights
from .detectron2_rcnn_names import rename_detectron2_rcnn

__all__ = [
    "WEIGHT_CONVERTER_REGISTRY",
    "AlignmentResult",
    "align_state_dicts",
    "choose_and_align",
    "format_alignment_tables",
]


Converter = Callable[[list[str]], dict[str, str]]


@WEIGHT_CONVERTER_REGISTRY.register()
def identity(keys: list[str]) -> dict[str, str]:
    """Keeps every name (the checkpoint already uses our names, up to a prefix)."""
    return {k: k for k in keys}


@WEIGHT_CONVERTER_REGISTRY.register()
def caffe2(keys: list[str]) -> dict[str, str]:
    """Caffe2/Detectron blob names -> Detectron2 names (:func:`convert_c2_names`) -> ours
    (:func:`~panoptic2.checkpoint.detectron2_rcnn_names.rename_detectron2_rcnn`)."""
    detectron2_names = convert_c2_names(keys)
    ours = rename_detectron2_rcnn(detectron2_names.values())
    return {blob: ours[name] for blob, name in detectron2_names.items()}


# Caffe2 files store the background class first and ResNet norms without statistics.
caffe2.prepare = prepare_c2_weights  # type: ignore[attr-defined]


_TV_RESNET_LAYER = re.compile(r"^layer(\d+)\.(\d+)\.(.+)$")
_TV_RESNET_BLOCK_PARTS = {"downsample.0": "shortcut", "downsample.1": "shortcut.norm"}


@WEIGHT_CONVERTER_REGISTRY.register()
def torchvision_resnet(keys: list[str]) -> dict[str, str]:
    """torchvision ResNet names -> Detectron2-style ResNet names.

    ``conv1 -> stem.conv1``, ``bn1 -> stem.conv1.norm``, ``layer{i}.{j} -> res{i+1}.{j}``
    with ``bn{k} -> conv{k}.norm`` and ``downsample.{0,1} -> shortcut{,.norm}``,
    ``fc -> linear``. ``num_batches_tracked`` buffers are kept (a model with plain
    BatchNorm uses them; FrozenBatchNorm2d reports them as unused).
    """
    out: dict[str, str] = {}
    for key in keys:
        module, _, attr = key.rpartition(".")
        if module == "conv1":
            new = "stem.conv1"
        elif module == "bn1":
            new = "stem.conv1.norm"
        elif module == "fc":
            new = "linear"
        else:
            layer = _TV_RESNET_LAYER.match(module)
            if layer is None:
                continue
            stage, block, part = layer.groups()
            part = _TV_RESNET_BLOCK_PARTS.get(part, part)
            part = re.sub(r"^bn(\d+)$", r"conv\1.norm", part)
            new = f"res{int(stage) + 1}.{block}.{part}"
        out[key] = f"{new}.{attr}"
    return out


@WEIGHT_CONVERTER_REGISTRY.register()
def torchvision_mobilenet_v3(keys: list[str]) -> dict[str, str]:
    """torchvision MobileNetV3 names -> the names of its ``features`` Sequential.

    ``features.{i}.…`` becomes ``{i}.…`` so that suffix matching finds it under whatever
    attribute our backbone keeps the torchvision ``features`` module (``backbone.body.3.
    block.0.0.weight``); the classifier is dropped, a dense-prediction backbone has none.
    """
    return {k: k[len("features.") :] for k in keys if k.startswith("features.")}


class AlignmentResult(NamedTuple):
    """What :func:`align_state_dicts` matched.

    Attributes:
        state_dict: ``{our key: tensor}`` ready for ``model.load_state_dict(strict=False)``.
        matched: ``(our key, their original key, shape)`` for every loaded tensor.
        missing: our keys that received nothing (shape mismatches excluded).
        unexpected: their original keys that were not used (shape mismatches excluded).
        incorrect_shapes: ``(our key, their key, their shape, our shape)``, skipped.
        ambiguous: ``{their original key: [our keys]}`` for keys claimed more than once.
        converter: the name of the converter used.
    """

    state_dict: dict[str, torch.Tensor]
    matched: list[tuple[str, str, tuple[int, ...]]]
    missing: list[str]
    unexpected: list[str]
    incorrect_shapes: list[tuple[str, str, tuple[int, ...], tuple[int, ...]]]
    ambiguous: dict[str, list[str]]
    converter: str


def _same_storage(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether two model tensors are one shared parameter (tied weights)."""
    return a.shape == b.shape and a.data_ptr() == b.data_ptr() and a.numel() > 0


def align_state_dicts(
    model_state_dict: Mapping[str, torch.Tensor],
    ckpt_state_dict: Mapping[str, torch.Tensor],
    converter: str | Converter = "identity",
) -> AlignmentResult:
    """Matches checkpoint tensors to model keys by the longest dotted suffix.

    A checkpoint key ``k`` matches a model key ``m`` when ``m == k`` or ``m`` ends with
    ``"." + k``; each model key takes its longest match. Shape mismatches are skipped and
    reported. Ambiguities (one checkpoint key claimed by several model keys that are not
    the same shared tensor) are returned, not raised; :func:`choose_and_align` raises.

    Args:
        model_state_dict: the model's ``state_dict()``.
        ckpt_state_dict: the checkpoint's ``{name: tensor}``.
        converter: a name in :data:`WEIGHT_CONVERTER_REGISTRY` or a converter function.

    Returns:
        The :class:`AlignmentResult`.
    """
    name = converter if isinstance(converter, str) else getattr(converter, "__name__", "custom")
    convert = WEIGHT_CONVERTER_REGISTRY.get(converter) if isinstance(converter, str) else converter
    prepare = getattr(convert, "prepare", None)
    if prepare is not None:
        ckpt_state_dict = prepare(ckpt_state_dict)
    renamed = convert(list(ckpt_state_dict.keys()))
    # our-convention name -> their original name
    by_new_name = {new: old for old, new in renamed.items()}

    claims: dict[str, list[str]] = defaultdict(list)  # their new name -> our keys
    for model_key in model_state_dict:
        parts = model_key.split(".")
        # Dotted suffixes from the longest (the key itself) to the shortest.
        for i in range(len(parts)):
            suffix = ".".join(parts[i:])
            if suffix in by_new_name:
                claims[suffix].append(model_key)
                break

    result: dict[str, torch.Tensor] = {}
    matched, incorrect, ambiguous = [], [], {}
    used: set[str] = set()
    for new_name, model_keys in claims.items():
        old_name = by_new_name[new_name]
        first = model_state_dict[model_keys[0]]
        if len(model_keys) > 1 and not all(
            _same_storage(first, model_state_dict[k]) for k in model_keys[1:]
        ):
            ambiguous[old_name] = sorted(model_keys)
            continue
        value = ckpt_state_dict[old_name]
        for model_key in model_keys:
            expected = tuple(model_state_dict[model_key].shape)
            if tuple(value.shape) != expected:
                incorrect.append((model_key, old_name, tuple(value.shape), expected))
                continue
            result[model_key] = value
            matched.append((model_key, old_name, expected))
            used.add(old_name)
    # Shape mismatches are reported on their own, not again as missing/unused.
    skipped_ours = {ours for ours, _, _, _ in incorrect}
    skipped_theirs = {theirs for _, theirs, _, _ in incorrect}
    missing = [k for k in model_state_dict if k not in result and k not in skipped_ours]
    unexpected = [k for k in ckpt_state_dict if k not in used and k not in skipped_theirs]
    return AlignmentResult(result, matched, missing, unexpected, incorrect, ambiguous, name)


def choose_and_align(
    model_state_dict: Mapping[str, torch.Tensor],
    ckpt_state_dict: Mapping[str, torch.Tensor],
    converters: Sequence[str] | None = None,
) -> AlignmentResult:
    """Aligns with the converter that loads the most model keys.

    Args:
        model_state_dict: the model's ``state_dict()``.
        ckpt_state_dict: the checkpoint's ``{name: tensor}``.
        converters: names to try, in order of preference on ties; ``None`` tries
            ``identity`` first, then every other registered converter.

    Returns:
        The best :class:`AlignmentResult`.

    Raises:
        KeyError: a converter name is not registered (the message lists those that are).
        ValueError: the best alignment is ambiguous; the message names every checkpoint
            key and the model keys that claim it.
    """
    registered = sorted(name for name, _ in WEIGHT_CONVERTER_REGISTRY)
    if converters is None:
        converters = ["identity"] + [n for n in registered if n != "identity"]
    best: AlignmentResult | None = None
    for name in converters:
        if name not in WEIGHT_CONVERTER_REGISTRY:
            raise KeyError(
                f"Unknown weight format {name!r}; registered in WEIGHT_CONVERTER_REGISTRY: "
                f"{registered}"
            )
        candidate = align_state_dicts(model_state_dict, ckpt_state_dict, name)
        if best is None or len(candidate.matched) > len(best.matched):
            best = candidate
    if best is None:
        raise ValueError("choose_and_align needs at least one converter")
    if best.ambiguous:
        details = "; ".join(f"{k!r} -> {v}" for k, v in sorted(best.ambiguous.items()))
        raise ValueError(
            f"Ambiguous weight names (converter {best.converter!r}): each checkpoint key "
            f"below is the longest suffix of several model keys: {details}. Rename the "
            "checkpoint keys (e.g. add the module prefix) or load the weights into the "
            "sub-module they belong to."
        )
    return best


def _group(keys: Sequence[str]) -> dict[str, list[str]]:
    """Groups ``a.b.weight, a.b.bias`` into ``{"a.b": ["bias", "weight"]}``."""
    groups: dict[str, list[str]] = defaultdict(list)
    for key in keys:
        head, _, tail = key.rpartition(".")
        groups[head].append(tail)
    return groups


def _join(head: str, tails: Sequence[str]) -> str:
    tails = sorted(tails)
    inner = tails[0] if len(tails) == 1 else "{" + ",".join(tails) + "}"
    return f"{head}.{inner}" if head else inner


def format_alignment_tables(result: AlignmentResult) -> tuple[str, str]:
    """Renders an alignment as tables for the log.

    Matched tensors are grouped per module pair (``res2.0.conv1.norm.{bias,weight}``) to
    keep the table readable.

    Args:
        result: what :func:`align_state_dicts` returned.

    Returns:
        ``(matched_table, problems_table)``; the second is ``""`` when every model key was
        loaded and every checkpoint key used.
    """
    pairs: dict[tuple[str, str], list[tuple[str, tuple[int, ...]]]] = defaultdict(list)
    for ours, theirs, shape in result.matched:
        ours_head, _, ours_tail = ours.rpartition(".")
        theirs_head, _, theirs_tail = theirs.rpartition(".")
        if ours_tail == theirs_tail:
            pairs[(ours_head, theirs_head)].append((ours_tail, shape))
        else:  # a renamed leaf (Caffe2 "_s" -> "weight"): its own row
            pairs[(ours, theirs)].append(("", shape))
    rows = []
    for (ours_head, theirs_head), leaves in pairs.items():
        tails = [t for t, _ in leaves]
        shapes = " ".join(str(tuple(s)) for _, s in sorted(leaves))
        if tails == [""]:
            rows.append((ours_head, theirs_head, shapes))
        else:
            rows.append((_join(ours_head, tails), _join(theirs_head, tails), shapes))
    matched = tabulate(
        rows, headers=["Names in model", "<- names in checkpoint", "Shapes"], tablefmt="pipe"
    )
    problems = []
    for head, tails in sorted(_group(result.missing).items()):
        problems.append(("missing in checkpoint", _join(head, tails), ""))
    for head, tails in sorted(_group(result.unexpected).items()):
        problems.append(("unused from checkpoint", _join(head, tails), ""))
    for ours, theirs, shape_ckpt, shape_model in result.incorrect_shapes:
        problems.append(
            ("shape mismatch, skipped", f"{ours} <- {theirs}", f"{shape_ckpt} vs {shape_model}")
        )
    problem_table = (
        tabulate(problems, headers=["Problem", "Keys", "Checkpoint vs model"], tablefmt="pipe")
        if problems
        else ""
    )
    return matched, problem_table

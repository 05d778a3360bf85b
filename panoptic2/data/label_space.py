"""The label space of a dataset: classes, their ids, colours, ``label_divisor`` and void.

One :class:`LabelSpace` is built per dataset (from its metadata, or by hand) and passed to
every component that needs it: mappers, models and evaluators take it as a constructor
argument, and a model stores it in its checkpoints, so a trained model names its classes
without the dataset being registered. Nothing looks it up from inside a ``forward``.

Conventions (see ``ARCHITECTURE.md``):

* contiguous ids ``0..num_classes-1`` index ``classes`` and ``colors``; the panoptic label
  of a pixel is ``contiguous_id * label_divisor + instance`` (instance 0 for stuff and
  crowd);
* ``ignore_label`` is the void / ignored semantic label. It may be one of the contiguous ids
  (COCO: 0, named "void") or lie outside them (Cityscapes, VOC: 255); it is never a thing
  or a stuff class;
* every thing and stuff class has the id it has in the dataset's own files (COCO category
  ids, Cityscapes train ids, ...), which converters and evaluators map back to.

Panoptic FPN's semantic head predicts a "separated" map: 0 for any thing, ``1..S`` for the
stuff classes in increasing contiguous id, 255 ignored; :attr:`LabelSpace.panoptic_fpn_stuff_ids`
and :meth:`LabelSpace.panoptic_fpn_lut` are the one definition of that mapping.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "PANOPTIC_FPN_IGNORE",
    "PANOPTIC_FPN_THINGS",
    "LabelSpace",
    "label_space_from_config",
    "label_space_of_datasets",
]

# Labels of Panoptic FPN's separated semantic map (Detectron2's convention).
PANOPTIC_FPN_THINGS = 0
PANOPTIC_FPN_IGNORE = 255

Color = tuple[int, int, int]


def fallback_color(index: int) -> Color:
    """A deterministic, distinct-ish colour for classes without one."""
    return ((index * 67) % 256, (index * 151) % 256, (index * 29 + 80) % 256)


@dataclasses.dataclass(frozen=True)
class LabelSpace:
    """Classes of a dataset and how they are encoded.

    Attributes:
        classes: name of each contiguous id, ``len(classes) == num_classes``.
        colors: RGB colour of each contiguous id.
        thing_ids: contiguous ids of the thing classes, increasing.
        stuff_ids: contiguous ids of the stuff classes, increasing.
        thing_dataset_ids: the dataset's own id of each of ``thing_ids`` (same order).
        stuff_dataset_ids: the dataset's own id of each of ``stuff_ids`` (same order).
        label_divisor: ``panoptic = contiguous_id * label_divisor + instance``.
        ignore_label: the void / ignored semantic label.
    """

    classes: tuple[str, ...]
    colors: tuple[Color, ...]
    thing_ids: tuple[int, ...]
    stuff_ids: tuple[int, ...]
    thing_dataset_ids: tuple[int, ...]
    stuff_dataset_ids: tuple[int, ...]
    label_divisor: int
    ignore_label: int

    def __post_init__(self) -> None:
        # Normalise sequences to tuples of plain ints / str, so instances compare, hash and
        # serialise the same however they were built.
        set_ = object.__setattr__
        set_(self, "classes", tuple(str(c) for c in self.classes))
        set_(self, "colors", tuple(tuple(int(v) for v in c) for c in self.colors))
        for name in ("thing_ids", "stuff_ids", "thing_dataset_ids", "stuff_dataset_ids"):
            set_(self, name, tuple(int(v) for v in getattr(self, name)))
        set_(self, "label_divisor", int(self.label_divisor))
        set_(self, "ignore_label", int(self.ignore_label))
        self._validate()

    def _validate(self) -> None:
        n = len(self.classes)
        problems = []
        if len(self.colors) != n:
            problems.append(f"{len(self.colors)} colours for {n} classes")
        if any(len(c) != 3 or not all(0 <= v < 256 for v in c) for c in self.colors):
            problems.append("a colour is not an RGB triple of 0..255")
        for kind in ("thing", "stuff"):
            ids = getattr(self, f"{kind}_ids")
            dataset_ids = getattr(self, f"{kind}_dataset_ids")
            if list(ids) != sorted(set(ids)):
                problems.append(f"{kind}_ids {list(ids)} are not increasing and distinct")
            if len(dataset_ids) != len(ids):
                problems.append(f"{len(dataset_ids)} {kind}_dataset_ids for {len(ids)} {kind} ids")
            outside = [i for i in ids if not 0 <= i < n]
            if outside:
                problems.append(f"{kind} ids {outside} are outside 0..{n - 1}")
        both = sorted(set(self.thing_ids) & set(self.stuff_ids))
        if both:
            problems.append(f"ids {both} are both thing and stuff")
        if self.ignore_label in self.thing_ids or self.ignore_label in self.stuff_ids:
            problems.append(f"ignore_label {self.ignore_label} is a thing or stuff class")
        dataset_ids = self.thing_dataset_ids + self.stuff_dataset_ids
        if len(set(dataset_ids)) != len(dataset_ids):
            problems.append("a dataset id maps to two classes")
        if self.label_divisor <= 0:
            problems.append(f"label_divisor must be positive, got {self.label_divisor}")
        elif self.thing_ids and self.label_divisor == 1:
            problems.append("label_divisor 1 leaves no room for thing instances")
        if problems:
            raise ValueError("Invalid label space: " + "; ".join(problems))

    # ---------------------------------------------------------------- derived views
    @property
    def num_classes(self) -> int:
        """Number of contiguous ids (the semantic head's output channels)."""
        return len(self.classes)

    @property
    def thing_dataset_id_to_contiguous_id(self) -> dict[int, int]:
        return dict(zip(self.thing_dataset_ids, self.thing_ids))

    @property
    def stuff_dataset_id_to_contiguous_id(self) -> dict[int, int]:
        return dict(zip(self.stuff_dataset_ids, self.stuff_ids))

    @property
    def dataset_id_to_contiguous_id(self) -> dict[int, int]:
        """Every thing and stuff class, dataset id -> contiguous id."""
        return {**self.thing_dataset_id_to_contiguous_id, **self.stuff_dataset_id_to_contiguous_id}

    @property
    def contiguous_id_to_dataset_id(self) -> dict[int, int]:
        return {c: d for d, c in self.dataset_id_to_contiguous_id.items()}

    @property
    def thing_classes(self) -> list[str]:
        return [self.classes[i] for i in self.thing_ids]

    @property
    def stuff_classes(self) -> list[str]:
        return [self.classes[i] for i in self.stuff_ids]

    def is_thing(self, contiguous_id: int) -> bool:
        return int(contiguous_id) in self.thing_ids

    @property
    def panoptic_fpn_stuff_ids(self) -> tuple[int, ...]:
        """Contiguous id of each stuff label ``s`` (1..S) of Panoptic FPN's separated map,
        at index ``s - 1``."""
        return self.stuff_ids

    @property
    def panoptic_fpn_classes(self) -> tuple[str, ...]:
        """Names of the separated map's labels: ``"things"``, then the stuff classes."""
        return ("things", *self.stuff_classes)

    def panoptic_fpn_space(self) -> LabelSpace:
        """The label space of Panoptic FPN's separated map: ``"things"`` (grey) then the
        stuff classes with their colours, ignore 255, no instances."""
        ids = range(len(self.stuff_ids) + 1)
        return LabelSpace(
            classes=self.panoptic_fpn_classes,
            colors=[(128, 128, 128), *(self.colors[i] for i in self.stuff_ids)],
            thing_ids=(),
            stuff_ids=ids,
            thing_dataset_ids=(),
            stuff_dataset_ids=ids,
            label_divisor=1,
            ignore_label=PANOPTIC_FPN_IGNORE,
        )

    def panoptic_fpn_lut(self) -> np.ndarray:
        """Contiguous id -> separated label: things 0, stuff ``1..S``, others 255.

        Returns:
            ``(max(num_classes, ignore_label + 1),)`` int64 table, so the ignore label
            indexes it too.
        """
        if len(self.stuff_ids) >= PANOPTIC_FPN_IGNORE:
            raise ValueError(f"{len(self.stuff_ids)} stuff classes do not fit below 255")
        lut = np.full(max(self.num_classes, self.ignore_label + 1), PANOPTIC_FPN_IGNORE, np.int64)
        lut[list(self.thing_ids)] = PANOPTIC_FPN_THINGS
        lut[list(self.stuff_ids)] = np.arange(1, len(self.stuff_ids) + 1)
        return lut

    # ---------------------------------------------------------------- constructors
    @classmethod
    def from_metadata(cls, meta: Any, name: str = "") -> LabelSpace:
        """Builds the label space from a dataset's metadata (a ``Metadata`` or a mapping).

        Reads ``classes`` (or ``thing_classes`` + ``stuff_classes``), ``num_classes``,
        ``colors`` (or ``thing_colors`` + ``stuff_colors``; else generated),
        ``thing_dataset_id_to_contiguous_id`` (or ``thing_ids``),
        ``stuff_dataset_id_to_contiguous_id`` (else, when ``classes`` or ``num_classes`` is
        given, every class that is neither a thing nor the ignore label, with its contiguous
        id as dataset id), ``label_divisor`` (default 1000, or 1 without things: label maps
        built from dataset dicts encode the same segments with any divisor above the
        number of instances) and ``ignore_label``
        (default 255). Without ``classes`` and ``num_classes``, the classes are ids
        ``0..max`` of the id maps (Detectron2-style instance-dataset metadata).

        Args:
            meta: the metadata.
            name: the dataset's name, for error messages.

        Raises:
            ValueError: a required field is missing or the fields are inconsistent; the
                message names the dataset.
        """
        fields = meta.as_dict() if hasattr(meta, "as_dict") else dict(meta)
        where = f"dataset '{name or fields.get('name', '?')}'"
        try:
            return cls._from_fields(fields)
        except (KeyError, ValueError, TypeError) as e:
            msg = e.args[0] if isinstance(e, KeyError) else str(e)
            raise ValueError(f"The metadata of {where} does not give a label space: {msg}") from e

    @classmethod
    def _from_fields(cls, m: Mapping[str, Any]) -> LabelSpace:
        things = {int(k): int(v) for k, v in m.get("thing_dataset_id_to_contiguous_id", {}).items()}
        if not things and m.get("thing_ids"):
            things = {int(t): int(t) for t in m["thing_ids"]}
        ignore = int(m.get("ignore_label", 255))
        classes = m.get("classes")
        stuff = {int(k): int(v) for k, v in m.get("stuff_dataset_id_to_contiguous_id", {}).items()}
        num = m.get("num_classes", len(classes) if classes is not None else None)
        if num is None:
            # Detectron2-style metadata of an instance dataset: only the id maps say which
            # contiguous ids exist.
            ids = [*things.values(), *stuff.values()]
            if not ids:
                raise KeyError("it has neither 'classes', 'num_classes' nor thing/stuff id maps")
            num = max(ids) + 1
        elif "stuff_dataset_id_to_contiguous_id" not in m:
            taken = set(things.values()) | {ignore}
            stuff = {c: c for c in range(int(num)) if c not in taken}
        num = int(num)
        thing_pairs = sorted(things.items(), key=lambda kv: kv[1])
        stuff_pairs = sorted(stuff.items(), key=lambda kv: kv[1])
        if classes is None:
            classes = [f"class_{i}" for i in range(num)]
            for key, pairs in (("thing_classes", thing_pairs), ("stuff_classes", stuff_pairs)):
                for (_, c), n in zip(pairs, m.get(key) or []):
                    classes[c] = n
        if len(classes) != num:
            raise ValueError(f"'classes' has {len(classes)} names but num_classes is {num}")
        colors = m.get("colors")
        if colors is None:
            colors = [fallback_color(i) for i in range(num)]
            for key, pairs in (("thing_colors", thing_pairs), ("stuff_colors", stuff_pairs)):
                for (_, c), color in zip(pairs, m.get(key) or []):
                    colors[c] = color
        # Without a stored label map, any divisor above the instance count encodes the same
        # segments; Detectron2's 1000 fits every dataset it ships.
        divisor = m.get("label_divisor", 1000 if things else 1)
        return cls(
            classes=classes,
            colors=colors,
            thing_ids=[c for _, c in thing_pairs],
            stuff_ids=[c for _, c in stuff_pairs],
            thing_dataset_ids=[d for d, _ in thing_pairs],
            stuff_dataset_ids=[d for d, _ in stuff_pairs],
            label_divisor=int(divisor),
            ignore_label=ignore,
        )

    @classmethod
    def from_categories(
        cls, categories: Sequence[Mapping[str, Any]], *, label_divisor: int = 256
    ) -> LabelSpace:
        """COCO-style categories -> DeepLab2's COCO label space.

        Things sorted by dataset id get contiguous ids ``1..T``, then stuff sorted by dataset
        id ``T+1..T+S``; 0 is ``"void"`` and the ignore label. For the 133 COCO panoptic
        categories: things 1..80, stuff 81..133, 134 classes.

        Args:
            categories: dicts with ``id`` (never 0), ``name``, ``isthing`` and optionally
                ``color``.
            label_divisor: the label divisor (COCO: 256).

        Raises:
            ValueError: a category lacks a field, uses id 0, or an id appears twice.
        """
        seen: set[int] = set()
        for cat in categories:
            missing = [k for k in ("id", "name", "isthing") if k not in cat]
            if missing:
                raise ValueError(f"Category {cat!r} lacks the field(s) {missing}.")
            if int(cat["id"]) == 0:
                raise ValueError(f"Category {cat!r}: id 0 is reserved for void.")
            if int(cat["id"]) in seen:
                raise ValueError(f"Category id {cat['id']} appears twice in the category list.")
            seen.add(int(cat["id"]))
        things = sorted((c for c in categories if c["isthing"]), key=lambda c: int(c["id"]))
        stuff = sorted((c for c in categories if not c["isthing"]), key=lambda c: int(c["id"]))
        ordered = things + stuff
        return cls(
            classes=["void"] + [c["name"] for c in ordered],
            colors=[(0, 0, 0)]
            + [tuple(c.get("color", fallback_color(i + 1))) for i, c in enumerate(ordered)],
            thing_ids=range(1, len(things) + 1),
            stuff_ids=range(len(things) + 1, len(ordered) + 1),
            thing_dataset_ids=[int(c["id"]) for c in things],
            stuff_dataset_ids=[int(c["id"]) for c in stuff],
            label_divisor=label_divisor,
            ignore_label=0,
        )

    # ---------------------------------------------------------------- serialisation
    def as_metadata(self) -> dict[str, Any]:
        """The Detectron2-style metadata fields of this label space (lists, plain types).

        Returns:
            ``classes``, ``colors``, ``thing_classes``, ``thing_colors``, ``stuff_classes``,
            ``stuff_colors``, ``thing_dataset_id_to_contiguous_id``,
            ``stuff_dataset_id_to_contiguous_id``, ``thing_ids``, ``label_divisor``,
            ``ignore_label`` and ``num_classes``.
        """
        colors = [list(c) for c in self.colors]
        return {
            "classes": list(self.classes),
            "colors": colors,
            "thing_classes": self.thing_classes,
            "thing_colors": [colors[i] for i in self.thing_ids],
            "stuff_classes": self.stuff_classes,
            "stuff_colors": [colors[i] for i in self.stuff_ids],
            "thing_dataset_id_to_contiguous_id": self.thing_dataset_id_to_contiguous_id,
            "stuff_dataset_id_to_contiguous_id": self.stuff_dataset_id_to_contiguous_id,
            "thing_ids": list(self.thing_ids),
            "label_divisor": self.label_divisor,
            "ignore_label": self.ignore_label,
            "num_classes": self.num_classes,
        }

    def to_dict(self) -> dict[str, Any]:
        """Plain lists, ints and strings (loadable with ``torch.load(weights_only=True)``)."""
        return {
            f.name: [list(v) for v in getattr(self, f.name)]
            if f.name == "colors"
            else list(getattr(self, f.name))
            if isinstance(getattr(self, f.name), tuple)
            else getattr(self, f.name)
            for f in dataclasses.fields(self)
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LabelSpace:
        """Inverse of :meth:`to_dict`; unknown or missing keys are a ValueError."""
        names = {f.name for f in dataclasses.fields(cls)}
        if set(data) != names:
            raise ValueError(
                f"A stored label space must have the keys {sorted(names)}, got {sorted(data)}"
            )
        return cls(**data)

    def difference(self, other: LabelSpace) -> str:
        """The fields in which ``other`` differs, e.g. ``"classes ('a',) vs ('b',)"``."""
        parts = []
        for f in dataclasses.fields(self):
            mine, theirs = getattr(self, f.name), getattr(other, f.name)
            if mine != theirs:
                parts.append(f"{f.name} {_short(mine)} vs {_short(theirs)}")
        return "; ".join(parts) or "none"

    def __repr__(self) -> str:
        return (
            f"LabelSpace({self.num_classes} classes, things {list(self.thing_ids)}, "
            f"{len(self.stuff_ids)} stuff, label_divisor {self.label_divisor}, "
            f"ignore_label {self.ignore_label})"
        )


def _short(value: Any, limit: int = 8) -> str:
    if isinstance(value, tuple) and len(value) > limit:
        return f"({', '.join(map(repr, value[:limit]))}, ... {len(value)} in all)"
    return repr(value)


def label_space_of_datasets(names: Sequence[str]) -> LabelSpace:
    """The one label space shared by the registered datasets ``names``.

    Args:
        names: dataset names with metadata in ``MetadataCatalog``.

    Returns:
        The label space of ``names[0]``.

    Raises:
        ValueError: ``names`` is empty, a dataset's metadata has no label space, or two
            datasets' label spaces differ (the message names both).
    """
    from .catalog import MetadataCatalog

    names = list(names)
    if not names:
        raise ValueError("label_space_of_datasets(): no dataset names given")
    spaces = [LabelSpace.from_metadata(MetadataCatalog.get(n), n) for n in names]
    for name, space in zip(names[1:], spaces[1:]):
        if space != spaces[0]:
            raise ValueError(
                f"Datasets '{names[0]}' and '{name}' have different label spaces "
                f"({spaces[0].difference(space)}); one model and one mapper need one label space"
            )
    return spaces[0]


def label_space_from_config(cfg: Any) -> LabelSpace | None:
    """The label space of the datasets a config trains and evaluates on.

    Args:
        cfg: a config with ``DATASETS.TRAIN`` and ``DATASETS.TEST``.

    Returns:
        The one label space of all those datasets, or None when the config names none.

    Raises:
        ValueError: the datasets' label spaces differ, or one has none (see
            :func:`label_space_of_datasets`).
    """
    names = list(dict.fromkeys([*cfg.DATASETS.TRAIN, *cfg.DATASETS.TEST]))
    return label_space_of_datasets(names) if names else None

"""What a checkpoint load put into the model, and the check that evaluation needs it whole.

:class:`~panoptic2.checkpoint.Checkpointer` records a :class:`LoadReport` after every
``load`` (exact-name and foreign weights alike), so callers decide from data, not from log
lines, whether the model they are about to evaluate is the trained one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch.nn.parameter import is_lazy

__all__ = ["IncompleteWeightsError", "LoadReport", "require_loaded_weights"]


class IncompleteWeightsError(RuntimeError):
    """A model's weights did not (all) load: a whole-model checkpoint that leaves tensors
    unloaded, or evaluation of a model whose weights did not load."""


def _numel(tensor: torch.Tensor) -> int:
    # A lazy module's parameters have no size until its first forward pass.
    return 0 if is_lazy(tensor) else tensor.numel()


@dataclass(frozen=True)
class LoadReport:
    """Which of the model's tensors a load filled.

    The model's tensors are its ``state_dict()`` entries (parameters and persistent
    buffers); a tensor counts as loaded only when the checkpoint gave it a value of the
    right shape.

    Attributes:
        source: the file loaded; ``""`` when no weights were given.
        loaded: model keys that received a tensor.
        missing: model keys the checkpoint has nothing for.
        incorrect_shapes: model keys whose checkpoint tensor had another shape (skipped).
        unexpected: checkpoint keys that went nowhere in the model.
        loaded_numel: number of elements in the loaded tensors.
        total_numel: number of elements in all of the model's tensors.
        whole_model: whether the checkpoint holds the whole model (see
            :class:`~panoptic2.checkpoint.Checkpointer`), not only a backbone.
    """

    source: str
    loaded: tuple[str, ...]
    missing: tuple[str, ...]
    incorrect_shapes: tuple[str, ...]
    unexpected: tuple[str, ...]
    loaded_numel: int
    total_numel: int
    whole_model: bool = False

    @classmethod
    def build(
        cls,
        source: str,
        model_state: Mapping[str, torch.Tensor],
        *,
        missing: Sequence[str] = (),
        incorrect_shapes: Sequence[str] = (),
        unexpected: Sequence[str] = (),
        whole_model: bool = False,
    ) -> LoadReport:
        """Makes a report from what did not load; every other model key loaded.

        Args:
            source: the file loaded, ``""`` for none.
            model_state: the model's ``state_dict()``.
            missing: model keys without a checkpoint tensor.
            incorrect_shapes: model keys whose checkpoint tensor had another shape.
            unexpected: checkpoint keys not used.
            whole_model: whether the checkpoint holds the whole model.

        Returns:
            The report.
        """
        missing_set, wrong_shape_set = set(missing), set(incorrect_shapes)
        not_loaded = missing_set | wrong_shape_set
        loaded = tuple(k for k in model_state if k not in not_loaded)
        return cls(
            source=source,
            loaded=loaded,
            missing=tuple(k for k in model_state if k in missing_set),
            incorrect_shapes=tuple(k for k in model_state if k in wrong_shape_set),
            unexpected=tuple(unexpected),
            loaded_numel=sum(_numel(model_state[k]) for k in loaded),
            total_numel=sum(_numel(v) for v in model_state.values()),
            whole_model=whole_model,
        )

    @classmethod
    def nothing(cls, model_state: Mapping[str, torch.Tensor]) -> LoadReport:
        """The report of a load that was given no file."""
        return cls.build("", model_state, missing=list(model_state))

    @property
    def not_loaded(self) -> tuple[str, ...]:
        """Model keys that kept their initial value (missing or of another shape)."""
        return self.missing + self.incorrect_shapes

    @property
    def fraction(self) -> float:
        """Share of the model's elements that came from the checkpoint (1.0 for no tensors)."""
        return 1.0 if self.total_numel == 0 else self.loaded_numel / self.total_numel


def require_loaded_weights(
    report: LoadReport | None,
    *,
    min_fraction: float = 0.9,
    how_to_allow: str = "",
    max_names: int = 20,
) -> None:
    """Raises unless a checkpoint gave the model at least ``min_fraction`` of its elements.

    Elements, not tensors, are counted: the share of the model's numbers that came from
    the file is what decides whether its outputs are the trained model's. Counting tensors
    would let many tiny ones (biases, norm statistics, ``num_batches_tracked``) outweigh
    the convolutions that hold nearly all of a network's weights.

    Args:
        report: :attr:`Checkpointer.last_load_report`; ``None`` (nothing loaded yet) counts
            as no weights.
        min_fraction: the least share of elements that must have loaded.
        how_to_allow: appended to the message (how the caller's user can accept this).
        max_names: the most tensor names listed in the message.

    Raises:
        IncompleteWeightsError: no weights were given, or too little of the model loaded;
            the message lists the first ``max_names`` tensors that did not load.
    """
    suffix = f" {how_to_allow}" if how_to_allow else ""
    if report is None or not report.source:
        raise IncompleteWeightsError(
            "No weights were loaded (no weight file was given and there is no checkpoint "
            "to resume from): the model is randomly initialised, so its metrics would mean "
            f"nothing.{suffix}"
        )
    if report.fraction >= min_fraction:
        return
    not_loaded = report.not_loaded
    shown = ", ".join(not_loaded[:max_names])
    more = f" and {len(not_loaded) - max_names} more" if len(not_loaded) > max_names else ""
    shapes = (
        f" ({len(report.incorrect_shapes)} of them with another shape in the file)"
        if report.incorrect_shapes
        else ""
    )
    raise IncompleteWeightsError(
        f"Only {report.fraction:.1%} of the model's weights (by element count; "
        f"{len(report.loaded)} of {len(report.loaded) + len(not_loaded)} tensors) loaded from "
        f"{report.source}; at least {min_fraction:.0%} are needed to evaluate it. It may be a "
        f"checkpoint of another model. {len(not_loaded)} tensors did not load{shapes}: "
        f"{shown}{more}.{suffix}"
    )

"""Export adapters: a model's inference as a function of one image tensor.

A meta-architecture takes a list of dicts and returns structures (``Instances``,
``segments_info`` lists), which no export format holds. Its adapter, registered in
``EXPORT_ADAPTER_REGISTRY`` under the meta-architecture's name, is an ``nn.Module`` whose
``forward`` takes the normalised-to-be image and returns a tuple of tensors named by
``output_names``; ``torch.export``, TorchScript tracing and ONNX all export that.

Contract of every adapter's ``forward(image)``:

* ``image``: (1, 3, H, W) float32 in 0-255, channel order ``INPUT.FORMAT``, already resized as
  the test transform does (``INPUT.MIN_SIZE_TEST``), H and W multiples of
  :attr:`ExportAdapter.size_divisibility` (pad the bottom and right with the mean colour,
  i.e. zeros after normalisation, as the model does).
* outputs at the input size, so crop and resize them back to the original image as needed.

With ``postprocess=False`` an adapter returns the network outputs only
(:attr:`ExportAdapter.network_output_names`): what ONNX exports.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from panoptic2.modeling.meta_arch.panoptic_deeplab import PanopticDeepLab, thing_class_table
from panoptic2.ops import extension
from panoptic2.registry import EXPORT_ADAPTER_REGISTRY

__all__ = [
    "ExportAdapter",
    "PanopticDeepLabExport",
    "RCNNNetworkExport",
    "build_export_adapter",
]


class ExportAdapter(nn.Module):
    """Base of the adapters: holds the model and normalises the image.

    Subclasses set the class attributes and implement :meth:`forward`.

    Attributes:
        network_output_names: outputs computed by the network alone, in order.
        postprocess_output_names: outputs appended with ``postprocess=True``.
        size_divisibility: H and W of the input must be multiples of it.

    Args:
        model: the model, in eval mode, not compiled.
        postprocess: also return :attr:`postprocess_output_names`.
    """

    network_output_names: tuple[str, ...] = ()
    postprocess_output_names: tuple[str, ...] = ()
    # Whether torch.jit.trace records the post-processing faithfully. Not when it has a
    # data-dependent size that reaches an op as a Python int (the trace keeps the number
    # seen at export as a constant).
    postprocess_traceable: bool = True

    def __init__(self, model: nn.Module, *, postprocess: bool = True) -> None:
        super().__init__()
        if model.training:
            raise ValueError("Export adapters need the model in eval mode (model.eval())")
        if postprocess and not self.postprocess_output_names:
            raise ValueError(
                f"{type(self).__name__} has no post-processing to export; use postprocess=False"
            )
        self.model = model
        self.postprocess = postprocess
        self.size_divisibility = self._size_divisibility(model)

    @property
    def output_names(self) -> tuple[str, ...]:
        """Names of :meth:`forward`'s outputs, in order."""
        if self.postprocess:
            return self.network_output_names + self.postprocess_output_names
        return self.network_output_names

    @staticmethod
    def _size_divisibility(model: nn.Module) -> int:
        """The multiple the input sides must be: the model's padding multiple, and at least
        the largest stride of its backbone, so every feature map aligns with the pixels."""
        strides = [s.stride for s in model.backbone.output_shape().values()]
        own = int(getattr(model, "size_divisibility", 0) or 0)
        return max([own, model.backbone.size_divisibility, *strides])

    def pad(self, image: torch.Tensor, extra_blocks: int = 0) -> torch.Tensor:
        """Pads a (1, 3, h, w) float image at the bottom and right with the mean colour (zero
        after normalisation, as the model pads) to multiples of :attr:`size_divisibility`.

        Args:
            image: (1, 3, h, w) float32, 0-255.
            extra_blocks: pad this many more multiples on each side (a second size to check
                an export on).

        Returns:
            (1, 3, H, W) float32, H and W the next multiples (plus the extra ones).
        """
        k = self.size_divisibility
        h, w = image.shape[-2:]
        height, width = -(-h // k) * k + extra_blocks * k, -(-w // k) * k + extra_blocks * k
        mean = self.model.pixel_mean.to(image.device, image.dtype)
        out = mean.expand(1, -1, height, width).clone()
        out[:, :, :h, :w] = image
        return out

    def normalize(self, image: torch.Tensor) -> torch.Tensor:
        """(1, 3, H, W) 0-255 image -> the backbone's input."""
        return (image - self.model.pixel_mean) / self.model.pixel_std

    def check_input(self, image: torch.Tensor) -> None:
        """Raises ValueError for an input outside the contract (eager calls only: an
        exported program carries the same rules as shape constraints)."""
        if torch.compiler.is_compiling() or torch.jit.is_tracing():
            return
        k = self.size_divisibility
        if image.dim() != 4 or image.shape[:2] != (1, 3) or image.dtype != torch.float32:
            raise ValueError(
                f"{type(self).__name__} takes a (1, 3, H, W) float32 image, got "
                f"{tuple(image.shape)} {image.dtype}"
            )
        if image.shape[2] % k or image.shape[3] % k:
            raise ValueError(
                f"{type(self).__name__}: H and W must be multiples of {k}, got "
                f"{tuple(image.shape[2:])}; pad the image (bottom, right) first"
            )


@EXPORT_ADAPTER_REGISTRY.register(name="PanopticDeepLab")
class PanopticDeepLabExport(ExportAdapter):
    """Panoptic-DeepLab, its post-processing included.

    Outputs: ``sem_seg`` (1, C, H, W) float logits, ``center_heatmap`` (1, 1, H, W),
    ``offsets`` (1, 2, H, W) (dy, dx); with post-processing also ``panoptic_seg`` (1, H, W)
    int64 (``class * label_divisor + instance``, -1 void; the ``id_map`` of the model's
    ``panoptic_seg``) and ``centers`` (K, 2) int64 (y, x). Grouping and merging run in the
    ``panoptic2._C`` ops (``torch.ops.panoptic2.*``), which must be loaded to run it.
    """

    network_output_names = ("sem_seg", "center_heatmap", "offsets")
    postprocess_output_names = ("panoptic_seg", "centers")
    # The number of centers reaches the merge op as an int: a trace would fix it.
    postprocess_traceable = False

    def __init__(self, model: PanopticDeepLab, *, postprocess: bool = True) -> None:
        super().__init__(model, postprocess=postprocess)
        if postprocess:
            # Grouping and merging are exported as calls of the compiled ops.
            extension.require_ops()
            space = model.require_label_space()
            table = thing_class_table(space, model.sem_seg_head.num_classes, model.device)
            self.register_buffer("is_thing_class", table, persistent=False)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        self.check_input(image)
        model = self.model
        features = model.backbone(self.normalize(image))
        sem_seg, _ = model.sem_seg_head(features)
        center, offsets, _ = model.ins_embed_head(features)
        if not self.postprocess:
            return sem_seg, center, offsets
        # The class's method, not an instance attribute a compiled model may carry.
        panoptic, centers = PanopticDeepLab.panoptic_maps(
            model, sem_seg[0], center[0], offsets[0], self.is_thing_class
        )
        return sem_seg, center, offsets, panoptic[None], centers


@EXPORT_ADAPTER_REGISTRY.register(name="GeneralizedRCNN")
@EXPORT_ADAPTER_REGISTRY.register(name="PanopticFPN")
class RCNNNetworkExport(ExportAdapter):
    """The dense network of Panoptic FPN / Mask R-CNN: backbone, FPN, semantic head and RPN
    head. Proposal selection, the ROI heads and panoptic fusion are not exported (their
    branches depend on data: see ``tools/export_model.py``); there is no post-processing.

    Outputs: ``sem_seg`` (1, S + 1, H, W) float logits of Panoptic FPN's separated label
    space (absent for GeneralizedRCNN), then for each RPN level ``l`` (the RPN's
    ``in_features``, e.g. p2..p6) ``rpn_objectness_<l>`` (1, A, H_l, W_l) logits and
    ``rpn_deltas_<l>`` (1, A * 4, H_l, W_l) anchor deltas.
    """

    def __init__(self, model: nn.Module, *, postprocess: bool = False) -> None:
        super().__init__(model, postprocess=postprocess)
        self._levels = tuple(model.proposal_generator.in_features)
        sem = ("sem_seg",) if hasattr(model, "sem_seg_head") else ()
        self.network_output_names = sem + tuple(
            f"rpn_{kind}_{level}" for level in self._levels for kind in ("objectness", "deltas")
        )

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        self.check_input(image)
        features = self.model.backbone(self.normalize(image))
        outputs: list[torch.Tensor] = []
        if hasattr(self.model, "sem_seg_head"):
            outputs.append(self.model.sem_seg_head(features)[0])
        logits, deltas = self.model.proposal_generator.rpn_head(
            [features[level] for level in self._levels]
        )
        for level_logits, level_deltas in zip(logits, deltas):
            outputs += [level_logits, level_deltas]
        return tuple(outputs)


def build_export_adapter(model: nn.Module, meta_architecture: str, **kwargs: Any) -> ExportAdapter:
    """The registered adapter of ``meta_architecture`` around ``model``.

    Raises:
        UnknownNameError: no adapter is registered for that meta-architecture.
    """
    return EXPORT_ADAPTER_REGISTRY.get(meta_architecture)(model, **kwargs)

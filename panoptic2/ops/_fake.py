"""Fake (meta) kernels of every ``panoptic2._C`` op that returns tensors.

They give output shapes and dtypes without computing, so FakeTensor tracing,
``torch.compile`` and ``torch.library.opcheck`` handle ``torch.ops.panoptic2.group_pixels``,
``merge_semantic_and_instance`` and ``panoptic_deeplab_postprocess``.
Importing this module registers them. :mod:`panoptic2.ops.extension` imports it once, right
after loading ``_C``, so they exist whenever a kernel can be reached; the C++ schemas name
this module (``m.set_python_module`` in ``csrc/ops.cpp``), so torch's error says what to
import when a fake kernel is needed first. Imported on its own, it loads ``_C`` itself.
"""

from __future__ import annotations

import torch

from panoptic2.ops import extension

__all__: list[str] = []

# The ops must exist to take a fake kernel. Lock-free, so that extension can import this
# module while it holds its load lock; raises ImportError naming the ops a stale _C lacks.
extension._import_extension()


@torch.library.register_fake("panoptic2::group_pixels")
def _fake_group_pixels(
    centers: torch.Tensor, offsets: torch.Tensor, thing_mask: torch.Tensor
) -> torch.Tensor:
    torch._check(centers.dim() == 2 and centers.shape[1] == 2, lambda: "centers must be (K, 2)")
    torch._check(offsets.dim() == 3 and offsets.shape[0] == 2, lambda: "offsets must be (2, H, W)")
    torch._check(thing_mask.shape == offsets.shape[1:], lambda: "thing_mask must be (H, W)")
    return offsets.new_empty(offsets.shape[1:], dtype=torch.int64)


@torch.library.register_fake("panoptic2::merge_semantic_and_instance")
def _fake_merge_semantic_and_instance(
    sem_seg: torch.Tensor,
    ins_seg: torch.Tensor,
    thing_mask: torch.Tensor,
    is_thing_class: torch.Tensor,
    num_instances: int,
    label_divisor: int,
    stuff_area: int,
    void_label: int,
) -> torch.Tensor:
    torch._check(sem_seg.dim() == 2, lambda: "sem_seg must be (H, W)")
    torch._check(ins_seg.shape == sem_seg.shape, lambda: "ins_seg must be (H, W) like sem_seg")
    torch._check(thing_mask.shape == sem_seg.shape, lambda: "thing_mask must be (H, W)")
    return torch.empty_like(sem_seg, dtype=torch.int64)


@torch.library.register_fake("panoptic2::panoptic_deeplab_postprocess")
def _fake_panoptic_deeplab_postprocess(
    sem_seg: torch.Tensor,
    center_heatmap: torch.Tensor,
    offsets: torch.Tensor,
    thing_mask: torch.Tensor | None,
    is_thing_class: torch.Tensor,
    threshold: float,
    nms_kernel: int,
    top_k: int | None,
    label_divisor: int,
    stuff_area: int,
    void_label: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    torch._check(sem_seg.dim() == 2, lambda: "sem_seg must be (H, W)")
    torch._check(center_heatmap.shape == sem_seg.shape, lambda: "center_heatmap must be (H, W)")
    torch._check(
        offsets.dim() == 3 and offsets.shape[0] == 2 and offsets.shape[1:] == sem_seg.shape,
        lambda: "offsets must be (2, H, W)",
    )
    if thing_mask is not None:
        torch._check(thing_mask.shape == sem_seg.shape, lambda: "thing_mask must be (H, W)")
    # The number of centers depends on the heatmap's values: an unbacked size.
    num_centers = torch.library.get_ctx().new_dynamic_size()
    panoptic = torch.empty_like(sem_seg, dtype=torch.int64)
    return panoptic, sem_seg.new_empty((num_centers, 2), dtype=torch.int64)

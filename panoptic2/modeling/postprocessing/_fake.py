"""Fake (meta) kernels of the ``panoptic2._C`` post-processing ops.

They give output shapes and dtypes without computing, so FakeTensor tracing,
``torch.compile`` and ``torch.library.opcheck`` handle ``torch.ops.panoptic2.group_pixels``
and ``torch.ops.panoptic2.merge_semantic_and_instance``. Importing this module registers
them; it loads ``_C`` first (the ops must exist to take a fake kernel). The wrappers import
it before their first kernel call (:func:`._ops.uses_kernels`); code that calls
``torch.ops.panoptic2.*`` directly imports it itself (the C++ schemas name it through
``impl_abstract_pystub``, so torch's error says so when it is missing).
"""

from __future__ import annotations

import torch

from panoptic2 import extension

__all__: list[str] = []


def _fake_group_pixels(
    centers: torch.Tensor, offsets: torch.Tensor, thing_mask: torch.Tensor
) -> torch.Tensor:
    torch._check(centers.dim() == 2 and centers.shape[1] == 2, lambda: "centers must be (K, 2)")
    torch._check(offsets.dim() == 3 and offsets.shape[0] == 2, lambda: "offsets must be (2, H, W)")
    torch._check(thing_mask.shape == offsets.shape[1:], lambda: "thing_mask must be (H, W)")
    return offsets.new_empty(offsets.shape[1:], dtype=torch.int64)


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


if extension.has_ops() and hasattr(torch.ops.panoptic2, "group_pixels"):
    torch.library.register_fake("panoptic2::group_pixels")(_fake_group_pixels)
    torch.library.register_fake("panoptic2::merge_semantic_and_instance")(
        _fake_merge_semantic_and_instance
    )

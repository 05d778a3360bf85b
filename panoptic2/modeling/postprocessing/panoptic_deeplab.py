"""Panoptic-DeepLab post-processing: centers, grouping and merge into a panoptic map.

The functions keep Detectron2's ``panoptic_deeplab/post_processing.py`` names, signatures
and semantics, so ported code runs unchanged; they validate their inputs, and grouping and
merging then run in :mod:`panoptic2.ops` (the compiled ``panoptic2._C`` kernels on CPU and
CUDA when available, otherwise the PyTorch reference, with identical outputs).
:func:`find_instance_center` is plain PyTorch; on CPU with ``_C``, :func:`panoptic_from_maps`
(and so :func:`get_panoptic_segmentation`) runs centers, grouping and merge in one fused
kernel with the same outputs. See :func:`get_panoptic_segmentation` for the exact
rules.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F

from panoptic2 import ops

__all__ = [
    "find_instance_center",
    "get_panoptic_segmentation",
    "get_panoptic_segmentation_batched",
    "group_pixels",
    "merge_semantic_and_instance",
    "panoptic_from_maps",
]


def _as_map(t: torch.Tensor, name: str, func: str) -> torch.Tensor:
    """(1, H, W) or (H, W) -> (H, W), with an error naming the argument otherwise."""
    if t.dim() == 3 and t.shape[0] == 1:
        return t[0]
    if t.dim() == 2:
        return t
    raise ValueError(f"{func}: {name} must have shape (1, H, W) or (H, W), got {tuple(t.shape)}")


def _check_same_size(func: str, size: torch.Size, **tensors: torch.Tensor) -> None:
    for name, t in tensors.items():
        if t.shape[-2:] != size:
            raise ValueError(
                f"{func}: {name} has spatial size {tuple(t.shape[-2:])}, expected {tuple(size)}"
            )


def _check_device(func: str, device: torch.device, **tensors: torch.Tensor) -> None:
    for name, t in tensors.items():
        if t.device != device:
            raise ValueError(f"{func}: {name} is on {t.device}, expected {device}")


def _class_table(
    sem_seg: torch.Tensor, thing_ids: Iterable[int], func: str
) -> tuple[torch.Tensor, int]:
    """Validates class ids and builds the (C,) bool thing-class table, C = max id + 1.

    This is the only host synchronisation of the merge (one scalar pair): the table's size
    must be known to allocate it, and negative ids must be refused before any kernel runs.
    """
    if sem_seg.is_floating_point() or sem_seg.is_complex() or sem_seg.dtype == torch.bool:
        raise TypeError(f"{func}: sem_seg must hold integer class ids, got {sem_seg.dtype}")
    if sem_seg.numel() == 0:
        return torch.zeros(0, dtype=torch.bool, device=sem_seg.device), 0
    low, high = (int(v) for v in torch.stack(torch.aminmax(sem_seg)).tolist())
    if low < 0:
        raise ValueError(f"{func}: sem_seg has a negative class id ({low})")
    num_classes = high + 1
    ids = [int(i) for i in thing_ids if 0 <= int(i) < num_classes]
    is_thing_class = torch.zeros(num_classes, dtype=torch.bool)
    is_thing_class[ids] = True
    return is_thing_class.to(sem_seg.device), num_classes


def _check_center_rule(
    func: str, heatmap: torch.Tensor, nms_kernel: int, top_k: int | None
) -> None:
    if not heatmap.is_floating_point():
        raise TypeError(f"{func}: center_heatmap must be floating point, got {heatmap.dtype}")
    if nms_kernel < 1 or nms_kernel % 2 == 0:
        raise ValueError(f"{func}: nms_kernel must be a positive odd number, got {nms_kernel}")
    if top_k is not None and top_k < 1:
        raise ValueError(f"{func}: top_k must be >= 1 or None, got {top_k}")


def find_instance_center(
    center_heatmap: torch.Tensor,
    threshold: float = 0.1,
    nms_kernel: int = 3,
    top_k: int | None = None,
) -> torch.Tensor:
    """Finds instance centers: thresholded local maxima of the heatmap, optionally top-k.

    A pixel is a center if its score is ``> threshold``, equals the max-pooled score
    (kernel ``nms_kernel``, stride 1, same padding; equal plateaus give several centers) and
    is ``> 0``. With ``top_k``, only centers strictly greater than ``max(s_k, 0)`` are kept,
    ``s_k`` being the k-th largest score of the suppressed map (non-centers count as -1),
    as in Detectron2; when the map has fewer than ``top_k`` pixels, ``s_k`` counts as -1
    (no error).

    Args:
        center_heatmap: (1, H, W) or (H, W) float center scores.
        threshold: Score a center must exceed.
        nms_kernel: Odd max-pooling kernel size.
        top_k: Keep at most this many centers (fewer on ties, by the strict rule); None keeps
            all.

    Returns:
        (K, 2) int64 center coordinates (y, x), in row-major order.
    """
    func = "find_instance_center"
    heatmap = _as_map(center_heatmap, "center_heatmap", func)
    _check_center_rule(func, heatmap, nms_kernel, top_k)
    heatmap = F.threshold(heatmap, threshold, -1.0)
    heatmap = torch.where(heatmap == _max_pool_same(heatmap, nms_kernel), heatmap, -1.0)
    centers = torch.nonzero(heatmap > 0)
    if top_k is not None:
        # Only positive scores can pass max(s_k, 0), so s_k may be taken among the
        # candidates, padded with top_k scores of -1: with fewer than top_k candidates s_k is
        # -1 and all are kept. No branch on the number of candidates, so torch.compile and
        # torch.export trace this with that number symbolic.
        scores = heatmap[centers[:, 0], centers[:, 1]]
        padded = torch.cat([scores, scores.new_full((top_k,), -1.0)])
        centers = centers[scores > torch.topk(padded, top_k).values[-1]]
    return centers


def _max_pool_same(x: torch.Tensor, kernel: int) -> torch.Tensor:
    """Max over a kernel x kernel window with same padding; equals ``F.max_pool2d``.

    Max pooling is separable, and a window max of width w is the max of two overlapping
    windows of width <= 2^j; this takes ~2 log2(kernel) elementwise maxima instead of
    torch's CPU pooling, which is ~10x slower at Cityscapes size.

    Args:
        x: (H, W) float map.
        kernel: Odd window size.

    Returns:
        (H, W) window maxima (-inf padding).
    """
    for dim in (0, 1):
        n = x.shape[dim]
        p = kernel // 2
        m = F.pad(x, (0, 0, p, p) if dim == 0 else (p, p), value=-float("inf"))
        width = 1
        while width * 2 <= kernel:  # m[i] = max(padded[i : i + 2 * width])
            m = torch.maximum(
                m.narrow(dim, 0, m.shape[dim] - width), m.narrow(dim, width, m.shape[dim] - width)
            )
            width *= 2
        x = torch.maximum(m.narrow(dim, 0, n), m.narrow(dim, kernel - width, n))
    return x


def group_pixels(
    center_points: torch.Tensor, offsets: torch.Tensor, thing_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Assigns pixels to the center nearest to where their offsets point.

    Nearest is by float32 squared Euclidean distance from ``(y + dy, x + dx)``, computed as
    ``(cy - (y + dy))^2 + (cx - (x + dx))^2``; ties go to the first center. No K x (H*W)
    matrix is built.

    Args:
        center_points: (K, 2) integer centers (y, x), e.g. from :func:`find_instance_center`.
        offsets: (2, H, W) float offsets (dy, dx); computed in float32.
        thing_mask: Optional (1, H, W) or (H, W) mask of the pixels to group (nonzero =
            group); all pixels when None.

    Returns:
        (1, H, W) int64: 1 + the index of the nearest center on grouped pixels, 0 on the
        others (and everywhere when K == 0).
    """
    func = "group_pixels"
    if offsets.dim() != 3 or offsets.shape[0] != 2 or not offsets.is_floating_point():
        raise ValueError(
            f"{func}: offsets must be a (2, H, W) float tensor, got {tuple(offsets.shape)} "
            f"{offsets.dtype}"
        )
    if center_points.dim() != 2 or center_points.shape[1] != 2:
        raise ValueError(f"{func}: center_points must be (K, 2), got {tuple(center_points.shape)}")
    if center_points.is_floating_point():
        raise TypeError(f"{func}: center_points must be integer (y, x), got {center_points.dtype}")
    if thing_mask is None:
        mask = torch.ones(offsets.shape[1:], dtype=torch.bool, device=offsets.device)
    else:
        mask = _as_map(thing_mask, "thing_mask", func) != 0
        _check_same_size(func, offsets.shape[1:], thing_mask=mask)
    _check_device(func, offsets.device, center_points=center_points, thing_mask=mask)
    ins_seg = ops.group_pixels(center_points.to(torch.int64), offsets.to(torch.float32), mask)
    return ins_seg[None]


def merge_semantic_and_instance(
    sem_seg: torch.Tensor,
    ins_seg: torch.Tensor,
    semantic_thing_seg: torch.Tensor,
    label_divisor: int,
    thing_ids: Iterable[int],
    stuff_area: int,
    void_label: int,
) -> torch.Tensor:
    """Merges semantic and instance maps into a panoptic map (Detectron2's signature).

    Thing pixels are those with ``ins_seg > 0`` and ``semantic_thing_seg`` nonzero. Each
    instance takes the majority class of its thing pixels (ties to the smaller class id);
    instances are visited in id order and each class numbers its instances 1, 2, ... (an
    instance with no thing pixels takes no number). Other pixels keep their class if it is
    not a thing class and covers at least ``stuff_area`` such pixels, else ``void_label``.

    Args:
        sem_seg: (1, H, W) or (H, W) integer class ids, >= 0.
        ins_seg: Same shape, integer instance ids >= 0 (0 = no instance).
        semantic_thing_seg: Same shape, nonzero where a pixel may belong to an instance.
        label_divisor: Panoptic label = class * label_divisor + instance number.
        thing_ids: Class ids of the thing classes.
        stuff_area: Smallest area (pixels) of a kept stuff class.
        void_label: Label of pixels that are neither kept stuff nor instance.

    Returns:
        int64 panoptic labels, shaped like ``sem_seg``.
    """
    func = "merge_semantic_and_instance"
    sem = _as_map(sem_seg, "sem_seg", func)
    ins = _as_map(ins_seg, "ins_seg", func)
    mask = _as_map(semantic_thing_seg, "semantic_thing_seg", func) != 0
    _check_same_size(func, sem.shape, ins_seg=ins, semantic_thing_seg=mask)
    _check_device(func, sem.device, ins_seg=ins, semantic_thing_seg=mask)
    if ins.is_floating_point():
        raise TypeError(f"{func}: ins_seg must hold integer instance ids, got {ins.dtype}")
    is_thing_class, _ = _class_table(sem, thing_ids, func)
    num_instances = 0
    if ins.numel() > 0:
        low, high = (int(v) for v in torch.stack(torch.aminmax(ins)).tolist())
        if low < 0:
            raise ValueError(f"{func}: ins_seg has a negative instance id ({low})")
        num_instances = high
    panoptic = ops.merge_semantic_and_instance(
        sem.to(torch.int64),
        ins.to(torch.int64),
        mask,
        is_thing_class,
        num_instances,
        label_divisor,
        stuff_area,
        void_label,
    )
    return panoptic.reshape(sem_seg.shape)


def panoptic_from_maps(
    sem: torch.Tensor,
    heatmap: torch.Tensor,
    offsets: torch.Tensor,
    foreground: torch.Tensor | None,
    is_thing_class: torch.Tensor,
    label_divisor: int,
    stuff_area: int,
    void_label: int,
    threshold: float,
    nms_kernel: int,
    top_k: int | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`get_panoptic_segmentation` of one image whose maps are already valid.

    Nothing is checked and nothing is copied to the host, so ``torch.compile``
    (``fullgraph=True``) and ``torch.export`` trace it whole: the number of centers K is a
    data-dependent size, and the ops run through their fake kernels. On CPU with ``_C`` and
    a float32 heatmap, one fused kernel does all three steps
    (:func:`panoptic2.ops.panoptic_deeplab_postprocess`); otherwise centers are found in
    PyTorch and grouping and merging run in their own ops. The caller guarantees what
    :func:`get_panoptic_segmentation` would have checked.

    Args:
        sem: (H, W) int64 class ids in [0, C).
        heatmap: (H, W) float center scores.
        offsets: (2, H, W) float offsets (dy, dx).
        foreground: optional (H, W) thing mask (nonzero = thing); None: the pixels whose
            class is a thing class.
        is_thing_class: (C,) bool, True for thing classes.
        label_divisor, stuff_area, void_label, threshold, nms_kernel, top_k: As in
            :func:`get_panoptic_segmentation`.

    Returns:
        ``(panoptic, centers)``: (H, W) int64 labels and (K, 2) int64 centers (y, x).
    """
    if heatmap.dtype == torch.float32 and ops.uses_fused_kernel(sem.device):
        # One CPU kernel for all three steps: each map is read once, and no int64 (H, W)
        # intermediate (instance ids, thing mask) is written and read back.
        return ops.panoptic_deeplab_postprocess(
            sem,
            heatmap,
            offsets.to(torch.float32),
            None if foreground is None else foreground != 0,
            is_thing_class,
            threshold,
            nms_kernel,
            top_k,
            label_divisor,
            stuff_area,
            void_label,
        )
    if foreground is not None:
        thing_mask = foreground != 0
    elif is_thing_class.numel() > 0:
        thing_mask = is_thing_class[sem]
    else:
        thing_mask = torch.zeros_like(sem, dtype=torch.bool)
    centers = find_instance_center(heatmap, threshold=threshold, nms_kernel=nms_kernel, top_k=top_k)
    ins_seg = ops.group_pixels(centers, offsets.to(torch.float32), thing_mask)
    panoptic = ops.merge_semantic_and_instance(
        sem,
        ins_seg,
        thing_mask,
        is_thing_class,
        centers.shape[0],
        label_divisor,
        stuff_area,
        void_label,
    )
    return panoptic, centers


def get_panoptic_segmentation_batched(
    sem_seg: torch.Tensor,
    center_heatmap: torch.Tensor,
    offsets: torch.Tensor,
    thing_ids: Iterable[int],
    label_divisor: int,
    stuff_area: int,
    void_label: int,
    threshold: float = 0.1,
    nms_kernel: int = 7,
    top_k: int | None = 200,
    foreground_mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """:func:`get_panoptic_segmentation` for a batch of N images.

    Args:
        sem_seg: (N, H, W) integer class ids, >= 0.
        center_heatmap: (N, H, W) or (N, 1, H, W) float center scores.
        offsets: (N, 2, H, W) float offsets (dy, dx).
        thing_ids, label_divisor, stuff_area, void_label, threshold, nms_kernel, top_k: As
            in :func:`get_panoptic_segmentation`.
        foreground_mask: Optional (N, H, W) or (N, 1, H, W) thing mask (nonzero = thing).

    Returns:
        ``(panoptic, centers)``: (N, H, W) int64 panoptic labels and a list of N (K_i, 2)
        int64 centers (y, x).
    """
    func = "get_panoptic_segmentation"
    if sem_seg.dim() != 3:
        raise ValueError(f"{func}: sem_seg must be (N, H, W), got {tuple(sem_seg.shape)}")
    n, height, width = sem_seg.shape
    if center_heatmap.dim() == 4 and center_heatmap.shape[1] == 1:
        center_heatmap = center_heatmap[:, 0]
    if foreground_mask is not None and foreground_mask.dim() == 4:
        if foreground_mask.shape[1] != 1:
            raise ValueError(f"{func}: foreground_mask must be (N, 1, H, W) or (N, H, W)")
        foreground_mask = foreground_mask[:, 0]
    expected = {"center_heatmap": (n, height, width), "offsets": (n, 2, height, width)}
    if foreground_mask is not None:
        expected["foreground_mask"] = (n, height, width)
    given = {
        "center_heatmap": center_heatmap,
        "offsets": offsets,
        "foreground_mask": foreground_mask,
    }
    for name, shape in expected.items():
        if tuple(given[name].shape) != shape:
            raise ValueError(
                f"{func}: {name} must have shape {shape} to match sem_seg "
                f"{tuple(sem_seg.shape)}, got {tuple(given[name].shape)}"
            )
        _check_device(func, sem_seg.device, **{name: given[name]})
    if not offsets.is_floating_point():
        raise TypeError(f"{func}: offsets must be floating point, got {offsets.dtype}")
    _check_center_rule(func, center_heatmap, nms_kernel, top_k)
    is_thing_class, _ = _class_table(sem_seg, thing_ids, func)
    sem = sem_seg.to(torch.int64)
    results = [
        panoptic_from_maps(
            sem[i],
            center_heatmap[i],
            offsets[i],
            None if foreground_mask is None else foreground_mask[i],
            is_thing_class,
            label_divisor,
            stuff_area,
            void_label,
            threshold,
            nms_kernel,
            top_k,
        )
        for i in range(n)
    ]
    if not results:
        return sem.new_empty((0, height, width)), []
    if n == 1:  # a view of the one fresh map: no copy of (H, W) labels
        return results[0][0][None], [results[0][1]]
    return torch.stack([p for p, _ in results]), [c for _, c in results]


def get_panoptic_segmentation(
    sem_seg: torch.Tensor,
    center_heatmap: torch.Tensor,
    offsets: torch.Tensor,
    thing_ids: Iterable[int],
    label_divisor: int,
    stuff_area: int,
    void_label: int,
    threshold: float = 0.1,
    nms_kernel: int = 7,
    top_k: int | None = 200,
    foreground_mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Panoptic-DeepLab post-processing of one image (Detectron2's contract).

    Centers come from :func:`find_instance_center`; thing pixels (``foreground_mask`` if
    given, else pixels whose class is in ``thing_ids``) join the nearest center
    (:func:`group_pixels`); then :func:`merge_semantic_and_instance` builds the panoptic map.
    Thing pixels when no center exists are ``void_label``.

    Args:
        sem_seg: (1, H, W) integer class ids, >= 0.
        center_heatmap: (1, H, W) float center scores.
        offsets: (2, H, W) float offsets (dy, dx) from each pixel to its center.
        thing_ids: Class ids of the thing classes.
        label_divisor: Panoptic label = class * label_divisor + instance number.
        stuff_area: Smallest area (pixels) of a kept stuff class.
        void_label: Label of void pixels.
        threshold: Score a center must exceed.
        nms_kernel: Odd max-pooling kernel of the center NMS.
        top_k: At most this many centers (strict rule, see :func:`find_instance_center`).
        foreground_mask: Optional (1, H, W) thing mask (nonzero = thing).

    Returns:
        ``(panoptic, centers)``: (1, H, W) int64 labels and (1, K, 2) int64 centers (y, x).
    """
    func = "get_panoptic_segmentation"
    if sem_seg.dim() != 3 or sem_seg.shape[0] != 1:
        raise ValueError(f"{func}: sem_seg must be (1, H, W), got {tuple(sem_seg.shape)}")
    if center_heatmap.dim() != 3 or center_heatmap.shape[0] != 1:
        raise ValueError(
            f"{func}: center_heatmap must be (1, H, W), got {tuple(center_heatmap.shape)}"
        )
    if offsets.dim() != 3 or offsets.shape[0] != 2:
        raise ValueError(f"{func}: offsets must be (2, H, W), got {tuple(offsets.shape)}")
    if foreground_mask is not None and (
        foreground_mask.dim() != 3 or foreground_mask.shape[0] != 1
    ):
        raise ValueError(
            f"{func}: foreground_mask must be (1, H, W), got {tuple(foreground_mask.shape)}"
        )
    panoptic, centers = get_panoptic_segmentation_batched(
        sem_seg,
        center_heatmap,
        offsets[None],
        thing_ids,
        label_divisor,
        stuff_area,
        void_label,
        threshold=threshold,
        nms_kernel=nms_kernel,
        top_k=top_k,
        foreground_mask=foreground_mask,
    )
    return panoptic, centers[0][None]

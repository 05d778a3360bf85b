"""Synthetic Panoptic-DeepLab outputs, realistic enough to exercise post-processing.

Used by the post-processing tests and ``dev/bench/postprocess.py``: stuff regions, disc-
shaped thing instances whose offsets point (noisily) to their centers, a center heatmap of
Gaussian peaks, and label noise. Values are quantized so that exact ties (equal distances,
plateaus in the heatmap, equal class votes) actually occur.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

__all__ = ["make_panoptic_deeplab_outputs"]


def make_panoptic_deeplab_outputs(
    height: int,
    width: int,
    num_classes: int,
    thing_ids: Sequence[int],
    num_instances: int,
    seed: int = 0,
    label_noise: float = 0.05,
    offset_noise: float = 1.5,
    sigma: float = 8.0,
) -> dict[str, torch.Tensor]:
    """Builds one image's synthetic network outputs on CPU.

    Args:
        height: Image height H.
        width: Image width W.
        num_classes: Number of semantic classes C (ids 0..C-1).
        thing_ids: Thing class ids (the others are stuff); may be empty.
        num_instances: Number of thing instances drawn (each with a heatmap peak).
        seed: Seed of the generator; equal arguments give equal outputs.
        label_noise: Fraction of pixels whose class is replaced by a random one.
        offset_noise: Standard deviation of the offset noise, in pixels.
        sigma: Standard deviation of the Gaussian heatmap peaks, in pixels.

    Returns:
        ``sem_seg`` (1, H, W) int64, ``center_heatmap`` (1, H, W) float32, ``offsets``
        (2, H, W) float32 as (dy, dx), ``sem_probs`` (C, H, W) float32 (softmax of noisy
        one-hot scores).
    """
    g = torch.Generator().manual_seed(seed)
    things = list(thing_ids)
    stuff = [c for c in range(num_classes) if c not in set(things)] or list(range(num_classes))
    cell = 64
    grid = torch.randint(len(stuff), (1, 1, height // cell + 1, width // cell + 1), generator=g)
    coarse = torch.tensor(stuff)[grid.flatten()].reshape(grid.shape).float()
    sem = F.interpolate(coarse, scale_factor=cell, mode="nearest")[0, 0, :height, :width].long()
    offsets = torch.randn(2, height, width, generator=g) * offset_noise
    heatmap = torch.rand(height, width, generator=g) * 0.05
    ys = torch.arange(height, dtype=torch.float32)[:, None]
    xs = torch.arange(width, dtype=torch.float32)[None, :]
    max_radius = max(2, min(height, width) // 10)
    for _ in range(num_instances if things else 0):
        cy = int(torch.randint(height, (1,), generator=g))
        cx = int(torch.randint(width, (1,), generator=g))
        radius = int(torch.randint(1, max_radius + 1, (1,), generator=g))
        class_id = things[int(torch.randint(len(things), (1,), generator=g))]
        amplitude = float(torch.rand((), generator=g)) * 0.7 + 0.3
        y0, y1 = max(cy - radius, 0), min(cy + radius + 1, height)
        x0, x1 = max(cx - radius, 0), min(cx + radius + 1, width)
        wy, wx = ys[y0:y1], xs[:, x0:x1]
        disc = (wy - cy) ** 2 + (wx - cx) ** 2 <= radius**2
        sem[y0:y1, x0:x1][disc] = class_id
        offsets[0, y0:y1, x0:x1][disc] += (cy - wy).expand_as(disc)[disc]
        offsets[1, y0:y1, x0:x1][disc] += (cx - wx).expand_as(disc)[disc]
        reach = int(3 * sigma)
        py0, py1 = max(cy - reach, 0), min(cy + reach + 1, height)
        px0, px1 = max(cx - reach, 0), min(cx + reach + 1, width)
        peak = amplitude * torch.exp(
            -((ys[py0:py1] - cy) ** 2 + (xs[:, px0:px1] - cx) ** 2) / (2 * sigma**2)
        )
        heatmap[py0:py1, px0:px1] = torch.maximum(heatmap[py0:py1, px0:px1], peak)
    noisy = torch.rand(height, width, generator=g) < label_noise
    sem[noisy] = torch.randint(num_classes, (int(noisy.sum()),), generator=g)
    scores = F.one_hot(sem, num_classes).permute(2, 0, 1).float() * 4
    scores += torch.randn(num_classes, height, width, generator=g)
    return {
        "sem_seg": sem[None],
        # Quantized: equal neighbouring scores make NMS plateaus, as real heatmaps do.
        "center_heatmap": (torch.round(heatmap * 64) / 64)[None],
        # Quarter-pixel offsets make exactly equidistant centers common.
        "offsets": torch.round(offsets * 4) / 4,
        "sem_probs": scores.softmax(0),
    }

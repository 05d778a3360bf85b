"""Scene sampling and rendering of the synthetic "shapes" dataset.

A scene is a list of polygons in painter's order (later polygons cover earlier ones), each
tied to a segment: stuff regions with curved boundaries first, then an optional crowd (a
cluster of small things of one class forming ONE segment), then thing instances of varied
size that occlude each other, then void lines and blobs on top. Every layout writer
(COCO, Cityscapes, VOC) starts from the same :class:`Scene`, and the label maps are
rasterised with PIL's polygon fill, which is also what ``cityscapesscripts`` uses to turn
``*_polygons.json`` into label images, so all layouts agree pixel for pixel.

The tables (categories, textures, layout label maps) are JSON files next to this module.
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
from PIL import Image, ImageDraw

__all__ = [
    "Scene",
    "SceneSegment",
    "load_shapes_categories",
    "load_shapes_styles",
    "rasterize_scene",
    "render_image",
    "sample_scene",
]

_HERE = os.path.dirname(os.path.abspath(__file__))
VOID = 0  # segment index of void pixels in a rasterised scene


@functools.cache
def _read_table(filename: str) -> Any:
    with open(os.path.join(_HERE, filename)) as f:
        return json.load(f)


def load_shapes_categories() -> list[dict]:
    """Returns fresh copies of the shapes categories (COCO panoptic category dicts).

    Returns:
        Dicts with ``id`` (original, non-contiguous), ``name``, ``isthing``, ``color``
        and ``supercategory``, from ``shapes_categories.json``.
    """
    return [dict(c, color=list(c["color"])) for c in _read_table("shapes_categories.json")]


def load_shapes_styles() -> dict:
    """Returns the rendering styles and layout label maps (``shapes_styles.json``)."""
    return json.loads(json.dumps(_read_table("shapes_styles.json")))


@dataclass
class SceneSegment:
    """One panoptic segment of a scene.

    Attributes:
        category_id: original shapes category id.
        iscrowd: 1 for a crowd segment (a cluster of things labelled as one region).
        polygons: the polygons of the segment in the scene's painter order; ``(K, 2)``
            int32 arrays of ``(x, y)`` vertices. Stuff and crowd segments may have several.
    """

    category_id: int
    iscrowd: int = 0
    polygons: list[np.ndarray] = field(default_factory=list)


@dataclass
class Scene:
    """A sampled scene: segments plus the painter-order drawing list.

    Attributes:
        height: image height in pixels.
        width: image width in pixels.
        segments: the segments; segment index ``i + 1`` is ``segments[i]`` (0 is void).
        draw_order: ``(segment_index, polygon)`` pairs in painter order; index 0 paints void.
        colors: per segment index, the base RGB colour used to render it (things get a
            per-instance jitter of their category colour).
    """

    height: int
    width: int
    segments: list[SceneSegment]
    draw_order: list[tuple[int, np.ndarray]]
    colors: dict[int, np.ndarray]


def _regular_polygon(
    cx: float, cy: float, radius: float, sides: int, angle: float, height: int, width: int
) -> np.ndarray:
    """Vertices of a regular polygon, rounded and clipped to the image (``(K, 2)`` int32)."""
    t = angle + 2 * np.pi * np.arange(sides) / sides
    pts = np.stack([cx + radius * np.cos(t), cy + radius * np.sin(t)], axis=1)
    return _clip(pts, height, width)


def _clip(pts: np.ndarray, height: int, width: int) -> np.ndarray:
    # Cityscapes polygons are integer pixel coordinates inside the image; clipping keeps
    # our polygons in that form so cityscapesscripts draws exactly what we draw.
    pts = np.rint(pts)
    pts[:, 0] = np.clip(pts[:, 0], 0, width - 1)
    pts[:, 1] = np.clip(pts[:, 1], 0, height - 1)
    return pts.astype(np.int32)


def _thing_polygon(
    rng: np.random.Generator, name: str, cx: float, cy: float, size: float, h: int, w: int
) -> np.ndarray:
    """Polygon of one thing of the class ``name`` (disk / square / triangle), ``size`` px wide."""
    angle = float(rng.uniform(0, 2 * np.pi))
    if name == "disk":
        sides = int(max(12, min(48, size * 1.5)))
        return _regular_polygon(cx, cy, size / 2, sides, angle, h, w)
    if name == "square":
        return _regular_polygon(cx, cy, size / np.sqrt(2), 4, angle, h, w)
    if name == "triangle":
        return _regular_polygon(cx, cy, size / np.sqrt(3), 3, angle, h, w)
    raise ValueError(f"shapes dataset: no polygon shape for thing class {name!r}")


def _wavy_band(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Region below a random sine curve (a band along the bottom or the top of the image)."""
    xs = np.arange(0, w + 3, 4, dtype=np.float64)
    xs[-1] = w - 1
    y0 = rng.uniform(0.35, 0.75) * h
    amp = rng.uniform(0.04, 0.15) * h
    period = rng.uniform(0.4, 1.2) * w
    phase = rng.uniform(0, 2 * np.pi)
    ys = y0 + amp * np.sin(2 * np.pi * xs / period + phase)
    edge = 0 if rng.random() < 0.5 else h - 1
    curve = np.stack([xs, ys], axis=1)
    pts = np.concatenate([curve, [[w - 1, edge], [0, edge]]], axis=0)
    return _clip(pts, h, w)


def _blob(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A smooth star-shaped region: radius modulated by two low-frequency sines."""
    cx, cy = rng.uniform(0.2, 0.8) * w, rng.uniform(0.2, 0.8) * h
    r0 = rng.uniform(0.15, 0.35) * min(h, w)
    t = np.linspace(0, 2 * np.pi, 40, endpoint=False)
    r = r0 * (
        1
        + 0.25 * np.sin(2 * t + rng.uniform(0, 2 * np.pi))
        + 0.15 * np.sin(3 * t + rng.uniform(0, 2 * np.pi))
    )
    return _clip(np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], axis=1), h, w)


def _thick_line(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A thin quadrilateral (1-2.5 px wide) crossing the image between opposite borders."""
    if rng.random() < 0.5:  # left border -> right border
        p0 = np.array([0.0, rng.uniform(0, h - 1)])
        p1 = np.array([w - 1.0, rng.uniform(0, h - 1)])
    else:  # top border -> bottom border
        p0 = np.array([rng.uniform(0, w - 1), 0.0])
        p1 = np.array([rng.uniform(0, w - 1), h - 1.0])
    d = p1 - p0
    normal = np.array([-d[1], d[0]]) / max(np.linalg.norm(d), 1e-6)
    half = rng.uniform(0.5, 1.25)
    pts = np.stack([p0 + half * normal, p1 + half * normal, p1 - half * normal, p0 - half * normal])
    return _clip(pts, h, w)


def _jitter_color(rng: np.random.Generator, color: list[int], jitter: float) -> np.ndarray:
    return np.clip(np.asarray(color, np.float64) + rng.uniform(-jitter, jitter, 3), 0, 255)


def sample_scene(
    rng: np.random.Generator, height: int, width: int, categories: list[dict], styles: dict
) -> Scene:
    """Samples one scene.

    Args:
        rng: the random generator (the only source of randomness, for determinism).
        height: image height.
        width: image width.
        categories: shapes categories (see :func:`load_shapes_categories`).
        styles: rendering styles (see :func:`load_shapes_styles`).

    Returns:
        The :class:`Scene`: 2-3 stuff classes (full-frame base, a wavy band, maybe a blob),
        a crowd segment in about half the images, 3-8 occluding thing instances of sizes
        6..60 px (log-uniform), then 1-3 void lines and 0-2 void blobs.
    """
    things = [c for c in categories if c["isthing"]]
    stuff = [c for c in categories if not c["isthing"]]
    segments: list[SceneSegment] = []
    draw_order: list[tuple[int, np.ndarray]] = []
    colors: dict[int, np.ndarray] = {}

    def new_segment(cat: dict, iscrowd: int, color: np.ndarray) -> int:
        segments.append(SceneSegment(int(cat["id"]), iscrowd))
        colors[len(segments)] = color
        return len(segments)

    def add(index: int, poly: np.ndarray) -> None:
        draw_order.append((index, poly))
        if index != VOID:
            segments[index - 1].polygons.append(poly)

    # Stuff: one segment per class, whatever number of regions it paints.
    stuff_order = rng.permutation(len(stuff))[: int(rng.integers(2, len(stuff) + 1))]
    stuff_regions = [
        np.array([[0, 0], [width - 1, 0], [width - 1, height - 1], [0, height - 1]], np.int32),
        _wavy_band(rng, height, width),
        _blob(rng, height, width),
    ]
    for k, si in enumerate(stuff_order):
        cat = stuff[si]
        index = new_segment(cat, 0, np.asarray(cat["color"], np.float64))
        add(index, stuff_regions[k])

    jitter = float(styles["color_jitter"])
    # Crowd: a cluster of small things of one class, labelled as ONE segment.
    if rng.random() < 0.5:
        cat = things[int(rng.integers(len(things)))]
        index = new_segment(cat, 1, _jitter_color(rng, cat["color"], jitter))
        cx, cy = rng.uniform(0.15, 0.85) * width, rng.uniform(0.15, 0.85) * height
        for _ in range(int(rng.integers(6, 13))):
            x, y = cx + rng.normal(0, 8), cy + rng.normal(0, 8)
            add(index, _thing_polygon(rng, cat["name"], x, y, rng.uniform(5, 9), height, width))

    # Things: log-uniform sizes from ~6 px to ~60 px; later ones occlude earlier ones.
    for _ in range(int(rng.integers(3, 9))):
        cat = things[int(rng.integers(len(things)))]
        size = float(np.exp(rng.uniform(np.log(6), np.log(60))))
        x, y = rng.uniform(0, width - 1), rng.uniform(0, height - 1)
        index = new_segment(cat, 0, _jitter_color(rng, cat["color"], jitter))
        add(index, _thing_polygon(rng, cat["name"], x, y, size, height, width))

    # Void on top: thin lines and small blobs (a few % of the pixels).
    for _ in range(int(rng.integers(1, 4))):
        add(VOID, _thick_line(rng, height, width))
    for _ in range(int(rng.integers(0, 3))):
        x, y = rng.uniform(0, width - 1), rng.uniform(0, height - 1)
        add(VOID, _regular_polygon(x, y, rng.uniform(1.5, 4), 10, 0.0, height, width))
    return Scene(height, width, segments, draw_order, colors)


def rasterize_scene(scene: Scene) -> np.ndarray:
    """Paints the scene's polygons in order with PIL's polygon fill.

    Args:
        scene: the scene.

    Returns:
        ``(H, W) int32`` map of segment indices (``i + 1`` for ``scene.segments[i]``,
        0 for void). Segments may end up with no pixel (fully occluded).
    """
    canvas = Image.new("I", (scene.width, scene.height), VOID)
    draw = ImageDraw.Draw(canvas)
    for index, poly in scene.draw_order:
        draw.polygon([tuple(p) for p in poly.tolist()], fill=int(index))
    return np.asarray(canvas, dtype=np.int32)


def _texture(
    rng: np.random.Generator, style: dict, color: np.ndarray, box: tuple[int, int, int, int]
) -> np.ndarray:
    """A ``(h, w, 3) float64`` texture patch of one class with a random phase/direction.

    Args:
        rng: random generator.
        style: the class's texture style (``kind``, ``amplitude``, ``period``).
        color: ``(3,)`` base RGB colour.
        box: ``(y0, x0, h, w)`` image window the patch covers (patterns use image coords).
    """
    kind, amp, period = style["kind"], float(style["amplitude"]), float(style["period"])
    y0, x0, h, w = box
    yy, xx = np.mgrid[y0 : y0 + h, x0 : x0 + w].astype(np.float64)
    if kind == "solid":
        mod = np.zeros((h, w))
    elif kind == "noise":
        noise = rng.normal(0, 1, (h, w))
        mod = cv2.GaussianBlur(noise, (0, 0), max(period, 0.5))
        mod = mod / max(float(np.abs(mod).max()), 1e-6)
    elif kind == "stripes":
        theta = rng.uniform(0, np.pi)
        u = xx * np.cos(theta) + yy * np.sin(theta)
        mod = np.sign(np.sin(2 * np.pi * u / (2 * period) + rng.uniform(0, 2 * np.pi)))
    elif kind == "checker":
        ox, oy = rng.integers(0, int(period) * 2, 2)
        mod = (((xx + ox) // period + (yy + oy) // period) % 2) * 2 - 1
    elif kind == "gradient":
        theta = rng.uniform(0, 2 * np.pi)
        u = xx * np.cos(theta) + yy * np.sin(theta)
        mod = (u - u.min()) / max(float(np.ptp(u)), 1e-6) * 2 - 1
    else:
        raise ValueError(f"shapes_styles.json: unknown texture kind {kind!r}")
    return color[None, None, :] + amp * mod[:, :, None]


def render_image(
    rng: np.random.Generator, scene: Scene, segment_map: np.ndarray, styles: dict
) -> np.ndarray:
    """Renders the RGB image of a rasterised scene.

    Args:
        rng: the random generator (texture phases and pixel noise).
        scene: the scene.
        segment_map: ``(H, W) int32`` map from :func:`rasterize_scene`.
        styles: rendering styles (textures per category, void colour, noise).

    Returns:
        ``(H, W, 3) uint8`` RGB image: each segment filled with its class texture in its
        colour, void pixels dark, plus a little pixel noise.
    """
    h, w = segment_map.shape
    image = np.empty((h, w, 3), np.float64)
    image[:] = np.asarray(styles["void_color"], np.float64)
    for index in np.unique(segment_map):
        if index == VOID:
            continue
        seg = scene.segments[index - 1]
        style = styles["textures"][str(seg.category_id)]
        ys, xs = np.nonzero(segment_map == index)
        y0, x0 = int(ys.min()), int(xs.min())
        box = (y0, x0, int(ys.max()) - y0 + 1, int(xs.max()) - x0 + 1)
        patch = _texture(rng, style, scene.colors[int(index)], box)
        image[ys, xs] = patch[ys - y0, xs - x0]
    image += rng.normal(0, float(styles["pixel_noise"]), image.shape)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)

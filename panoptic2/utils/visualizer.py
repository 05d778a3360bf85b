"""Draws panoptic, semantic and instance results (or ground truth) over an image.

Called as Detectron2's visualizer is::

    v = Visualizer(image_rgb, MetadataCatalog.get("shapes_panoptic_val"))
    v.draw_panoptic_seg(*outputs["panoptic_seg"]).save("out.png")

Everything is drawn with numpy and OpenCV on a canvas holding the image resized by
``scale``. Segments are filled with their colour blended over the image, outlined in a darker
shade of it and labelled inside themselves where the text fits: at the point farthest from
the segment's boundary among those where the whole text box lies inside the segment.
Instance predictions get boxes, masks and a label at the box's top-left corner. Colours are
deterministic (seeded by segment id or instance index), so one input gives one picture.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import cv2
import numpy as np
import torch
from scipy import ndimage

from panoptic2.data.label_space import LabelSpace
from panoptic2.data.mappers.instance_annotations import annotation_to_mask
from panoptic2.data.panoptic_label import read_panoptic_png
from panoptic2.data.reading import read_sem_seg
from panoptic2.structures import BitMasks, BoxMode, Instances
from panoptic2.utils.colormap import Color, darker, jitter_color, lighter, random_color
from panoptic2.utils.file_io import atomic_write

__all__ = ["ColorMode", "VisImage", "Visualizer"]

_FONT = cv2.FONT_HERSHEY_SIMPLEX
_MIN_TEXT_HEIGHT = 8  # canvas pixels; smaller Hershey text is unreadable
_BACKDROP = 0.3  # label boxes keep this fraction of the pixels under them (a dark backdrop)


class ColorMode(enum.Enum):
    """How instances are coloured (Detectron2's names)."""

    IMAGE = 0
    """Things in colours jittered around their class colour, over the colour image."""
    SEGMENTATION = 1
    """Instance predictions in the colour of their class."""
    IMAGE_BW = 2
    """As ``IMAGE``, with the image greyed outside the drawn segments and masks."""


def _to_numpy(value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)


@dataclasses.dataclass
class _Segment:
    """How one segment of an index map is drawn."""

    color: Color
    text: str | None = None
    crowd: bool = False  # hatched instead of filled
    edge_color: Color | None = None  # default: a darker shade of ``color``


class _TextBox(NamedTuple):
    """Size (canvas pixels) and font settings of a label: text on a padded box."""

    width: int
    height: int
    font_scale: float
    thickness: int
    pad: int
    text_height: int  # from the box's top padding down to the baseline


class VisImage:
    """The canvas: the image resized by ``scale``, drawn on in place.

    Args:
        img: (H, W, 3) uint8 RGB image.
        scale: the canvas is ``(round(H * scale), round(W * scale))``.
    """

    def __init__(self, img: np.ndarray, scale: float = 1.0) -> None:
        self.scale = float(scale)
        self.height = max(1, round(img.shape[0] * self.scale))
        self.width = max(1, round(img.shape[1] * self.scale))
        if img.shape[:2] == (self.height, self.width):
            self.img = np.array(img, dtype=np.uint8)
        else:
            self.img = cv2.resize(img, (self.width, self.height), interpolation=cv2.INTER_LINEAR)

    def get_image(self) -> np.ndarray:
        """Returns a copy of the canvas, (H * scale, W * scale, 3) uint8 RGB."""
        return self.img.copy()

    def save(self, path: str) -> None:
        """Writes the canvas to ``path`` (format from the extension, PNG if none), atomically.

        Raises:
            ValueError, cv2.error: OpenCV cannot write that extension.
        """
        ext = os.path.splitext(path)[1].lower() or ".png"
        ok, data = cv2.imencode(ext, cv2.cvtColor(self.img, cv2.COLOR_RGB2BGR))
        if not ok:
            raise ValueError(f"OpenCV cannot encode an image as '{ext}'")
        atomic_write(path, lambda f: f.write(data.tobytes()))


def _label_space(metadata: Any) -> LabelSpace | None:
    if metadata is None or isinstance(metadata, LabelSpace):
        return metadata
    fields = metadata.as_dict() if hasattr(metadata, "as_dict") else dict(metadata)
    # Detectron2 code visualizes with the metadata of unregistered names too: an empty
    # Metadata means "no class names", not an error.
    if not set(fields) - {"name"}:
        return None
    return LabelSpace.from_metadata(fields)


def _index_map(values: np.ndarray, keys: Sequence[int]) -> np.ndarray:
    """(H, W) int32 map: ``i + 1`` where ``values == keys[i]``, 0 elsewhere."""
    low, high = int(values.min()), int(values.max())
    if high - low < 1 << 20:  # a lookup table of at most 4 MB: no sort needed
        lut = np.zeros(high - low + 1, np.int32)
        for i, key in enumerate(keys):
            if low <= key <= high:
                lut[key - low] = i + 1
        return lut[values - low]
    uniq, inverse = np.unique(values, return_inverse=True)
    slot = {key: i + 1 for i, key in enumerate(keys)}
    lut = np.array([slot.get(int(u), 0) for u in uniq.tolist()], np.int32)
    return lut[inverse.reshape(values.shape)]


def _boundary(ci: np.ndarray, width: int) -> np.ndarray:
    """Pixels within ``width`` of a pixel of another label, (H, W) bool."""
    edge = np.zeros(ci.shape, bool)
    vertical = ci[:-1] != ci[1:]
    horizontal = ci[:, :-1] != ci[:, 1:]
    edge[:-1] |= vertical
    edge[1:] |= vertical
    edge[:, :-1] |= horizontal
    edge[:, 1:] |= horizontal
    if width > 1:
        kernel = np.ones((2 * width - 1, 2 * width - 1), np.uint8)
        edge = cv2.dilate(edge.view(np.uint8), kernel).view(bool)
    return edge


class Visualizer:
    """Draws results and ground truth over one image; every ``draw_*`` adds to ``output``.

    Args:
        img_rgb: (H, W, 3) RGB image, uint8 (other dtypes are clipped to 0..255).
        metadata: the dataset's :class:`LabelSpace`, its ``Metadata`` or a metadata mapping
            (read with :meth:`LabelSpace.from_metadata`); None names classes ``class_{id}``
            and colours them from a fixed palette.
        scale: size of the drawing relative to the image.
        instance_mode: how instances are coloured, see :class:`ColorMode`.

    Raises:
        ValueError: the image is not (H, W, 3), ``scale`` is not positive, or the metadata
            has class fields that do not form a label space.
    """

    def __init__(
        self,
        img_rgb: np.ndarray,
        metadata: LabelSpace | Mapping[str, Any] | Any = None,
        scale: float = 1.0,
        instance_mode: ColorMode = ColorMode.IMAGE,
    ) -> None:
        img = _to_numpy(img_rgb)
        if img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"Visualizer needs an (H, W, 3) RGB image, got shape {img.shape}")
        if not scale > 0:
            raise ValueError(f"scale must be positive, got {scale}")
        self.img = np.clip(img, 0, 255).astype(np.uint8)
        self.label_space = _label_space(metadata)
        self.instance_mode = ColorMode(instance_mode)
        self.output = VisImage(self.img, scale)
        h, w = self.img.shape[:2]
        # Canvas row/column -> image row/column (nearest), to resize label maps.
        self._rows = np.minimum(((np.arange(self.output.height) + 0.5) / scale).astype(int), h - 1)
        self._cols = np.minimum(((np.arange(self.output.width) + 0.5) / scale).astype(int), w - 1)
        size = math.sqrt(self.output.height * self.output.width)
        self._line_width = max(1, round(size / 320))
        self._text_height = max(_MIN_TEXT_HEIGHT, round(size / 50))
        self._masks_drawn = 0

    # ---------------------------------------------------------------- classes
    def _class_name(self, c: int) -> str:
        ls = self.label_space
        return ls.classes[c] if ls is not None and 0 <= c < ls.num_classes else f"class_{c}"

    def _class_color(self, c: int) -> Color:
        ls = self.label_space
        return ls.colors[c] if ls is not None and 0 <= c < ls.num_classes else random_color(c)

    def _thing_color(self, c: int, seed: int) -> Color:
        if self.instance_mode == ColorMode.SEGMENTATION:
            return self._class_color(c)
        return jitter_color(self._class_color(c), seed)

    # ---------------------------------------------------------------- public drawing
    def draw_panoptic_seg(
        self,
        panoptic_seg: torch.Tensor | np.ndarray | tuple,
        segments_info: Sequence[Mapping[str, Any]] | None = None,
        area_threshold: int | None = None,
        alpha: float = 0.7,
        *,
        labels: bool = True,
        outlines: bool = True,
    ) -> VisImage:
        """Draws a panoptic segmentation: stuff in its class colour, things jittered.

        Args:
            panoptic_seg: (H, W) integer segment ids, -1 void (a model's ``(id_map,
                segments_info)`` tuple is unpacked).
            segments_info: one dict per segment: ``id``, contiguous ``category_id``, and
                optionally ``isthing``, ``score``, ``iscrowd``; ids it does not list are
                void. None: each id is ``category * label_divisor + instance``
                (DeepLab2), and ids of the ignore label or of unknown classes are void.
            area_threshold: segments with fewer pixels are not drawn.
            alpha: opacity of the fill.
            labels: write each segment's class (and score) inside it where it fits.
            outlines: outline every segment.

        Returns:
            ``self.output``.
        """
        if isinstance(panoptic_seg, tuple):
            panoptic_seg, info = panoptic_seg
            segments_info = info if segments_info is None else segments_info
        ids = self._check_map(_to_numpy(panoptic_seg), "panoptic_seg").astype(np.int64)
        if segments_info is None:
            segments_info = self._infer_segments(np.unique(ids[ids >= 0]))
        keys = [int(info["id"]) for info in segments_info]
        segments = [self._panoptic_segment(info) for info in segments_info]
        idx = _index_map(ids, keys)
        self._draw_segments(idx, segments, alpha, area_threshold, labels, outlines, grey_void=True)
        return self.output

    def draw_sem_seg(
        self,
        sem_seg: torch.Tensor | np.ndarray,
        area_threshold: int | None = None,
        alpha: float = 0.8,
        *,
        labels: bool = True,
        outlines: bool = True,
    ) -> VisImage:
        """Draws a semantic segmentation, each class in its colour, ignore_label untouched.

        Args:
            sem_seg: (H, W) integer class ids, or (C, H, W) scores (drawn as their argmax).
            area_threshold: classes with fewer pixels are not drawn.
            alpha: opacity of the fill.
            labels: write each class's name inside its region where it fits.
            outlines: outline every region.

        Returns:
            ``self.output``.
        """
        sem = _to_numpy(sem_seg)
        if sem.ndim == 3:
            sem = sem.argmax(axis=0)
        elif sem.ndim != 2 or not np.issubdtype(sem.dtype, np.integer):
            raise ValueError(
                f"sem_seg must be (H, W) integer ids or (C, H, W) scores, got {sem.dtype} "
                f"{sem.shape}"
            )
        sem = self._check_map(sem, "sem_seg").astype(np.int64)
        ignore = self.label_space.ignore_label if self.label_space is not None else 255
        keys = [c for c in np.unique(sem).tolist() if c != ignore and c >= 0]
        segments = [_Segment(self._class_color(c), self._class_name(c)) for c in keys]
        idx = _index_map(sem, keys)
        self._draw_segments(idx, segments, alpha, area_threshold, labels, outlines, grey_void=True)
        return self.output

    def draw_instance_predictions(self, predictions: Instances) -> VisImage:
        """Draws instance predictions: masks, boxes and ``"class 87%"`` labels.

        Args:
            predictions: an :class:`Instances` with any of ``pred_boxes`` (XYXY),
                ``pred_masks`` ((N, H, W) bool or :class:`BitMasks`), ``pred_classes``
                (contiguous ids) and ``scores``.

        Returns:
            ``self.output``.
        """
        n = len(predictions)
        fields = predictions.get_fields()
        boxes = _to_numpy(fields["pred_boxes"].tensor) if "pred_boxes" in fields else None
        scores = _to_numpy(fields["scores"]) if "scores" in fields else None
        classes = _to_numpy(fields["pred_classes"]) if "pred_classes" in fields else None
        masks = fields.get("pred_masks")
        masks = masks.tensor if isinstance(masks, BitMasks) else masks
        masks = None if masks is None else _to_numpy(masks).astype(bool)
        texts, colors = [], []
        for i in range(n):
            parts = [] if classes is None else [self._class_name(int(classes[i]))]
            if scores is not None:
                parts.append(f"{float(scores[i]) * 100:.0f}%")
            texts.append(" ".join(parts) or None)
            colors.append(random_color(i) if classes is None else self._thing_color(classes[i], i))
        # Detectron2's opacities: class colours are bolder, over a grey image fainter.
        alpha = {ColorMode.IMAGE: 0.5, ColorMode.SEGMENTATION: 0.8, ColorMode.IMAGE_BW: 0.3}
        if self.instance_mode == ColorMode.IMAGE_BW and masks is not None and n:
            self._grey(self._to_canvas(masks.any(axis=0)) == 0)
        mask_list = None if masks is None else list(masks)
        self._overlay_instances(
            boxes, mask_list, texts, colors, [False] * n, alpha[self.instance_mode]
        )
        return self.output

    def draw_dataset_dict(self, dic: Mapping[str, Any]) -> VisImage:
        """Draws the ground truth of a standard dataset dict.

        The panoptic labels (``pan_seg_file_name`` + ``segments_info``) if given, else the
        ``annotations`` (boxes, polygon or RLE masks), else the semantic labels
        (``sem_seg_file_name``). Crowd regions are hatched and labelled ``"(crowd)"``.

        Args:
            dic: the dict; category ids are contiguous ids.

        Returns:
            ``self.output``.
        """
        h, w = self.img.shape[:2]
        if dic.get("pan_seg_file_name") and dic.get("segments_info") is not None:
            ids = read_panoptic_png(dic["pan_seg_file_name"]).astype(np.int64)
            return self.draw_panoptic_seg(ids, dic["segments_info"], alpha=0.5)
        if dic.get("annotations"):
            annos = dic["annotations"]
            height, width = int(dic.get("height", h)), int(dic.get("width", w))
            if (height, width) != (h, w):
                raise ValueError(f"The dict is {height}x{width} but the image {h}x{w}")
            boxes, masks, texts, colors, crowds = [], [], [], [], []
            for i, anno in enumerate(annos):
                mode = BoxMode.parse(anno.get("bbox_mode", BoxMode.XYWH_ABS))
                boxes.append(BoxMode.convert(list(anno["bbox"]), mode, BoxMode.XYXY_ABS))
                seg = anno.get("segmentation")
                masks.append(None if seg is None else annotation_to_mask(seg, height, width))
                c, crowd = int(anno["category_id"]), bool(anno.get("iscrowd", 0))
                texts.append(self._class_name(c) + (" (crowd)" if crowd else ""))
                colors.append(self._class_color(c) if crowd else self._thing_color(c, i))
                crowds.append(crowd)
            self._overlay_instances(np.array(boxes, float), masks, texts, colors, crowds, 0.5)
            return self.output
        if dic.get("sem_seg_file_name") or dic.get("sem_seg") is not None:
            return self.draw_sem_seg(read_sem_seg(dict(dic), (h, w)), alpha=0.5)
        return self.output

    def draw_binary_mask(
        self,
        binary_mask: np.ndarray | torch.Tensor,
        color: Sequence[int] | None = None,
        *,
        edge_color: Sequence[int] | None = None,
        text: str | None = None,
        alpha: float = 0.5,
        area_threshold: int | None = None,
    ) -> VisImage:
        """Fills a mask, outlines it and writes ``text`` inside it if the text fits.

        Args:
            binary_mask: (H, W) mask of the image's size, nonzero inside.
            color: RGB fill; None picks the next colour of a fixed sequence.
            edge_color: RGB outline; None uses a darker shade of ``color``.
            text: the label, or None.
            alpha: opacity of the fill.
            area_threshold: a mask with fewer pixels is not drawn.

        Returns:
            ``self.output``.
        """
        mask = self._check_map(_to_numpy(binary_mask), "binary_mask") != 0
        if color is None:
            color = random_color(self._masks_drawn)
        self._masks_drawn += 1
        edge = None if edge_color is None else tuple(int(v) for v in edge_color)
        segment = _Segment(tuple(int(v) for v in color), text, edge_color=edge)
        self._draw_segments(mask.astype(np.int32), [segment], alpha, area_threshold)
        return self.output

    def draw_box(
        self, box_xyxy: Sequence[float], color: Sequence[int], line_width: int | None = None
    ) -> VisImage:
        """Outlines a box; the outline's outer pixels are the box's border pixels.

        Args:
            box_xyxy: ``(x0, y0, x1, y1)`` in image pixels (covers ``x0 <= x < x1``).
            color: RGB.
            line_width: in canvas pixels; None picks one from the canvas size.

        Returns:
            ``self.output``.
        """
        lw = line_width or self._line_width
        img, s = self.output.img, self.output.scale
        x0, y0 = (max(0, math.floor(v * s)) for v in box_xyxy[:2])
        x1 = min(self.output.width, max(x0 + 1, math.ceil(box_xyxy[2] * s)))
        y1 = min(self.output.height, max(y0 + 1, math.ceil(box_xyxy[3] * s)))
        if x0 >= x1 or y0 >= y1:  # entirely outside the canvas
            return self.output
        rgb = np.asarray(color, np.uint8)
        img[y0 : min(y0 + lw, y1), x0:x1] = rgb
        img[max(y1 - lw, y0) : y1, x0:x1] = rgb
        img[y0:y1, x0 : min(x0 + lw, x1)] = rgb
        img[y0:y1, max(x1 - lw, x0) : x1] = rgb
        return self.output

    # ---------------------------------------------------------------- segments
    def _check_map(self, array: np.ndarray, what: str) -> np.ndarray:
        if array.shape != self.img.shape[:2]:
            raise ValueError(
                f"{what} has shape {array.shape} but the image is {self.img.shape[:2]}"
            )
        return array

    def _infer_segments(self, ids: np.ndarray) -> list[dict[str, Any]]:
        """DeepLab2 ids ``category * label_divisor + instance`` -> segments_info."""
        ls = self.label_space
        divisor = ls.label_divisor if ls is not None else 1000
        infos = []
        for sid in ids.tolist():
            category = sid // divisor
            if ls is not None:
                if not (ls.is_thing(category) or category in ls.stuff_ids):
                    continue  # the ignore label or an unknown class: void
                isthing = ls.is_thing(category)
            else:
                isthing = sid % divisor != 0
            infos.append({"id": sid, "category_id": category, "isthing": isthing})
        return infos

    def _panoptic_segment(self, info: Mapping[str, Any]) -> _Segment:
        category = int(info["category_id"])
        isthing = info.get("isthing")
        if isthing is None:
            isthing = self.label_space is not None and self.label_space.is_thing(category)
        crowd = bool(info.get("iscrowd", 0))
        text = self._class_name(category) + (" (crowd)" if crowd else "")
        if info.get("score") is not None:
            text += f" {float(info['score']) * 100:.0f}%"
        if isthing and not crowd:
            # Jittered even in SEGMENTATION mode: a panoptic drawing tells instances apart.
            color = jitter_color(self._class_color(category), int(info["id"]))
        else:
            color = self._class_color(category)
        return _Segment(color, text, crowd)

    def _to_canvas(self, array: np.ndarray) -> np.ndarray:
        """(H, W) label map -> canvas size, nearest neighbour."""
        if array.shape == (self.output.height, self.output.width):
            return array
        return array[self._rows[:, None], self._cols[None, :]]

    def _grey(self, where: np.ndarray) -> None:
        img = self.output.img
        grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
        img[where] = grey[where][:, None]

    def _draw_segments(
        self,
        idx: np.ndarray,
        segments: Sequence[_Segment],
        alpha: float,
        area_threshold: int | None = None,
        labels: bool = True,
        outlines: bool = True,
        grey_void: bool = False,
    ) -> None:
        """Fills, outlines and labels segments given as an index map.

        Args:
            idx: (H, W) int32, ``k`` for pixels of ``segments[k - 1]``, 0 for untouched ones.
            segments: how each segment is drawn.
            alpha: opacity of the fill.
            area_threshold: segments with fewer pixels (in the image) are not drawn.
            labels: write each segment's text inside it where it fits.
            outlines: outline each segment.
            grey_void: in ``ColorMode.IMAGE_BW``, grey the image where ``idx`` is 0.
        """
        k = len(segments)
        if area_threshold:
            keep = np.bincount(idx.ravel(), minlength=k + 1) >= area_threshold
            idx = np.where(keep, np.arange(k + 1), 0).astype(np.int32)[idx]
        ci = self._to_canvas(idx)
        if grey_void and self.instance_mode == ColorMode.IMAGE_BW:
            self._grey(ci == 0)
        rows, cols = np.flatnonzero(ci.any(axis=1)), np.flatnonzero(ci.any(axis=0))
        if rows.size == 0:
            return
        # Work on the segments' bounding box plus a void margin of one pixel, so its
        # outlines are those of the whole map.
        y0, x0 = max(rows[0] - 1, 0), max(cols[0] - 1, 0)
        window = (slice(y0, rows[-1] + 2), slice(x0, cols[-1] + 2))
        ci, img = ci[window], self.output.img[window]
        colors = np.array([(0, 0, 0), *(s.color for s in segments)], np.float32)
        fill = ci > 0
        crowd = np.array([False, *(s.crowd for s in segments)])
        if crowd.any():
            stripe = 2 * self._line_width + 1
            diagonal = np.add.outer(
                np.arange(y0, y0 + ci.shape[0]), np.arange(x0, x0 + ci.shape[1])
            )
            fill &= ~(crowd[ci] & ((diagonal // stripe) % 2 == 1))
        picked = ci[fill]
        blended = img[fill].astype(np.float32) * np.float32(1 - alpha) + colors[picked] * alpha
        img[fill] = np.round(blended).astype(np.uint8)
        if outlines:
            edges = np.array(
                [(0, 0, 0), *(s.edge_color or darker(s.color) for s in segments)], np.uint8
            )
            edge = _boundary(ci, self._line_width) & (ci > 0)
            img[edge] = edges[ci[edge]]
        if labels:
            for label, (segment, box) in enumerate(zip(segments, ndimage.find_objects(ci, k)), 1):
                if segment.text and box is not None:
                    origin = (box[0].start + y0, box[1].start + x0)
                    self._label_inside(ci[box] == label, origin, segment.text, segment.color)

    # ---------------------------------------------------------------- text
    def _text_box(self, text: str, height: int) -> _TextBox:
        """The box of a label whose capitals are about ``height`` canvas pixels tall."""
        thickness = 1 if height < 20 else 2
        font_scale = cv2.getFontScaleFromHeight(_FONT, height, thickness)
        (w, h), baseline = cv2.getTextSize(text, _FONT, font_scale, thickness)
        pad = max(1, height // 6)
        # The bottom padding is the room OpenCV reports below the baseline (descenders).
        return _TextBox(w + 2 * pad, pad + h + baseline, font_scale, thickness, pad, h)

    def _label_inside(
        self, mask: np.ndarray, origin: tuple[int, int], text: str, color: Color
    ) -> None:
        """Writes ``text`` where its box (with a margin for the outline) lies inside ``mask``.

        Args:
            mask: (h, w) bool crop of the canvas.
            origin: canvas ``(row, column)`` of the crop's top-left pixel.
            text: the label.
            color: the segment's colour (the letters get a light shade of it).
        """
        # A void ring, so that the canvas border also counts as the segment's boundary.
        padded = np.pad(mask, 1).astype(np.uint8)
        dist = cv2.distanceTransform(padded, cv2.DIST_L2, 3)
        margin = 2 * self._line_width
        heights = [self._text_height]  # then smaller, down to the smallest readable size
        while heights[-1] > _MIN_TEXT_HEIGHT:
            heights.append(max(_MIN_TEXT_HEIGHT, int(heights[-1] * 0.75)))
        for height in heights:
            box = self._text_box(text, height)
            kernel_h, kernel_w = box.height + margin, box.width + margin
            if kernel_h > mask.shape[0] or kernel_w > mask.shape[1]:
                continue
            # Centres of the kernel-sized rectangles lying fully inside the segment.
            kernel = np.ones((kernel_h, kernel_w), np.uint8)
            inside = cv2.erode(padded, kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0)
            score = np.where(inside > 0, dist, -1.0)
            y, x = np.unravel_index(int(np.argmax(score)), score.shape)
            if score[y, x] < 0:
                continue
            # The kernel's anchor is its centre: rectangle rows y - kernel_h // 2 ....
            top = origin[0] + y - 1 - kernel_h // 2 + margin // 2
            left = origin[1] + x - 1 - kernel_w // 2 + margin // 2
            self._draw_label(text, left, top, height, lighter(color))
            return

    def _draw_label(self, text: str, left: int, top: int, height: int, color: Color) -> None:
        """Draws ``text`` on a dark box whose top-left canvas pixel is ``(left, top)``."""
        box = self._text_box(text, height)
        img = self.output.img
        left = int(min(max(left, 0), max(self.output.width - box.width, 0)))
        top = int(min(max(top, 0), max(self.output.height - box.height, 0)))
        backdrop = img[top : top + box.height, left : left + box.width]
        backdrop[:] = (backdrop * _BACKDROP).astype(np.uint8)
        origin = (left + box.pad, top + box.pad + box.text_height)  # the baseline's left end
        cv2.putText(img, text, origin, _FONT, box.font_scale, color, box.thickness, cv2.LINE_AA)

    # ---------------------------------------------------------------- instances
    def _overlay_instances(
        self,
        boxes: np.ndarray | None,
        masks: Sequence[np.ndarray | None] | None,
        texts: Sequence[str | None],
        colors: Sequence[Color],
        crowds: Sequence[bool],
        alpha: float,
    ) -> None:
        """Masks, then boxes, then labels at the boxes; larger instances first so that small
        ones stay visible.

        Args:
            boxes: (N, 4) XYXY in image pixels, or None.
            masks: per instance an (H, W) bool mask or None; or None for no masks.
            texts: label of each instance, or None.
            colors: RGB of each instance.
            crowds: whether each instance is a crowd region (hatched).
            alpha: opacity of the mask fill.
        """
        n = len(texts)
        if masks is not None:
            areas = [0 if m is None else int(np.count_nonzero(m)) for m in masks]
        elif boxes is not None:
            areas = list((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))
        else:
            return
        order = sorted(range(n), key=lambda i: -areas[i])
        for i in order:
            mask = None if masks is None else masks[i]
            if mask is not None:
                # Without a box, the label goes inside the mask.
                segment = _Segment(colors[i], texts[i] if boxes is None else None, crowds[i])
                idx = self._check_map(mask, "an instance mask").astype(np.int32)
                self._draw_segments(idx, [segment], alpha)
            if boxes is not None:
                self.draw_box(boxes[i], colors[i])
        # Labels last, so that no mask or box covers them.
        for i in order if boxes is not None else ():
            if texts[i]:
                self._label_at_box(texts[i], boxes[i], colors[i])

    def _label_at_box(self, text: str, box: np.ndarray, color: Color) -> None:
        """Label above the box's top-left corner, or just inside it at the canvas top."""
        box_h = self._text_box(text, self._text_height).height
        x0, y0 = box[0] * self.output.scale, box[1] * self.output.scale
        top = y0 - box_h if y0 >= box_h else y0 + self._line_width
        self._draw_label(text, math.floor(x0), math.floor(top), self._text_height, lighter(color))

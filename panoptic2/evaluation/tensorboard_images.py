"""Ground truth | prediction overlays of a few evaluated images, for TensorBoard.

:class:`TensorBoardImages` runs beside the metric evaluators (``TEST.VIS_IMAGES K``): it
draws the first ``K`` images of the dataset that pass through the main process, ground
truth beside prediction, and hands them to the training run's event storage, which the
TensorBoard writer logs at the evaluated iteration. Outside training (``--eval-only``), it
writes them to an event file in the output folder itself.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from panoptic2.data.label_space import LabelSpace
from panoptic2.utils import comm

from .evaluator import DatasetEvaluator

__all__ = ["TensorBoardImages", "overlay_pair"]

logger = logging.getLogger(__name__)


def overlay_pair(
    inp: Mapping[str, Any], out: Mapping[str, Any], label_space: LabelSpace
) -> np.ndarray:
    """One image's ground truth | prediction, side by side.

    Args:
        inp: the evaluated dataset dict (``file_name`` and its ground truth).
        out: the model's output (``panoptic_seg``, else ``sem_seg``, else ``instances``).
        label_space: names and colours.

    Returns:
        ``(H, 2 W, 3)`` uint8 RGB.
    """
    from panoptic2.data.reading import read_image
    from panoptic2.utils.visualizer import Visualizer

    # The mapper's "image" tensor is the resized network input: read the original instead.
    record = {k: v for k, v in inp.items() if k != "image"}
    image = read_image(record, "RGB")
    truth = Visualizer(image, label_space).draw_dataset_dict(record).get_image()
    drawing = Visualizer(image, label_space)
    if "panoptic_seg" in out:
        id_map, segments = out["panoptic_seg"]
        predicted = drawing.draw_panoptic_seg(torch.as_tensor(id_map).cpu(), segments)
    elif "sem_seg" in out:
        predicted = drawing.draw_sem_seg(torch.as_tensor(out["sem_seg"]).cpu())
    else:
        predicted = drawing.draw_instance_predictions(out["instances"].to("cpu"))
    return np.concatenate([truth, predicted.get_image()], axis=1)


class TensorBoardImages(DatasetEvaluator):
    """Logs ``num_images`` ground truth | prediction overlays of an evaluation.

    Args:
        dataset_name: the evaluated dataset (the images' tag prefix).
        label_space: names and colours.
        num_images: how many images to log.
        log_dir: where an eval-only run writes its event file.
    """

    def __init__(
        self, dataset_name: str, *, label_space: LabelSpace, num_images: int, log_dir: str
    ) -> None:
        self._dataset_name = dataset_name
        self.label_space = label_space
        self._num_images = int(num_images)
        self._log_dir = log_dir
        self.reset()

    def reset(self) -> None:
        self._images: list[tuple[str, np.ndarray]] = []

    def process(self, inputs: list[dict], outputs: list[dict]) -> None:
        # The main process's first images: drawing on every rank would only be thrown away.
        if not comm.is_main_process():
            return
        for inp, out in zip(inputs, outputs):
            if len(self._images) >= self._num_images:
                return
            name = str(inp.get("file_name", inp.get("image_id")))
            self._images.append((name, overlay_pair(inp, out, self.label_space)))

    def evaluate(self) -> dict[str, Any]:
        if not comm.is_main_process() or not self._images:
            return {}
        from panoptic2.utils.events import get_event_storage

        tags = [(f"{self._dataset_name}/{i}", image) for i, (_, image) in enumerate(self._images)]
        try:
            storage = get_event_storage()
        except RuntimeError:  # not inside a training run
            storage = None
        if storage is not None:
            for tag, image in tags:
                storage.put_image(tag, torch.from_numpy(image).permute(2, 0, 1).float() / 255)
        else:
            from torch.utils.tensorboard import SummaryWriter

            writer = SummaryWriter(self._log_dir)
            for tag, image in tags:
                writer.add_image(tag, image, 0, dataformats="HWC")
            writer.close()
        logger.info(
            "Logged %d evaluation images of %s to TensorBoard", len(tags), self._dataset_name
        )
        return {}

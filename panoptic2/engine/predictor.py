"""``DefaultPredictor``: a trained model applied to images in memory (Detectron2's name).

The predictor builds the model from a config, loads ``MODEL.WEIGHTS`` (the model's label
space comes from the config's datasets or, when the config names none, from the
checkpoint), and runs one image or a batch through the inference-time resize and the model.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from panoptic2.checkpoint import Checkpointer
from panoptic2.data.transforms import AugInput, build_augmentation
from panoptic2.modeling import build_model

__all__ = ["DefaultPredictor"]

_FORMATS = ("BGR", "RGB")


class DefaultPredictor:
    """Runs a trained model on images given as arrays.

    Example::

        predictor = DefaultPredictor(cfg)  # cfg.MODEL.WEIGHTS names a checkpoint
        outputs = predictor(cv2.imread("input.jpg"))  # {"panoptic_seg": ..., "sem_seg": ...}
        names = predictor.model.label_space.classes

    Args:
        cfg: the config; ``MODEL.WEIGHTS`` is loaded, ``MODEL.DEVICE`` used, ``INPUT.FORMAT``
            is the channel order the model expects and ``INPUT.MIN_SIZE_TEST`` /
            ``MAX_SIZE_TEST`` the resize applied before it.
        input_format: channel order of the arrays passed to the predictor: ``"BGR"`` (the
            default, as ``cv2.imread`` returns them) or ``"RGB"``.
    """

    def __init__(self, cfg: Any, input_format: str = "BGR") -> None:
        if input_format not in _FORMATS:
            raise ValueError(f"input_format must be one of {_FORMATS}, got {input_format!r}")
        if cfg.INPUT.FORMAT not in _FORMATS:
            raise ValueError(f"INPUT.FORMAT must be one of {_FORMATS}, got {cfg.INPUT.FORMAT!r}")
        self.cfg = cfg.clone()
        self.model = build_model(self.cfg)
        self.model.eval()
        checkpointer = Checkpointer(
            self.model, allow_partial_weights=self.cfg.MODEL.ALLOW_PARTIAL_WEIGHTS
        )
        checkpointer.load(self.cfg.MODEL.WEIGHTS)
        self.input_format = input_format
        self.augmentations = build_augmentation(self.cfg, is_train=False)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _model_input(self, image: Any, index: int | None) -> dict[str, Any]:
        where = "the image" if index is None else f"image {index} of the batch"
        if isinstance(image, torch.Tensor):
            image = image.cpu().numpy()
        if image is None:
            raise TypeError(
                f"{where} is None: cv2.imread returns None for a file it cannot read "
                "(missing, or not an image)"
            )
        if not isinstance(image, np.ndarray):
            raise TypeError(f"{where} must be a numpy array, got {type(image).__name__}")
        if image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 1):
            raise ValueError(
                f"{where} is grayscale {image.shape}; the model takes (H, W, 3) colour images: "
                "convert it, e.g. cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)"
            )
        if image.ndim == 3 and image.shape[2] == 4:
            raise ValueError(
                f"{where} has 4 channels (with alpha); drop the alpha channel, e.g. "
                "cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)"
            )
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"{where} must have shape (H, W, 3), got {image.shape}")
        if image.dtype != np.uint8:
            raise ValueError(
                f"{where} must be uint8 (0-255), got {image.dtype}; scale a float image with "
                "(image * 255).round().astype(np.uint8) if its values lie in [0, 1]"
            )
        height, width = image.shape[:2]
        if self.input_format != self.cfg.INPUT.FORMAT:
            image = image[:, :, ::-1]
        aug = AugInput(np.ascontiguousarray(image))
        aug.apply_augmentations(self.augmentations)
        tensor = torch.from_numpy(np.ascontiguousarray(aug.image.transpose(2, 0, 1)))
        return {"image": tensor, "height": height, "width": width}

    @torch.no_grad()
    def __call__(self, image: np.ndarray | Sequence[np.ndarray]) -> Any:
        """Predicts on one image, or on a list of images as one batch.

        Args:
            image: ``(H, W, 3)`` uint8 in the predictor's ``input_format``, or a list of them.

        Returns:
            The model's output dict for the image (at its original size), or the list of
            them for a list.

        Raises:
            ValueError: an image is grayscale, has an alpha channel, is not uint8 or has
                another shape (the message says how to convert it).
        """
        if isinstance(image, (list, tuple)):
            inputs = [self._model_input(im, i) for i, im in enumerate(image)]
            return self.model(inputs)
        return self.model([self._model_input(image, None)])[0]

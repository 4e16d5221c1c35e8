"""The single preprocessing function used by training, evaluation, prediction and export.

It mirrors PaddleOCR's recogniser preprocessing (``resize_norm_img``): keep the aspect ratio, resize
to the target height, scale to [-1, 1] with ``(x / 255 - 0.5) / 0.5``, and right-pad with zeros
(mid-grey after normalisation) to the target width. Images wider than the target are squeezed to
the target width in fixed-width mode (training batches), or the width grows to fit the image in
dynamic mode (what stock paddleocr does at inference). The same function everywhere is what keeps
an exported model from disagreeing with training (the most common peer complaint).
"""
from __future__ import annotations

import math
from typing import Sequence, Tuple

import cv2
import numpy as np

from vinocr.errors import VinocrError

#: Default recogniser input (C, H, W): PP-OCRv4's 48 x 320.
DEFAULT_IMAGE_SHAPE = (3, 48, 320)


def target_width(image_hw: Tuple[int, int], height: int, width: int, dynamic: bool) -> int:
    """Padded output width: ``width``, or in dynamic mode wide enough for the image's aspect."""
    if not dynamic:
        return width
    h, w = image_hw
    return max(width, int(height * (w / float(h))))


def resize_norm(image: np.ndarray, image_shape: Sequence[int] = DEFAULT_IMAGE_SHAPE,
                dynamic_width: bool = False) -> Tuple[np.ndarray, float]:
    """BGR uint8 (H, W, 3) -> float32 (3, H', W') in [-1, 1], plus the valid (unpadded) width ratio.

    Args:
        image: BGR uint8 image, or a 2-D grey image (expanded to 3 channels).
        image_shape: (C, H, W) of the output; W is the padded width.
        dynamic_width: grow W to fit wide images instead of squeezing them.
    """
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] == 0 or image.shape[1] == 0:
        raise VinocrError(f"expected a BGR image of shape (H, W, 3), got {image.shape}")
    channels, height, width = (int(v) for v in image_shape)
    h, w = image.shape[:2]
    out_w = target_width((h, w), height, width, dynamic_width)
    ratio = w / float(h)
    resized_w = out_w if math.ceil(height * ratio) > out_w else int(math.ceil(height * ratio))
    resized = cv2.resize(image, (resized_w, height)).astype(np.float32)
    resized = resized.transpose((2, 0, 1)) / 255.0
    resized -= 0.5
    resized /= 0.5
    out = np.zeros((channels, height, out_w), dtype=np.float32)
    out[:, :, :resized_w] = resized
    return out, min(1.0, resized_w / float(out_w))


def batch_resize_norm(images: Sequence[np.ndarray],
                      image_shape: Sequence[int] = DEFAULT_IMAGE_SHAPE) -> np.ndarray:
    """A (N, 3, H, W) batch for inference, padded to the widest image's aspect (paddleocr's rule)."""
    _, height, width = (int(v) for v in image_shape)
    max_ratio = max([width / float(height)] + [im.shape[1] / float(im.shape[0]) for im in images])
    batch_w = int(height * max_ratio)
    return np.stack([resize_norm(im, (3, height, batch_w))[0] for im in images])

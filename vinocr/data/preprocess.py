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


def join_rows(image: np.ndarray, max_aspect: float) -> np.ndarray:
    """A two-row crop (a square plate) as one line: top row, then bottom row, side by side.

    Crops at least ``max_aspect`` times as wide as high (one-row plates, text lines), and every
    crop when ``max_aspect`` is 0, come back unchanged. Otherwise the crop is cut at the row in
    its middle 40% that the fewest vertical strokes cross (the gap between the rows), and the top
    part is scaled to the bottom part's height. A CTC recogniser reads left to right; squeezed
    whole, a two-row plate puts both rows' characters in the same frames.
    """
    h, w = image.shape[:2]
    if max_aspect <= 0 or w >= max_aspect * h or h < 8:
        return image
    grey = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    strokes = np.abs(cv2.Sobel(grey.astype(np.float32), cv2.CV_32F, 1, 0, ksize=3))
    # The outer columns hold the plate's border and bands, not characters.
    profile = strokes[:, int(0.08 * w):max(int(0.08 * w) + 1, int(0.92 * w))].mean(axis=1)
    k = max(1, h // 16)
    profile = np.convolve(profile, np.ones(k) / k, mode="same")
    lo, hi = int(0.3 * h), max(int(0.3 * h) + 1, int(0.7 * h))
    cut = lo + int(np.argmin(profile[lo:hi]))
    top, bottom = image[:cut], image[cut:]
    height = bottom.shape[0]
    top_w = max(1, int(round(top.shape[1] * height / float(top.shape[0]))))
    top = cv2.resize(top, (top_w, height), interpolation=cv2.INTER_LINEAR)
    return np.concatenate([top, bottom], axis=1)


def resize_norm(image: np.ndarray, image_shape: Sequence[int] = DEFAULT_IMAGE_SHAPE,
                dynamic_width: bool = False, two_row_max_aspect: float = 0.0
                ) -> Tuple[np.ndarray, float]:
    """BGR uint8 (H, W, 3) -> float32 (3, H', W') in [-1, 1], plus the valid (unpadded) width ratio.

    Args:
        image: BGR uint8 image, or a 2-D grey image (expanded to 3 channels).
        image_shape: (C, H, W) of the output; W is the padded width.
        dynamic_width: grow W to fit wide images instead of squeezing them.
        two_row_max_aspect: crops narrower than this (width / height) are read as two rows
            (:func:`join_rows`); 0 reads every crop as one line.
    """
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] == 0 or image.shape[1] == 0:
        raise VinocrError(f"expected a BGR image of shape (H, W, 3), got {image.shape}")
    image = join_rows(image, two_row_max_aspect)
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
                      image_shape: Sequence[int] = DEFAULT_IMAGE_SHAPE,
                      two_row_max_aspect: float = 0.0) -> np.ndarray:
    """A (N, 3, H, W) batch for inference, padded to the widest image's aspect (paddleocr's rule).
    ``two_row_max_aspect``: as in :func:`resize_norm`."""
    _, height, width = (int(v) for v in image_shape)
    images = [join_rows(im, two_row_max_aspect) for im in images]
    max_ratio = max([width / float(height)] + [im.shape[1] / float(im.shape[0]) for im in images])
    batch_w = int(height * max_ratio)
    return np.stack([resize_norm(im, (3, height, batch_w))[0] for im in images])

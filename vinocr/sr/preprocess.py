"""Plate geometry for SR: pad to the plate aspect, resize to the LR/HR grid, tensors in [0, 1].

Plates are padded with grey to aspect ``W / H = 3`` before resizing (as in the LP-SR papers), so a
plate is never stretched and LR, SR and HR images share one coordinate frame. The generator works
on BGR images scaled to [0, 1]; the recogniser's own normalisation is applied after SR.
"""
from __future__ import annotations

from typing import List, Sequence, Tuple

import cv2
import numpy as np

from vinocr.errors import VinocrError

#: Default LR input (H, W) and plate aspect used by the SR configs.
LR_SHAPE: Tuple[int, int] = (16, 48)
PLATE_ASPECT = 3.0
PAD_VALUE = 127


def pad_to_aspect(image: np.ndarray, aspect: float = PLATE_ASPECT, fill: int = PAD_VALUE
                  ) -> np.ndarray:
    """Centre-pad ``image`` (H, W, 3) with grey so that W / H == ``aspect`` (to the pixel)."""
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] == 0 or image.shape[1] == 0:
        raise VinocrError(f"expected a BGR image of shape (H, W, 3), got {image.shape}")
    h, w = image.shape[:2]
    if w >= aspect * h:
        new_h, new_w = int(round(w / aspect)), w
    else:
        new_h, new_w = h, int(round(h * aspect))
    new_h, new_w = max(new_h, h), max(new_w, w)
    if (new_h, new_w) == (h, w):
        return image
    top, left = (new_h - h) // 2, (new_w - w) // 2
    out = np.full((new_h, new_w, 3), fill, dtype=image.dtype)
    out[top:top + h, left:left + w] = image
    return out


def fit(image: np.ndarray, hw: Sequence[int], aspect: float = PLATE_ASPECT) -> np.ndarray:
    """Pad ``image`` to ``aspect`` then resize it to ``hw`` = (H, W): area filter when shrinking,
    bicubic when enlarging."""
    h, w = int(hw[0]), int(hw[1])
    padded = pad_to_aspect(image, aspect)
    shrink = padded.shape[0] > h
    return cv2.resize(padded, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)


def to_tensor(images: Sequence[np.ndarray]) -> np.ndarray:
    """Equal-sized BGR uint8 images -> float32 (N, 3, H, W) in [0, 1].

    Stacks of frames (each item (F, H, W, 3), see :func:`frame_stacks`) become (N, 3F, H, W):
    the input of a multi-frame generator, frame after frame along the channels.
    """
    if not images:
        raise VinocrError("no images")
    arr = np.stack(images).astype(np.float32) / 255.0
    if arr.ndim == 5:
        n, f, h, w, c = arr.shape
        return arr.transpose(0, 1, 4, 2, 3).reshape(n, f * c, h, w).copy()
    return arr.transpose(0, 3, 1, 2).copy()


def frame_stacks(frames: np.ndarray, n: int) -> np.ndarray:
    """A track's registered LR frames [K, H, W, 3] -> K stacks [K, n, H, W, 3] for a generator
    that reads ``n`` frames: stack ``i`` starts with frame ``i`` and continues with the frames
    after it, cyclically (a track with fewer than ``n`` frames repeats them). So a multi-frame
    generator gives one SR image per frame, as a single-frame one does, and frame fusion after
    recognition works on either.
    """
    k = len(frames)
    if k == 0:
        raise VinocrError("a track needs at least one frame")
    return np.stack([frames[[(i + j) % k for j in range(n)]] for i in range(k)])


def to_uint8(batch: np.ndarray) -> List[np.ndarray]:
    """float (N, 3, H, W) in [0, 1] (values outside are clipped) -> BGR uint8 images."""
    arr = np.clip(np.asarray(batch, dtype=np.float32) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return [a.transpose(1, 2, 0).copy() for a in arr]


def bicubic_upscale(image: np.ndarray, scale: int) -> np.ndarray:
    """The baseline the generator must beat: LR image enlarged ``scale`` times bicubically."""
    h, w = image.shape[:2]
    return cv2.resize(image, (w * scale, h * scale), interpolation=cv2.INTER_CUBIC)

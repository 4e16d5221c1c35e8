"""Camera damage applied to a finished crop, in families that match phone and CCTV captures.

Each family is one function ``(image uint8 BGR, rng) -> image``. The style pools
(:mod:`vinocr.data.synth.pools`) decide which families a crop may draw from, so that a held-out
test set can carry kinds of damage that training never saw: Gaussian and defocus blur train,
motion blur is held out; area resampling trains, aliased low-resolution capture is held out; and
so on. Families combine in the order a camera applies them (scene geometry and light, then optics,
then the sensor, then compression), whatever order they were drawn in.
"""
from __future__ import annotations

import math
from typing import Callable, Dict, List, Sequence, Tuple

import cv2
import numpy as np

from vinocr.data.synth import textures as tx

_Image = np.ndarray


_u = tx.uniform


def _to_u8(img: np.ndarray) -> np.ndarray:
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)


# --- scene geometry ---------------------------------------------------------------------------

def curvature(img: _Image, rng: np.random.Generator) -> _Image:
    """Text on a curved surface (a bent plate, a cylinder): the line bows up or down."""
    h, w = img.shape[:2]
    bow = _u(rng, 0.04, 0.1) * h * (1 if rng.random() < 0.5 else -1)
    xs = np.arange(w, dtype=np.float32)
    ys = np.arange(h, dtype=np.float32)
    t = (xs - w / 2.0) / max(w / 2.0, 1.0)
    map_x = np.broadcast_to(xs[None, :], (h, w)).astype(np.float32)
    map_y = (ys[:, None] + np.float32(bow) * (t[None, :] ** 2 - 0.5)).astype(np.float32)
    return cv2.remap(img, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def crop_jitter(img: _Image, rng: np.random.Generator) -> _Image:
    """A detector's loose or tight box: a few rows and columns cut from the edges."""
    h, w = img.shape[:2]
    top = int(h * _u(rng, 0.0, 0.1))
    bottom = int(h * _u(rng, 0.0, 0.1))
    side = max(0, int(h * 0.06))
    left = int(rng.integers(0, side + 1))
    right = int(rng.integers(0, side + 1))
    return img[top:h - bottom, left:w - right]


# --- light --------------------------------------------------------------------------------------

def shading(img: _Image, rng: np.random.Generator) -> _Image:
    """Uneven light: a smooth ramp darker on one side, plus vignetting."""
    h, w = img.shape[:2]
    gain = tx.linear_gradient(rng, h, w, _u(rng, 0.5, 0.8), 1.0)
    if rng.random() < 0.5:
        gain = gain * (1.0 - 0.35 * tx.gaussian_spot(rng, h, w, (0.3, 0.8), (1.0, 3.0)))
    return _to_u8(img.astype(np.float32) * gain[..., None])


def glare_shadow(img: _Image, rng: np.random.Generator) -> _Image:
    """A hard shadow edge across the text, or a saturating glare blob."""
    h, w = img.shape[:2]
    out = img.astype(np.float32)
    if rng.random() < 0.5:
        angle = _u(rng, -1.2, 1.2)
        c = _u(rng, 0.2, 0.8) * w
        xs = np.arange(w, dtype=np.float32)[None, :]
        ys = np.arange(h, dtype=np.float32)[:, None]
        side = (xs - c) * math.cos(angle) + (ys - h / 2.0) * math.sin(angle) * 4.0
        soft = 1.0 / (1.0 + np.exp(np.clip(-side / max(0.5, _u(rng, 0.5, 2.5)), -30, 30)))
        out *= (1.0 - _u(rng, 0.35, 0.65) * soft)[..., None]
    else:
        spot = tx.gaussian_spot(rng, h, w, (0.04, 0.2), (0.3, 1.0))
        out += (spot * _u(rng, 90, 200))[..., None]
    return _to_u8(out)


def low_contrast(img: _Image, rng: np.random.Generator) -> _Image:
    """Washed-out capture: every tone pulled towards the mean (fog, dirty lens, flat light)."""
    out = img.astype(np.float32)
    mean = float(out.mean())
    return _to_u8(mean + (out - mean) * np.float32(_u(rng, 0.3, 0.55)))


# --- optics -------------------------------------------------------------------------------------

def defocus(img: _Image, rng: np.random.Generator) -> _Image:
    """Out-of-focus blur: a disc kernel (not a Gaussian) of radius 1-2.2 px."""
    r = _u(rng, 1.0, 2.2)
    size = int(math.ceil(r)) * 2 + 1
    yy, xx = np.mgrid[:size, :size].astype(np.float32) - size // 2
    kernel = np.clip(r + 0.5 - np.sqrt(xx * xx + yy * yy), 0.0, 1.0)
    return cv2.filter2D(img, -1, kernel / kernel.sum(), borderType=cv2.BORDER_REFLECT)


def motion_blur(img: _Image, rng: np.random.Generator) -> _Image:
    """Camera or vehicle motion: a line kernel 3-8 px long, mostly horizontal."""
    length = int(rng.integers(3, 9))
    angle = _u(rng, -25, 25) if rng.random() < 0.8 else _u(rng, 0, 180)
    kernel = np.zeros((length, length), np.float32)
    kernel[length // 2, :] = 1.0
    rot = cv2.getRotationMatrix2D(((length - 1) / 2.0, (length - 1) / 2.0), angle, 1.0)
    kernel = cv2.warpAffine(kernel, rot, (length, length))
    return cv2.filter2D(img, -1, kernel / max(kernel.sum(), 1e-6),
                        borderType=cv2.BORDER_REFLECT)


# --- resolution ---------------------------------------------------------------------------------

def _resample(img: _Image, rng: np.random.Generator, cap_px: Tuple[float, float],
              down: int, up: int) -> _Image:
    """Capture the text at a cap height of ``cap_px`` pixels, then scale back to the crop size."""
    h, w = img.shape[:2]
    factor = _u(rng, *cap_px) / (0.6 * h)  # text is about 0.6 of the crop height
    if factor >= 0.95:
        return img
    small = cv2.resize(img, (max(4, int(w * factor)), max(4, int(h * factor))),
                       interpolation=down)
    return cv2.resize(small, (w, h), interpolation=up)


def lowres_area(img: _Image, rng: np.random.Generator) -> _Image:
    """Far or small text: 12-20 px cap height, area-averaged, bilinear back up."""
    return _resample(img, rng, (12.0, 20.0), cv2.INTER_AREA, cv2.INTER_LINEAR)


def lowres_cubic(img: _Image, rng: np.random.Generator) -> _Image:
    """A cheap sensor's capture: 10-16 px cap height sampled without filtering (aliasing), bicubic
    back up."""
    down = cv2.INTER_NEAREST if rng.random() < 0.5 else cv2.INTER_LINEAR
    return _resample(img, rng, (10.0, 16.0), down, cv2.INTER_CUBIC)


# --- sensor -------------------------------------------------------------------------------------

def gauss_noise(img: _Image, rng: np.random.Generator) -> _Image:
    """Grey sensor noise, standard deviation 4-10 grey levels."""
    h, w = img.shape[:2]
    noise = tx.texture("sensor", rng, h, w) * np.float32(_u(rng, 4, 10))
    return _to_u8(img.astype(np.float32) + noise)


def colour_noise(img: _Image, rng: np.random.Generator) -> _Image:
    """Night-time CCTV noise: strong independent per-channel noise plus hot pixels."""
    h, w = img.shape[:2]
    noise = tx.texture("noise3", rng, h, w) * np.float32(_u(rng, 7, 16))
    out = img.astype(np.float32) + noise
    hot = tx.texture("noise", rng, h, w) > _u(rng, 2.6, 3.2)
    out[hot] = _u(rng, 0, 255)
    return _to_u8(out)


# --- compression --------------------------------------------------------------------------------

def jpeg(img: _Image, rng: np.random.Generator) -> _Image:
    """JPEG at quality 30-70 (phone uploads, web forms)."""
    return tx.jpeg_roundtrip(img, int(rng.integers(30, 71)))


def jpeg_heavy(img: _Image, rng: np.random.Generator) -> _Image:
    """JPEG at quality 12-28 (CCTV streams, messaging apps), often after a chroma downsample."""
    return tx.jpeg_roundtrip(img, int(rng.integers(12, 29)))


#: Family name -> function, in the order a camera applies them.
FAMILIES: Dict[str, Callable[[_Image, np.random.Generator], _Image]] = {
    "curvature": curvature,
    "crop_jitter": crop_jitter,
    "shading": shading,
    "glare_shadow": glare_shadow,
    "low_contrast": low_contrast,
    "defocus": defocus,
    "motion_blur": motion_blur,
    "lowres_area": lowres_area,
    "lowres_cubic": lowres_cubic,
    "gauss_noise": gauss_noise,
    "colour_noise": colour_noise,
    "jpeg": jpeg,
    "jpeg_heavy": jpeg_heavy,
}
_ORDER = {name: i for i, name in enumerate(FAMILIES)}


def degrade(img: _Image, rng: np.random.Generator, families: Sequence[str], p: float,
            max_families: int) -> Tuple[_Image, List[str]]:
    """With probability ``p``, apply 1..``max_families`` distinct families drawn from
    ``families``; return the image and the names applied (in application order)."""
    if not families or max_families < 1 or rng.random() >= p:
        return img, []
    k = int(rng.integers(1, min(max_families, len(families)) + 1))
    picked = [families[int(i)] for i in rng.choice(len(families), size=k, replace=False)]
    picked.sort(key=_ORDER.__getitem__)
    for name in picked:
        img = FAMILIES[name](img, rng)
    return img, picked

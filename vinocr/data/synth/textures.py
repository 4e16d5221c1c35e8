"""Cached noise textures and cheap vectorised lighting / degradation helpers.

Generating fresh noise fields for every crop would dominate the render time, so a few large tiles
are built once per process from a *fixed* seed and every crop takes a random window (and flip) of
them. The window position comes from the caller's generator, so output stays deterministic.
"""
from __future__ import annotations

import functools
from typing import Tuple

import cv2
import numpy as np

TILE_H = 256
TILE_W = 1024
_TEXTURE_SEED = 20260517


def _normalise(a: np.ndarray) -> np.ndarray:
    a = a - a.mean()
    return (a / (a.std() + 1e-6)).astype(np.float32)


def texture_tile(kind: str) -> np.ndarray:
    """The cached, read-only tile of ``kind`` (see :func:`_build_tile`)."""
    return _cached_tile(kind)


@functools.lru_cache(maxsize=None)
def _cached_tile(kind: str) -> np.ndarray:
    tile = _build_tile(kind)
    tile.setflags(write=False)  # shared by every crop: callers must never modify it in place
    return tile


def _build_tile(kind: str) -> np.ndarray:
    """A zero-mean, unit-std float32 tile.

    Kinds: brushed, grain, blotch, fibre, noise, noise3 (3 channels), sensor (3 channels).
    """
    rng = np.random.default_rng([_TEXTURE_SEED, hash_kind(kind)])
    if kind == "brushed":
        # Brushed / machined metal: streaks along x, nearly uncorrelated along y.
        white = rng.standard_normal((TILE_H, TILE_W), dtype=np.float32)
        streaks = cv2.blur(white, (41, 1))
        streaks += 0.35 * cv2.blur(white, (9, 1))
        return _normalise(streaks)
    if kind == "grain":
        white = rng.standard_normal((TILE_H, TILE_W), dtype=np.float32)
        return _normalise(cv2.GaussianBlur(white, (0, 0), 0.9))
    if kind == "blotch":
        # Low-frequency stains (dirt, rust, uneven paint): upsampled coarse noise.
        coarse = rng.standard_normal((TILE_H // 24, TILE_W // 24), dtype=np.float32)
        return _normalise(cv2.resize(coarse, (TILE_W, TILE_H), interpolation=cv2.INTER_CUBIC))
    if kind == "fibre":
        white = rng.standard_normal((TILE_H, TILE_W), dtype=np.float32)
        fibres = cv2.GaussianBlur(white, (0, 0), sigmaX=2.5, sigmaY=0.8)
        return _normalise(fibres + 0.5 * cv2.GaussianBlur(white, (0, 0), 0.6))
    if kind == "noise":
        return rng.standard_normal((TILE_H, TILE_W), dtype=np.float32)
    if kind == "noise3":
        return rng.standard_normal((TILE_H, TILE_W, 3), dtype=np.float32)
    if kind == "sensor":
        # Camera noise: mostly luminance, plus weaker independent chroma noise (std ~1 overall).
        luma = rng.standard_normal((TILE_H, TILE_W, 1), dtype=np.float32)
        chroma = rng.standard_normal((TILE_H, TILE_W, 3), dtype=np.float32)
        return ((luma + 0.35 * chroma) / np.float32(np.sqrt(1 + 0.35 ** 2))).astype(np.float32)
    raise ValueError(f"unknown texture kind {kind!r}")


def uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    """One float drawn uniformly from [lo, hi) by ``rng`` (the renderers' parameter draws)."""
    return float(rng.uniform(lo, hi))


def hash_kind(kind: str) -> int:
    """Stable (not salted like ``hash``) integer for a texture name."""
    return sum((i + 1) * ord(c) for i, c in enumerate(kind))


def texture(kind: str, rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A random (h, w[, 3]) window of the ``kind`` tile, randomly flipped (a read-only view)."""
    tile = texture_tile(kind)
    th, tw = tile.shape[:2]
    if h > th or w > tw:
        reps = (int(np.ceil(h / th)), int(np.ceil(w / tw))) + ((1,) if tile.ndim == 3 else ())
        tile = np.tile(tile, reps)
        th, tw = tile.shape[:2]
    y0 = int(rng.integers(0, th - h + 1))
    x0 = int(rng.integers(0, tw - w + 1))
    window = tile[y0:y0 + h, x0:x0 + w]
    if rng.random() < 0.5:
        window = window[:, ::-1]
    if rng.random() < 0.5:
        window = window[::-1]
    return window


def linear_gradient(rng: np.random.Generator, h: int, w: int, lo: float, hi: float) -> np.ndarray:
    """(h, w) float32 ramp from ``lo`` to ``hi`` along a random direction (uneven lighting)."""
    angle = rng.uniform(0, 2 * np.pi)
    xs = np.linspace(-1.0, 1.0, w, dtype=np.float32) * np.float32(np.cos(angle))
    # Distances are measured in units of the width so that wide crops get a gentle ramp, not a
    # steep vertical one.
    ys = np.linspace(-1.0, 1.0, h, dtype=np.float32) * np.float32(np.sin(angle) * h / max(w, 1))
    ramp = ys[:, None] + xs[None, :]
    span = float(ramp.max() - ramp.min()) or 1.0
    return (lo + (ramp - ramp.min()) * ((hi - lo) / span)).astype(np.float32)


def gaussian_spot(rng: np.random.Generator, h: int, w: int, width_frac: Tuple[float, float],
                  height_frac: Tuple[float, float]) -> np.ndarray:
    """(h, w) float32 separable Gaussian blob at a random place, peak 1 (a specular highlight)."""
    cx = rng.uniform(-0.1, 1.1) * w
    cy = rng.uniform(-0.2, 1.2) * h
    sx = max(1.0, rng.uniform(*width_frac) * w)
    sy = max(1.0, rng.uniform(*height_frac) * h)
    gx = np.exp(-0.5 * ((np.arange(w, dtype=np.float32) - cx) / sx) ** 2)
    gy = np.exp(-0.5 * ((np.arange(h, dtype=np.float32) - cy) / sy) ** 2)
    return np.outer(gy, gx).astype(np.float32)


def diagonal_band(rng: np.random.Generator, h: int, w: int, width_px: float) -> np.ndarray:
    """(h, w) float32 soft diagonal stripe, peak 1 (a reflection on glass or laminate)."""
    angle = rng.uniform(np.pi / 5, np.pi / 2.2) * (1 if rng.random() < 0.5 else -1)
    c = rng.uniform(0, w)
    xs = np.arange(w, dtype=np.float32)[None, :]
    ys = np.arange(h, dtype=np.float32)[:, None]
    dist = (xs - c) * np.float32(np.sin(angle)) + ys * np.float32(np.cos(angle))
    return np.exp(-0.5 * (dist / max(1.0, width_px)) ** 2).astype(np.float32)


def emboss(height: np.ndarray, angle: float) -> np.ndarray:
    """Directional shading of a height map lit from ``angle`` (radians): positive on lit slopes."""
    gx = cv2.Sobel(height, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(height, cv2.CV_32F, 0, 1, ksize=3)
    return gx * np.float32(np.cos(angle)) + gy * np.float32(np.sin(angle))


def jpeg_roundtrip(image: np.ndarray, quality: int) -> np.ndarray:
    """Encode/decode as JPEG to add blocking and ringing artefacts."""
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:  # pragma: no cover - OpenCV always encodes uint8 BGR
        return image
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)

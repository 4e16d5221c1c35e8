"""Draw a text line as a float32 coverage mask (0 = background, 1 = ink) in any supported font.

The mask is tight around the cap height (VINs and plates use capitals and digits only) and around
the ink horizontally, with ``pad`` pixels on every side. Characters are placed one by one so that
letter spacing (``tracking``) can vary, as it does between marking machines and printers.
"""
from __future__ import annotations

import functools
from typing import List, Optional, Tuple

import cv2
import numpy as np

from vinocr.data.synth.fonts import (KIND_DOTMATRIX, KIND_HERSHEY, KIND_TRUETYPE, FontSpec,
                                     dot_glyphs, hershey_cap_height, load_truetype,
                                     truetype_cap_height)
from vinocr.errors import VinocrError

# Cap height of each TrueType font at size 100, so a pixel cap height converts to a point size.
_REFERENCE_SIZE = 100


@functools.lru_cache(maxsize=64)
def _truetype_cap_ratio(path: str) -> float:
    cap, _ = truetype_cap_height(path, _REFERENCE_SIZE)
    return cap / _REFERENCE_SIZE


@functools.lru_cache(maxsize=4096)
def _truetype_advance(path: str, size: int, char: str) -> float:
    return float(load_truetype(path, size).getlength(char))


def _trim_columns(mask: np.ndarray, pad: int) -> np.ndarray:
    """Crop empty columns, keeping ``pad`` empty columns on each side."""
    cols = np.flatnonzero(mask.max(axis=0) > 0)
    if cols.size == 0:
        return mask[:, : 2 * pad + 1]
    lo = max(0, int(cols[0]) - pad)
    hi = min(mask.shape[1], int(cols[-1]) + 1 + pad)
    return mask[:, lo:hi]


@functools.lru_cache(maxsize=16384)
def _truetype_glyph(path: str, size: int, char: str) -> Tuple[np.ndarray, int]:
    """Coverage of one glyph (float32, rows: pad + cap + below + pad) and its origin column.

    Rendering through PIL costs ~30 us per glyph; VIN crops reuse a few dozen sizes of 34 glyphs,
    so cached bitmaps pasted with numpy are several times cheaper.
    """
    from PIL import Image, ImageDraw

    pil_font = load_truetype(path, size)
    cap, _ = truetype_cap_height(path, size)
    below = max(1, int(round(0.12 * cap)))
    origin = max(1, size // 4)  # room for glyphs that start left of their origin
    width = int(_truetype_advance(path, size, char)) + 2 * origin + 2
    image = Image.new("L", (width, cap + below + 2 * _GLYPH_PAD), 0)
    ImageDraw.Draw(image).text((origin, _GLYPH_PAD + cap), char, font=pil_font, fill=255,
                               anchor="ls")
    glyph = np.asarray(image, dtype=np.float32) * (1.0 / 255.0)
    glyph.setflags(write=False)
    return glyph, origin


_GLYPH_PAD = 2


class CharJitter:
    """Per-character irregularity of a marking: vertical offset, width scale and extra spacing.

    Stamps are struck one by one and dot-peen heads drift, so real VIN characters never sit on a
    perfect line with perfect spacing. ``amount`` 0 draws a perfect line; 1 is strong jitter
    (offsets up to 8% of the cap height, widths +-10%, spacing +-8% of the cap height).
    """

    def __init__(self, rng: np.random.Generator, n: int, amount: float, cap_height: float
                 ) -> None:
        a = float(amount)
        self.dy = rng.uniform(-0.08, 0.08, n) * a * cap_height
        self.sx = 1.0 + rng.uniform(-0.10, 0.10, n) * a
        self.dx = rng.uniform(-0.08, 0.08, n) * a * cap_height
        self.room = int(np.ceil(0.08 * a * cap_height))


def _truetype_mask(text: str, font: FontSpec, cap_height: float, tracking: float,
                   pad: int, jitter: Optional[CharJitter] = None) -> np.ndarray:
    assert font.path is not None
    size = max(4, int(round(cap_height / _truetype_cap_ratio(font.path))))
    glyphs = [_truetype_glyph(font.path, size, c) for c in text]
    advances = [_truetype_advance(font.path, size, c) for c in text]
    room = jitter.room if jitter is not None else 0
    height = glyphs[0][0].shape[0] + 2 * room
    lead = max(o for _, o in glyphs)
    width = int(sum(advances) * 1.15 + max(0.0, tracking) * len(text) + 2 * pad + 2 * lead
                + size + (0 if jitter is None else np.abs(jitter.dx).sum()))
    canvas = np.zeros((height, width), dtype=np.float32)
    x = float(pad + lead)
    for i, ((glyph, origin), advance) in enumerate(zip(glyphs, advances)):
        top = room
        if jitter is not None:
            gw = max(1, int(round(glyph.shape[1] * jitter.sx[i])))
            glyph = cv2.resize(glyph, (gw, glyph.shape[0]), interpolation=cv2.INTER_LINEAR)
            origin = int(round(origin * jitter.sx[i]))
            advance = advance * jitter.sx[i] + jitter.dx[i]
            top = room + int(round(jitter.dy[i]))
        x0 = max(0, int(round(x)) - origin)
        region = canvas[top:top + glyph.shape[0], x0:x0 + glyph.shape[1]]
        np.maximum(region, glyph[:region.shape[0], :region.shape[1]], out=region)
        x += advance + tracking
    if pad != _GLYPH_PAD:
        # Glyph bitmaps carry _GLYPH_PAD rows above and below; adapt to the requested padding.
        if pad < _GLYPH_PAD:
            canvas = canvas[_GLYPH_PAD - pad: height - (_GLYPH_PAD - pad)]
        else:
            canvas = np.pad(canvas, ((pad - _GLYPH_PAD, pad - _GLYPH_PAD), (0, 0)))
    return _trim_columns(canvas, pad)


def _hershey_mask(text: str, font: FontSpec, cap_height: float, tracking: float, weight: float,
                  pad: int, jitter: Optional[CharJitter] = None) -> np.ndarray:
    assert font.face is not None
    scale = cap_height / hershey_cap_height(font.face)
    # Hershey strokes are hairlines; scale the pen with the glyph size, as a stamp's would.
    thickness = max(1, int(round(weight * cap_height / 13.0)))
    advances = [cv2.getTextSize(c, font.face, scale, thickness)[0][0] for c in text]
    cap = int(round(cap_height))
    half_pen = thickness // 2 + 1
    below = max(1, int(round(0.12 * cap)))
    width = int(sum(advances) + max(0.0, tracking) * len(text) + 2 * pad + cap)
    height = cap + below + 2 * pad + 2 * half_pen
    canvas = np.zeros((height, width), dtype=np.uint8)
    baseline = pad + half_pen + cap
    x = float(pad)
    if jitter is not None:
        width += int(np.abs(jitter.dx).sum()) + 1
        canvas = np.zeros((height, width), dtype=np.uint8)
    for i, (char, advance) in enumerate(zip(text, advances)):
        y = baseline
        if jitter is not None:
            y = baseline + int(round(float(np.clip(jitter.dy[i], -pad - half_pen, below))))
            advance = advance + jitter.dx[i]
        cv2.putText(canvas, char, (int(round(x)), y), font.face, scale, 255, thickness,
                    cv2.LINE_AA)
        x = max(0.0, x + advance + tracking)
    mask = canvas.astype(np.float32) * (1.0 / 255.0)
    return _trim_columns(mask, pad)


def dot_centres(text: str, cap_height: float, tracking: float, pad: int,
                grid: Tuple[int, int] = (5, 7), jitter: Optional[CharJitter] = None
                ) -> Tuple[np.ndarray, Tuple[int, int], float]:
    """Centres (N, 2) as (x, y) of the dot-matrix glyphs of ``text`` on a ``grid`` of (columns,
    rows), the canvas (h, w) and the dot pitch in pixels."""
    n_cols, n_rows = grid
    glyphs = dot_glyphs(tuple(grid))
    pitch = cap_height / float(n_rows - 1)
    room = jitter.room if jitter is not None else 0
    xs: List[np.ndarray] = []
    ys: List[np.ndarray] = []
    x0 = pad + pitch
    advance = (n_cols - 1) * pitch + 1.6 * pitch + tracking
    for i, char in enumerate(text):
        glyph = glyphs.get(char)
        if glyph is None:
            raise VinocrError(f"the {n_cols}x{n_rows} dot-matrix font has no glyph for {char!r}")
        rows, cols = np.nonzero(glyph)
        dy = float(jitter.dy[i]) if jitter is not None else 0.0
        xs.append(x0 + cols * pitch)
        ys.append(pad + room + pitch + rows * pitch + dy)
        x0 += advance + (float(jitter.dx[i]) if jitter is not None else 0.0)
    centres = np.stack([np.concatenate(xs), np.concatenate(ys)], axis=1).astype(np.float32)
    height = int(np.ceil(pad * 2 + 2 * room + pitch * (n_rows + 1)))
    width = int(np.ceil(x0 - advance + (n_cols - 1) * pitch + pitch + pad + abs(advance)))
    return centres, (height, width), pitch


def stroke_dot_centres(text: str, font: FontSpec, cap_height: float, tracking: float,
                       pitch: float, pad: int) -> Tuple[np.ndarray, Tuple[int, int]]:
    """Dot centres that follow the strokes of a Hershey/TrueType glyph line (continuous dot-peen).

    Real dot-peen markers also place dots at a fixed pitch along each stroke; sampling a lattice of
    pitch ``pitch`` inside a stroke mask drawn with a pen about one pitch wide approximates that.
    """
    weight = 13.0 * pitch / max(cap_height, 1.0)
    if font.kind == KIND_HERSHEY:
        mask = _hershey_mask(text, font, cap_height, tracking, weight, pad)
    else:
        mask = text_mask(text, font, cap_height, tracking, pad=pad)
        kernel = max(1, int(round(pitch * 0.6)))
        mask = cv2.dilate(mask, np.ones((kernel, kernel), np.uint8))
    h, w = mask.shape
    gy = np.arange(pad, h - pad, pitch, dtype=np.float32)
    gx = np.arange(pad, w - pad, pitch, dtype=np.float32)
    yy, xx = np.meshgrid(gy, gx, indexing="ij")
    inside = mask[yy.astype(np.int32), xx.astype(np.int32)] > 0.45
    centres = np.stack([xx[inside], yy[inside]], axis=1)
    return centres, (h, w)


def splat_dots(centres: np.ndarray, depth: np.ndarray, shape: Tuple[int, int], radius: float,
               sharpness: float = 2.5) -> np.ndarray:
    """Render dots (craters) as a float32 map in [0, 1] without a per-dot drawing call.

    Each centre is splatted bilinearly (sub-pixel accurate) and the impulse image is blurred with a
    Gaussian of ``radius``; ``sharpness`` > 1 flattens the crater bottoms into punched discs.
    """
    h, w = shape
    impulses = np.zeros((h, w), dtype=np.float32)
    if len(centres):
        x = np.clip(centres[:, 0], 0, w - 1.001)
        y = np.clip(centres[:, 1], 0, h - 1.001)
        x0 = np.floor(x).astype(np.int32)
        y0 = np.floor(y).astype(np.int32)
        fx = (x - x0).astype(np.float32)
        fy = (y - y0).astype(np.float32)
        d = depth.astype(np.float32)
        flat = impulses.reshape(-1)
        base = y0 * w + x0
        np.add.at(flat, base, d * (1 - fx) * (1 - fy))
        np.add.at(flat, base + 1, d * fx * (1 - fy))
        np.add.at(flat, base + w, d * (1 - fx) * fy)
        np.add.at(flat, base + w + 1, d * fx * fy)
    sigma = max(0.4, radius * 0.6)
    blurred = cv2.GaussianBlur(impulses, (0, 0), sigma)
    # Peak of a blurred unit impulse = 1 / (2 pi sigma^2): normalise so a full dot reaches 1.
    blurred *= 2.0 * np.pi * sigma * sigma * sharpness
    np.minimum(blurred, 1.0, out=blurred)
    return blurred


def vary_stroke(mask: np.ndarray, amount: float) -> np.ndarray:
    """Thicken (``amount`` > 0) or thin (< 0) the strokes of a coverage mask by about ``amount``
    pixels, blending a one-pixel dilation/erosion for fractional amounts."""
    if abs(amount) < 0.05:
        return mask
    kernel = np.ones((3, 3), np.uint8)
    out = mask
    steps = int(np.floor(abs(amount)))
    frac = abs(amount) - steps
    morph = cv2.dilate if amount > 0 else cv2.erode
    for _ in range(steps):
        out = morph(out, kernel)
    if frac > 0.05:
        out = (1.0 - frac) * out + frac * morph(out, kernel)
    return out.astype(np.float32, copy=False)


def text_mask(text: str, font: FontSpec, cap_height: float, tracking: float = 0.0,
              weight: float = 1.0, pad: int = 2, jitter: Optional[CharJitter] = None
              ) -> np.ndarray:
    """Coverage mask (float32, 0..1) of ``text`` with cap height ``cap_height`` pixels.

    Args:
        text: the characters to draw.
        font: a TrueType or Hershey :class:`FontSpec` (dot-matrix text uses :func:`dot_centres`).
        cap_height: height of a capital letter in pixels.
        tracking: extra pixels between characters (may be negative, down to touching glyphs).
        weight: pen weight multiplier for stroke fonts (ignored for TrueType).
        pad: empty pixels kept around the ink.
        jitter: per-character offsets, widths and spacing (None: a perfect line).
    """
    if font.kind == KIND_TRUETYPE:
        return _truetype_mask(text, font, cap_height, tracking, pad, jitter)
    if font.kind == KIND_HERSHEY:
        return _hershey_mask(text, font, cap_height, tracking, weight, pad, jitter)
    if font.kind == KIND_DOTMATRIX:
        centres, shape, pitch = dot_centres(text, cap_height, tracking, pad, font.grid, jitter)
        return splat_dots(centres, np.ones(len(centres), np.float32), shape, pitch * 0.45)
    raise VinocrError(f"unknown font kind {font.kind!r}")

"""Render a VIN as a tight text-line crop in one of eight real-world appearances.

Styles (see :data:`STYLES`; which ones a crop may use depends on its style pool,
:mod:`vinocr.data.synth.pools`):

* ``engraved``   -- cut or stamped into metal: low contrast, lighting gradient, specular highlight,
  relief shading of the grooves, scratches, sometimes dirt or paint.
* ``dot_peen``   -- characters made of punched craters (5x7 dot matrix, or dots along strokes).
* ``sticker``    -- printed door-jamb label: dark text on white / silver / cream, optional barcode.
* ``windshield`` -- plate behind the windscreen: dark background, light embossed text, glare.
* ``paper``      -- registration document: printed text, ink bleed, paper fibre, form lines.
* ``label``      -- plastic VIN label cut from a larger plate: neighbouring lines of small text
  show at the crop's edges, sometimes a barcode.
* ``laser``      -- laser-etched (annealed) marking: crisp dark or white strokes with a faint heat
  halo on bright steel or dark anodised aluminium. Held out of the training pool.
* ``cast``       -- raised letters cast with the part: same colour as the surface, visible only
  by relief shading on a rough casting skin. Held out of the training pool.

Every renderer works at the final resolution (32-64 px high) in float32, with noise taken from
cached texture tiles, so one crop costs a few milliseconds. The text is first drawn as a coverage
mask, placed on a canvas with random margins, warped by a small random rotation / shear /
perspective (so the glyph edges stay sharp relative to the background texture), and then shaded
according to the style. Characters jitter individually (offset, width, spacing) and TrueType strokes vary in
weight. Finally the crop may get extra camera damage from its pool's degradation families
(:mod:`vinocr.data.synth.degrade`).
"""
from __future__ import annotations

import logging
import math
from typing import Any, Callable, Dict, Optional, Tuple

import cv2
import numpy as np

from vinocr.data.synth import textures as tx
from vinocr.data.synth.degrade import degrade
from vinocr.data.synth.fonts import KIND_TRUETYPE, FontSpec, fonts_for
from vinocr.data.synth.pools import HELDOUT_STYLES, TRAIN_STYLES, StylePool, get_pool
from vinocr.data.synth.text_mask import (CharJitter, dot_centres, splat_dots, stroke_dot_centres,
                                         text_mask, vary_stroke)
from vinocr.errors import VinocrError

logger = logging.getLogger(__name__)

STYLES: Tuple[str, ...] = TRAIN_STYLES + HELDOUT_STYLES

#: Crop height range in pixels (inclusive).
HEIGHT_RANGE = (32, 64)
#: Target width / height range of a crop; text wider than this is condensed horizontally.
ASPECT_RANGE = (6.0, 12.0)

# Letterform categories per style (see fonts.CATEGORIES), most typical first. A crop picks a
# category that its pool has fonts for, then a font of it, so a category with many fonts does not
# crowd out the others.
_STYLE_CATEGORIES: Dict[str, Tuple[str, ...]] = {
    "engraved": ("stroke", "mono", "condensed", "tech", "stencil", "sans"),
    "dot_peen": ("stroke", "mono", "tech"),  # the font the dots follow (matrix fonts aside)
    "sticker": ("mono", "sans", "condensed", "tech", "pixel"),
    "windshield": ("sans", "condensed", "mono", "tech"),
    "paper": ("mono", "sans", "serif", "condensed", "stroke"),
    "label": ("sans", "condensed", "mono", "tech"),
    "laser": ("mono", "sans", "condensed", "tech", "dot"),
    "cast": ("sans", "condensed", "stencil", "serif", "tech"),
}

#: Materials whose characters show only through relief or a small tone difference. Camera damage
#: that flattens contrast, or several families at once, makes them unreadable even to a person,
#: and a crop nobody can read has no true label: these get at most one family, never one of
#: :data:`_CONTRAST_KILLERS`.
_RELIEF_STYLES = ("engraved", "dot_peen", "cast")
_CONTRAST_KILLERS = ("low_contrast", "glare_shadow", "shading", "jpeg_heavy")

_Image = np.ndarray
_Meta = Dict[str, Any]


_u = tx.uniform


def _choose_font(rng: np.random.Generator, style: str, pool: StylePool,
                 categories: Optional[Tuple[str, ...]] = None) -> FontSpec:
    """A font for ``style`` from ``pool``: a category first, then a font of that category."""
    wanted = categories or _STYLE_CATEGORIES[style]
    by_category = [fonts for fonts in (fonts_for((c,), pool.font_pools) for c in wanted) if fonts]
    if not by_category:
        raise VinocrError(f"no font of {', '.join(wanted)} in style pool {pool.name!r}; "
                          "reinstall vinocr to get its font packages")
    fonts = by_category[int(rng.integers(len(by_category)))]
    return fonts[int(rng.integers(len(fonts)))]


def _jitter(rng: np.random.Generator, n: int, cap: float) -> Optional[CharJitter]:
    """Per-character jitter for 60% of crops, of random strength."""
    if rng.random() >= 0.6:
        return None
    return CharJitter(rng, n, _u(rng, 0.2, 1.0), cap)


# --------------------------------------------------------------------------------------------
# Geometry: place the text mask on a canvas and warp it slightly.
# --------------------------------------------------------------------------------------------

def _compose_line(mask: np.ndarray, height: int, rng: np.random.Generator, cap: float,
                  margin: Tuple[float, float] = (0.15, 0.9),
                  vpos: Tuple[float, float] = (0.3, 0.7)
                  ) -> Tuple[np.ndarray, Tuple[int, int, int, int]]:
    """Put ``mask`` on a (height, W) canvas with random margins; return canvas and text box
    (x, y, w, h). The horizontal scale is adjusted so the crop aspect stays in ASPECT_RANGE.
    ``vpos`` is the range of the text's vertical position (0 = top, 1 = bottom of the free room)."""
    mh, mw = mask.shape
    if mh > height:
        # Only happens for extreme cap-height draws; shrink rather than clip the glyphs.
        scale = height / mh
        mask = cv2.resize(mask, (max(1, int(mw * scale)), height), interpolation=cv2.INTER_AREA)
        mh, mw = mask.shape
    left = int(cap * _u(rng, *margin))
    right = int(cap * _u(rng, *margin))
    sx = _u(rng, 0.9, 1.1)
    lo, hi = ASPECT_RANGE
    aspect = (mw * sx + left + right) / height
    if rng.random() < 0.5:
        # Condensed / expanded lettering (common on stamps and labels): spread the aspect over the
        # whole range instead of leaving most crops near the natural width of 17 glyphs.
        target = _u(rng, lo + 0.5, hi)
        sx = float(np.clip((target * height - left - right) / max(mw, 1), 0.6, 1.35))
    elif aspect > hi:
        # Condense towards a random aspect near the upper limit instead of always hitting it.
        target = _u(rng, hi - 1.5, hi)
        sx *= max(0.55, (target * height - left - right) / max(mw * sx, 1.0))
    elif aspect < lo:
        target = _u(rng, lo, lo + 1.0)
        sx *= min(1.6, (target * height - left - right) / max(mw * sx, 1.0))
    new_w = max(1, int(round(mw * sx)))
    if new_w != mw:
        interp = cv2.INTER_AREA if new_w < mw else cv2.INTER_LINEAR
        mask = cv2.resize(mask, (new_w, mh), interpolation=interp)
    width = new_w + left + right
    top = int(round((height - mh) * _u(rng, *vpos)))
    canvas = np.zeros((height, width), dtype=np.float32)
    canvas[top:top + mh, left:left + new_w] = mask
    return canvas, (left, top, new_w, mh)


def _warp(canvas: np.ndarray, rng: np.random.Generator, box: Tuple[int, int, int, int],
          strength: float = 1.0) -> np.ndarray:
    """Small random rotation, shear and perspective, bounded so the text stays inside the crop."""
    h, w = canvas.shape
    _, top, _, bh = box
    v_room = max(0.5, min(top, h - top - bh))
    cx, cy = w / 2.0, h / 2.0
    # The rotation may move the line ends vertically by at most ~half the free margin.
    max_angle = min(math.radians(2.5), math.atan(0.5 * v_room / max(cx, 1.0))) * strength
    angle = _u(rng, -max_angle, max_angle)
    shear = _u(rng, -0.12, 0.12) * strength
    persp = _u(rng, -1.0, 1.0) * min(0.05, 0.4 * v_room / h) * strength
    src = np.array([[0, 0], [w, 0], [w, h], [0, h]], dtype=np.float32)
    ca, sa = math.cos(angle), math.sin(angle)
    dst = np.empty_like(src)
    for i, (x, y) in enumerate(src):
        dx, dy = x - cx, y - cy
        rx = ca * dx - sa * dy
        ry = sa * dx + ca * dy
        rx += shear * -ry  # positive shear leans the tops of the glyphs to the right
        side = -1.0 if x == 0 else 1.0
        ry *= 1.0 + persp * side
        dst[i] = (cx + rx, cy + ry)
    matrix = cv2.getPerspectiveTransform(src, dst)
    return cv2.warpPerspective(canvas, matrix, (w, h), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def _line_mask(drawn: str, height: int, rng: np.random.Generator, font: FontSpec,
               cap_frac: Tuple[float, float], tracking: Tuple[float, float],
               weight: Tuple[float, float] = (0.9, 1.6),
               vpos: Tuple[float, float] = (0.3, 0.7)
               ) -> Tuple[np.ndarray, Tuple[int, int, int, int], float]:
    cap = height * _u(rng, *cap_frac)
    mask = text_mask(drawn, font, cap, tracking=cap * _u(rng, *tracking),
                     weight=_u(rng, *weight), jitter=_jitter(rng, len(drawn), cap))
    if font.kind == KIND_TRUETYPE and rng.random() < 0.5:
        # Printer gain, laser power and wear thicken or thin the strokes of outline fonts.
        mask = vary_stroke(mask, _u(rng, -0.5, 1.0) * cap / 32.0)
    canvas, box = _compose_line(mask, height, rng, cap, vpos=vpos)
    return canvas, box, cap


# --------------------------------------------------------------------------------------------
# Shared surface and finishing steps
# --------------------------------------------------------------------------------------------

def _tint(rng: np.random.Generator, amount: float) -> np.ndarray:
    return (1.0 + rng.uniform(-amount, amount, size=3)).astype(np.float32)


def _metal_surface(rng: np.random.Generator, h: int, w: int) -> Tuple[np.ndarray, _Meta]:
    """Grey-level metal background (h, w) with texture, lighting ramp and specular highlight.

    meta["level"] is the mean grey level; marking tones are scaled by it so that dark (painted)
    surfaces keep a visible, if low, contrast instead of an unreadable one.
    """
    painted = rng.random() < 0.3
    base = _u(rng, 40, 100) if painted else _u(rng, 95, 200)
    rel = max(0.4, base / 150.0)
    kind = "brushed" if rng.random() < 0.6 else "grain"
    surface = tx.linear_gradient(rng, h, w, _u(rng, 0.65, 0.9), _u(rng, 1.0, 1.3)) * base
    if rng.random() < 0.75:
        spot = tx.gaussian_spot(rng, h, w, (0.05, 0.4), (0.4, 2.0))
        surface += spot * (_u(rng, 20, 80) * rel)
    surface += tx.texture(kind, rng, h, w) * (_u(rng, 3, 11) * rel)
    if rng.random() < 0.3:
        surface += tx.texture("grain", rng, h, w) * (_u(rng, 2, 5) * rel)
    return surface, {"painted": painted, "surface": kind, "level": base, "rel": rel}


def _add_scratches(img: np.ndarray, rng: np.random.Generator, max_lines: int) -> None:
    """Thin bright or dark anti-aliased lines, added in place."""
    n = int(rng.integers(0, max_lines + 1))
    if n == 0:
        return
    h, w = img.shape[:2]
    layer = np.zeros((h, w), dtype=np.uint8)
    for _ in range(n):
        x0, y0 = _u(rng, -0.1, 1.1) * w, _u(rng, -0.2, 1.2) * h
        if rng.random() < 0.6:  # mostly along the direction of wiping / machining
            angle = _u(rng, -0.25, 0.25)
        else:
            angle = _u(rng, 0, math.pi)
        length = _u(rng, 0.1, 0.7) * w
        x1, y1 = x0 + length * math.cos(angle), y0 + length * math.sin(angle)
        cv2.line(layer, (int(x0), int(y0)), (int(x1), int(y1)), int(rng.integers(90, 256)), 1,
                 cv2.LINE_AA)
    amp = _u(rng, 25, 70) * (1 if rng.random() < 0.65 else -1)
    img += (layer.astype(np.float32) * np.float32(amp / 255.0))[..., None]


def _add_stains(img: np.ndarray, rng: np.random.Generator, strength: float) -> None:
    """Dark, slightly rusty low-frequency stains, applied in place."""
    h, w = img.shape[:2]
    blot = tx.texture("blotch", rng, h, w)
    stain = np.clip(blot - _u(rng, 0.7, 1.6), 0.0, 1.0) * np.float32(strength)
    img *= (1.0 - 0.5 * stain)[..., None]
    img[..., 2] += stain * 12.0  # a reddish-brown cast (BGR: index 2 is red)
    img[..., 1] += stain * 4.0


def _finish(img: np.ndarray, rng: np.random.Generator, blur_p: float, blur: Tuple[float, float],
            noise: Tuple[float, float], jpeg_p: float) -> np.ndarray:
    """Camera blur, sensor noise, quantisation and optional JPEG artefacts -> uint8 BGR."""
    h, w = img.shape[:2]
    if rng.random() < blur_p:
        img = cv2.GaussianBlur(img, (0, 0), _u(rng, *blur))
    sd = _u(rng, *noise)
    img += tx.texture("sensor", rng, h, w) * np.float32(sd)
    np.clip(img, 0, 254.5, out=img)
    img += 0.5  # round to nearest on the uint8 cast
    out = img.astype(np.uint8)
    if rng.random() < jpeg_p:
        out = tx.jpeg_roundtrip(out, int(rng.integers(35, 90)))
    return out


# --------------------------------------------------------------------------------------------
# Styles
# --------------------------------------------------------------------------------------------

def _render_engraved(drawn: str, rng: np.random.Generator, height: int, pool: StylePool) -> Tuple[_Image, _Meta]:
    font = _choose_font(rng, "engraved", pool)
    canvas, box, cap = _line_mask(drawn, height, rng, font, (0.5, 0.72), (0.02, 0.25),
                                  (0.9, 1.8))
    canvas = _warp(canvas, rng, box)
    h, w = canvas.shape
    surface, meta = _metal_surface(rng, h, w)
    depth = cv2.GaussianBlur(canvas, (0, 0), _u(rng, 0.5, 1.1))
    # Relief: light from one side brightens one groove wall and darkens the other.
    rel = meta["rel"]
    relief = tx.emboss(depth, _u(rng, 0, 2 * math.pi)) * np.float32(_u(rng, 8, 22) * rel)
    if meta["painted"] and rng.random() < 0.6:
        groove_tone = _u(rng, 30, 110)  # cut through paint exposes bright metal
    elif rng.random() < 0.8:
        groove_tone = -meta["level"] * _u(rng, 0.12, 0.45)  # grooves catch less light
    else:
        groove_tone = meta["level"] * _u(rng, 0.05, 0.2)  # polished groove walls
    lum = surface + relief + depth * np.float32(groove_tone)
    img = lum[..., None] * _tint(rng, 0.06)
    _add_scratches(img, rng, 6)
    if rng.random() < 0.3:
        _add_stains(img, rng, _u(rng, 0.2, 0.7))
    meta.update(font=font.name, variant="groove")
    return _finish(img, rng, 0.35, (0.4, 1.0), (1.5, 6.0), 0.1), meta


def _render_dot_peen(drawn: str, rng: np.random.Generator, height: int, pool: StylePool) -> Tuple[_Image, _Meta]:
    cap = height * _u(rng, 0.5, 0.66)
    pad = 2
    matrix_fonts = fonts_for(("dot",), pool.font_pools)
    if rng.random() < 0.6 and matrix_fonts:
        matrix = matrix_fonts[int(rng.integers(len(matrix_fonts)))]
        variant, font_name = "matrix", matrix.name
        centres, shape, pitch = dot_centres(drawn, cap, tracking=cap * _u(rng, -0.05, 0.2),
                                            pad=pad, grid=matrix.grid,
                                            jitter=_jitter(rng, len(drawn), cap))
    else:
        font = _choose_font(rng, "dot_peen", pool)
        variant, font_name = "stroke", font.name
        pitch = cap / _u(rng, 5.5, 7.5)
        centres, shape = stroke_dot_centres(drawn, font, cap, cap * _u(rng, 0.05, 0.25), pitch,
                                            pad)
    # Punch positions and depths are never perfect.
    centres = centres + rng.normal(0.0, 0.07 * pitch, size=centres.shape).astype(np.float32)
    depths = rng.uniform(0.7, 1.0, size=len(centres)).astype(np.float32)
    dots = splat_dots(centres, depths, shape, pitch * _u(rng, 0.3, 0.45), _u(rng, 1.5, 2.5))
    canvas, box = _compose_line(dots, height, rng, cap)
    canvas = _warp(canvas, rng, box)
    h, w = canvas.shape
    surface, meta = _metal_surface(rng, h, w)
    rel = meta["rel"]
    relief = tx.emboss(canvas, _u(rng, 0, 2 * math.pi)) * np.float32(_u(rng, 12, 30) * rel)
    if rng.random() < 0.8:
        crater = -meta["level"] * _u(rng, 0.25, 0.55)  # crater floors are in shadow
    else:
        crater = _u(rng, 15, 50) * rel  # freshly punched, shiny craters
    lum = surface + relief + canvas * np.float32(crater)
    img = lum[..., None] * _tint(rng, 0.06)
    _add_scratches(img, rng, 4)
    if rng.random() < 0.25:
        _add_stains(img, rng, _u(rng, 0.2, 0.7))
    meta.update(font=font_name, variant=variant)
    return _finish(img, rng, 0.35, (0.4, 0.9), (1.5, 6.0), 0.1), meta


def _barcode_row(rng: np.random.Generator, length: int, unit: int) -> np.ndarray:
    """A 1-D row of bars (1) and spaces (0) with module widths 1-3 units, like Code 39/128."""
    n = length // unit + 2
    widths = rng.integers(1, 4, size=n) * unit
    values = np.zeros(n, dtype=np.float32)
    values[::2] = 1.0
    return np.repeat(values, widths)[:length]


def _render_sticker(drawn: str, rng: np.random.Generator, height: int, pool: StylePool) -> Tuple[_Image, _Meta]:
    font = _choose_font(rng, "sticker", pool)
    barcode = None
    if rng.random() < 0.45:
        barcode = "above" if rng.random() < 0.5 else "below"
    cap_frac = (0.36, 0.52) if barcode else (0.5, 0.72)
    # Push the text away from the barcode so a visible strip of bars fits in the crop.
    vpos = {None: (0.3, 0.7), "above": (0.8, 1.0), "below": (0.0, 0.2)}[barcode]
    canvas, box, cap = _line_mask(drawn, height, rng, font, cap_frac, (-0.02, 0.15), (1.0, 1.8),
                                  vpos)
    h, w = canvas.shape
    bx, by, bw, bh = box
    if barcode:
        # Only part of the barcode shows: the crop is tight around the text line.
        gap = max(1, int(cap * _u(rng, 0.12, 0.3)))
        x0 = max(0, bx - int(cap * _u(rng, 0.0, 0.5)))
        x1 = min(w, bx + bw + int(cap * _u(rng, 0.0, 0.5)))
        row = _barcode_row(rng, x1 - x0, max(1, int(round(cap * _u(rng, 0.05, 0.11)))))
        if barcode == "above" and by - gap > 0:
            canvas[0:by - gap, x0:x1] = np.maximum(canvas[0:by - gap, x0:x1], row)
        elif barcode == "below" and by + bh + gap < h:
            canvas[by + bh + gap:, x0:x1] = np.maximum(canvas[by + bh + gap:, x0:x1], row)
        else:
            barcode = None
    if rng.random() < 0.2:
        # Label table rule next to the text line.
        y = by - 2 if rng.random() < 0.5 else by + bh + 1
        if 0 <= y < h:
            canvas[y, :] = np.maximum(canvas[y, :], _u(rng, 0.6, 1.0))
    canvas = _warp(canvas, rng, box, strength=0.8)
    kind = rng.choice(["white", "silver", "cream"], p=[0.55, 0.3, 0.15])
    if kind == "white":
        paper = np.full((h, w), _u(rng, 215, 252), np.float32)
        paper += tx.texture("grain", rng, h, w) * np.float32(_u(rng, 1, 4))
        color = np.array([1.0, 1.0, 1.0], np.float32) * _tint(rng, 0.03)
    elif kind == "silver":
        paper = tx.linear_gradient(rng, h, w, _u(rng, 0.75, 0.95), _u(rng, 1.0, 1.15))
        paper *= np.float32(_u(rng, 160, 215))
        paper += tx.texture("brushed", rng, h, w) * np.float32(_u(rng, 2, 7))
        color = np.array([1.02, 1.0, 0.98], np.float32) * _tint(rng, 0.03)
    else:
        paper = np.full((h, w), _u(rng, 205, 240), np.float32)
        paper += tx.texture("grain", rng, h, w) * np.float32(_u(rng, 1, 4))
        color = np.array([0.86, 0.97, 1.0], np.float32) * _tint(rng, 0.03)
    bg = paper[..., None] * color
    ink = np.array([_u(rng, 10, 60)] * 3, np.float32) + rng.uniform(-6, 6, 3).astype(np.float32)
    # Thermal / laser print: ink density fluctuates slightly across the glyphs.
    coverage = canvas * (1.0 - np.clip(tx.texture("grain", rng, h, w) * 0.12, 0.0, 0.35))
    cov = coverage[..., None]
    img = bg * (1.0 - cov) + ink * cov
    img *= tx.linear_gradient(rng, h, w, _u(rng, 0.8, 0.95), _u(rng, 1.0, 1.08))[..., None]
    if rng.random() < 0.35:  # glossy laminate highlight
        img += (tx.gaussian_spot(rng, h, w, (0.05, 0.3), (0.5, 2.0)) * _u(rng, 15, 50))[..., None]
    meta = {"font": font.name, "variant": str(kind), "barcode": barcode}
    return _finish(img, rng, 0.4, (0.4, 0.9), (1.0, 4.5), 0.2), meta


def _render_windshield(drawn: str, rng: np.random.Generator, height: int, pool: StylePool
                       ) -> Tuple[_Image, _Meta]:
    font = _choose_font(rng, "windshield", pool)
    canvas, box, cap = _line_mask(drawn, height, rng, font, (0.5, 0.72), (0.0, 0.2), (1.0, 1.8))
    canvas = _warp(canvas, rng, box)
    h, w = canvas.shape
    bg_level = _u(rng, 8, 55)
    bg = np.full((h, w), bg_level, np.float32)
    bg += tx.texture("grain", rng, h, w) * np.float32(_u(rng, 1.5, 5))
    bg += tx.texture("blotch", rng, h, w) * np.float32(_u(rng, 1, 6))
    fg_level = _u(rng, 140, 235)
    height_map = cv2.GaussianBlur(canvas, (0, 0), _u(rng, 0.5, 1.1))
    # Embossed (raised) characters: lit edge bright, opposite edge in shadow.
    relief = tx.emboss(height_map, _u(rng, 0, 2 * math.pi)) * np.float32(_u(rng, 6, 18))
    lum = bg + (fg_level - bg_level) * canvas * np.float32(_u(rng, 0.6, 1.0)) + relief
    lum *= tx.linear_gradient(rng, h, w, _u(rng, 0.7, 0.95), _u(rng, 1.0, 1.2))
    img = lum[..., None] * np.array([_u(rng, 0.95, 1.08), _u(rng, 0.97, 1.06), 1.0], np.float32)
    if rng.random() < 0.6:  # reflection on the windscreen
        band = tx.diagonal_band(rng, h, w, _u(rng, 0.3, 1.5) * h)
        img += (band * _u(rng, 10, 60))[..., None]
    if rng.random() < 0.5:  # dust on the glass
        specks = np.clip(tx.texture("noise", rng, h, w) - 2.6, 0, None)
        img += (specks * _u(rng, 40, 120))[..., None]
    meta = {"font": font.name, "variant": "embossed"}
    return _finish(img, rng, 0.5, (0.4, 1.0), (1.5, 6.0), 0.25), meta


def _render_paper(drawn: str, rng: np.random.Generator, height: int, pool: StylePool) -> Tuple[_Image, _Meta]:
    font = _choose_font(rng, "paper", pool)
    canvas, box, cap = _line_mask(drawn, height, rng, font, (0.45, 0.7), (-0.02, 0.18),
                                  (0.9, 1.6))
    h, w = canvas.shape
    bx, by, bw, bh = box
    form_line = rng.random() < 0.35
    if form_line:
        # Underline of a form field, just below the baseline.
        y = min(h - 1, by + bh + int(rng.integers(0, 3)))
        x0 = max(0, bx - int(cap * _u(rng, 0.2, 1.0)))
        canvas[y, x0:] = np.maximum(canvas[y, x0:], _u(rng, 0.4, 0.9))
    canvas = _warp(canvas, rng, box, strength=0.7)
    ink_bleed = _u(rng, 0.3, 0.8)
    cov = np.clip(cv2.GaussianBlur(canvas, (0, 0), ink_bleed) * np.float32(_u(rng, 1.0, 1.4)),
                  0.0, 1.0)
    paper_level = _u(rng, 210, 250)
    paper = np.full((h, w), paper_level, np.float32)
    paper += tx.texture("fibre", rng, h, w) * np.float32(_u(rng, 1.5, 5))
    paper += tx.texture("blotch", rng, h, w) * np.float32(_u(rng, 1, 5))
    bg = paper[..., None] * np.array([_u(rng, 0.86, 1.0), _u(rng, 0.95, 1.0), 1.0], np.float32)
    ink_kind = rng.choice(["black", "blue", "grey"], p=[0.6, 0.2, 0.2])
    if ink_kind == "blue":
        ink = np.array([_u(rng, 100, 150), _u(rng, 40, 75), _u(rng, 15, 50)], np.float32)
    elif ink_kind == "grey":
        ink = np.full(3, _u(rng, 60, 110), np.float32)
    else:
        ink = np.full(3, _u(rng, 8, 50), np.float32)
    c = cov[..., None]
    img = bg * (1.0 - c) + ink * c
    photocopy = rng.random() < 0.2
    if photocopy:
        # Photocopies: boosted contrast and toner specks.
        img = (img - 128.0) * np.float32(_u(rng, 1.2, 1.6)) + 128.0
        specks = np.clip(tx.texture("noise", rng, h, w) - 2.8, 0, None)
        img -= (specks * 150.0)[..., None]
    img *= tx.linear_gradient(rng, h, w, _u(rng, 0.8, 0.95), _u(rng, 1.0, 1.06))[..., None]
    meta = {"font": font.name, "variant": str(ink_kind), "form_line": form_line,
            "photocopy": photocopy}
    return _finish(img, rng, 0.3, (0.3, 0.8), (1.0, 5.0), 0.25), meta


_NEIGHBOUR_WORDS = ("VEHICLE IDENTIFICATION NO", "VIN", "MFD BY", "GVWR", "GAWR FR", "TYPE",
                    "MODEL", "PAINT", "TRIM", "DATE", "KG", "LBS", "MADE IN", "CHASSIS NO",
                    "ENGINE", "AXLE", "TIRE", "PSI", "KPA", "FRONT", "REAR", "RIMS")


def _neighbour_text(rng: np.random.Generator) -> str:
    """A line of the words and numbers found around a VIN on a label (never a whole VIN)."""
    parts = []
    for _ in range(int(rng.integers(2, 5))):
        if rng.random() < 0.6:
            parts.append(_NEIGHBOUR_WORDS[int(rng.integers(len(_NEIGHBOUR_WORDS)))])
        else:
            parts.append(str(int(rng.integers(1, 99999))))
    return " ".join(parts)


def _render_label(drawn: str, rng: np.random.Generator, height: int, pool: StylePool
                  ) -> Tuple[_Image, _Meta]:
    """A VIN line cut from a label: parts of the lines above and below show at the edges."""
    font = _choose_font(rng, "label", pool)
    canvas, box, cap = _line_mask(drawn, height, rng, font, (0.42, 0.6), (0.0, 0.18), (1.0, 1.6),
                                  (0.35, 0.65))
    h, w = canvas.shape
    bx, by, bw, bh = box
    shown = []
    for where in ("above", "below"):
        if rng.random() >= 0.55:
            continue
        small = cap * _u(rng, 0.55, 0.9)
        line = text_mask(_neighbour_text(rng), _choose_font(rng, "label", pool), small,
                         tracking=small * _u(rng, 0.0, 0.15))
        gap = int(cap * _u(rng, 0.25, 0.5))
        x0 = int(bx + _u(rng, -0.3, 0.5) * bw)
        if where == "above":
            y1 = by - gap  # bottom row of the neighbour line
            src = line[max(0, line.shape[0] - y1):] if y1 > 0 else line[:0]
            y0 = max(0, y1 - src.shape[0])
        else:
            y0 = by + bh + gap
            src = line[:max(0, h - y0)]
        if src.size == 0 or y0 >= h:
            continue
        xs, xe = max(0, x0), min(w, x0 + src.shape[1])
        if xe <= xs:
            continue
        region = canvas[y0:y0 + src.shape[0], xs:xe]
        np.maximum(region, src[:region.shape[0], xs - x0:xs - x0 + region.shape[1]], out=region)
        shown.append(where)
    canvas = _warp(canvas, rng, box, strength=0.8)
    kind = str(rng.choice(["white", "yellow", "silver", "black"], p=[0.4, 0.2, 0.25, 0.15]))
    base = {"white": (238, 240, 240), "yellow": (70, 205, 235), "silver": (190, 192, 195),
            "black": (28, 28, 30)}[kind]
    bg = np.empty((h, w, 3), np.float32)
    bg[...] = np.array(base, np.float32) * _tint(rng, 0.04)
    bg += (tx.texture("grain", rng, h, w) * _u(rng, 1, 5))[..., None]
    if kind == "silver":
        bg += (tx.texture("brushed", rng, h, w) * _u(rng, 3, 8))[..., None]
    ink = np.full(3, _u(rng, 200, 245) if kind == "black" else _u(rng, 10, 60), np.float32)
    cov = canvas[..., None]
    img = bg * (1.0 - cov) + ink * cov
    img *= tx.linear_gradient(rng, h, w, _u(rng, 0.75, 0.95), _u(rng, 1.0, 1.1))[..., None]
    if rng.random() < 0.4:  # laminate gloss
        img += (tx.gaussian_spot(rng, h, w, (0.05, 0.3), (0.5, 2.0)) * _u(rng, 15, 60))[..., None]
    meta = {"font": font.name, "variant": kind, "neighbours": shown}
    return _finish(img, rng, 0.4, (0.4, 0.9), (1.0, 5.0), 0.2), meta


def _render_laser(drawn: str, rng: np.random.Generator, height: int, pool: StylePool
                  ) -> Tuple[_Image, _Meta]:
    """Laser-annealed marking: crisp strokes, no relief, a faint heat-tint halo."""
    font = _choose_font(rng, "laser", pool)
    canvas, box, cap = _line_mask(drawn, height, rng, font, (0.45, 0.7), (0.0, 0.2), (0.8, 1.3))
    canvas = _warp(canvas, rng, box, strength=0.8)
    h, w = canvas.shape
    anodised = rng.random() < 0.35
    if anodised:  # dark anodised aluminium, the marking bleaches it white
        level = _u(rng, 25, 70)
        surface = np.full((h, w), level, np.float32)
        surface += tx.texture("grain", rng, h, w) * np.float32(_u(rng, 1, 4))
        mark = _u(rng, 150, 230) - level
    else:  # stainless or plain steel, the marking is a dark oxide
        surface, meta = _metal_surface(rng, h, w)
        level = meta["level"]
        mark = -level * _u(rng, 0.45, 0.8)
    halo = cv2.GaussianBlur(canvas, (0, 0), _u(rng, 1.0, 2.5)) * np.float32(_u(rng, 0.0, 0.25))
    lum = surface + (canvas + halo) * np.float32(mark)
    tint = np.array([_u(rng, 0.85, 1.0), _u(rng, 0.9, 1.0), _u(rng, 1.0, 1.12)], np.float32)
    img = lum[..., None] * (tint if not anodised else _tint(rng, 0.05))
    _add_scratches(img, rng, 3)
    meta = {"font": font.name, "variant": "anodised" if anodised else "steel"}
    return _finish(img, rng, 0.35, (0.4, 0.9), (1.5, 5.0), 0.15), meta


def _render_cast(drawn: str, rng: np.random.Generator, height: int, pool: StylePool
                 ) -> Tuple[_Image, _Meta]:
    """Raised cast lettering: the same material as the part, seen only through relief."""
    font = _choose_font(rng, "cast", pool)
    canvas, box, cap = _line_mask(drawn, height, rng, font, (0.5, 0.72), (0.05, 0.3), (1.2, 2.0))
    canvas = _warp(canvas, rng, box)
    h, w = canvas.shape
    level = _u(rng, 60, 170)
    surface = np.full((h, w), level, np.float32)
    surface += tx.texture("blotch", rng, h, w) * np.float32(_u(rng, 4, 12))
    surface += tx.texture("grain", rng, h, w) * np.float32(_u(rng, 3, 8))
    surface *= tx.linear_gradient(rng, h, w, _u(rng, 0.7, 0.9), _u(rng, 1.0, 1.25))
    height_map = cv2.GaussianBlur(canvas, (0, 0), _u(rng, 0.8, 1.4))
    relief = tx.emboss(height_map, _u(rng, 0, 2 * math.pi)) * np.float32(_u(rng, 30, 55))
    # Worn, polished letter tops catch a little more light than the rough skin around them.
    lum = surface + relief + canvas * np.float32(_u(rng, -10, 35))
    img = lum[..., None] * _tint(rng, 0.05)
    if rng.random() < 0.4:
        _add_stains(img, rng, _u(rng, 0.3, 0.8))
    meta = {"font": font.name, "variant": "raised"}
    return _finish(img, rng, 0.4, (0.4, 1.0), (2.0, 7.0), 0.15), meta


_Renderer = Callable[[str, np.random.Generator, int, StylePool], Tuple[_Image, _Meta]]
_RENDERERS: Dict[str, _Renderer] = {
    "engraved": _render_engraved,
    "dot_peen": _render_dot_peen,
    "sticker": _render_sticker,
    "windshield": _render_windshield,
    "paper": _render_paper,
    "label": _render_label,
    "laser": _render_laser,
    "cast": _render_cast,
}


def check_styles(styles: Optional[Any]) -> Tuple[str, ...]:
    """Normalise a style list (None = all, a comma-separated string or a sequence)."""
    if styles is None:
        return STYLES
    if isinstance(styles, str):
        styles = [s for s in styles.split(",")]
    names = tuple(s.strip() for s in styles if s and s.strip())
    if not names:
        raise VinocrError("no VIN styles given; choose from " + ", ".join(STYLES))
    unknown = [s for s in names if s not in STYLES]
    if unknown:
        raise VinocrError(f"unknown VIN style(s) {', '.join(unknown)}; choose from "
                          + ", ".join(STYLES))
    return names


def render_vin(text: str, rng: np.random.Generator, style: Optional[str] = None,
               delimiters: Optional[bool] = None, height: Optional[int] = None,
               pool: str = "all") -> Tuple[np.ndarray, Dict[str, Any]]:
    """Render ``text`` (a VIN) as a BGR uint8 (H, W, 3) text-line crop.

    Args:
        text: the characters to draw (upper-case letters and digits).
        rng: the only source of randomness, so the same generator state gives the same image.
        style: one of :data:`STYLES`; None picks one at random.
        delimiters: draw ``*`` before and after the code (as on many engraved plates); None picks
            at random with probability 0.3. The label stays the bare text either way.
        height: crop height in pixels; None picks one in :data:`HEIGHT_RANGE`.
        pool: style pool (``train``, ``heldout`` or ``all``, :mod:`vinocr.data.synth.pools`):
            the fonts and degradation families to draw from, and the styles picked when
            ``style`` is None. An explicit ``style`` outside the pool is rendered with the pool's
            fonts and damage.

    Returns:
        ``(image, meta)`` where meta records style, pool, font, variant, delimiters, the
        degradations applied, size and the drawn string.
    """
    style_pool = get_pool(pool)
    if not text or not all(("0" <= c <= "9") or ("A" <= c <= "Z") for c in text):
        raise VinocrError(f"cannot render {text!r}: only upper-case letters and digits are drawn")
    if style is None:
        style = style_pool.styles[int(rng.integers(len(style_pool.styles)))]
    elif style not in _RENDERERS:
        raise VinocrError(f"unknown VIN style {style!r}; choose from {', '.join(STYLES)}")
    if delimiters is None:
        delimiters = bool(rng.random() < 0.3)
    if height is None:
        height = int(rng.integers(HEIGHT_RANGE[0], HEIGHT_RANGE[1] + 1))
    elif height < 8:
        raise VinocrError(f"VIN crop height must be at least 8 px, got {height}")
    drawn = f"*{text}*" if delimiters else text
    image, meta = _RENDERERS[style](drawn, rng, int(height), style_pool)
    families, most = style_pool.degradations, style_pool.max_degradations
    if style in _RELIEF_STYLES:
        families = tuple(f for f in families if f not in _CONTRAST_KILLERS)
        most = min(most, 1)
    image, damage = degrade(image, rng, families, style_pool.degrade_p, most)
    meta.update(style=style, pool=style_pool.name, degradations=damage, delimiters=bool(delimiters),
                text=drawn,
                height=int(image.shape[0]), width=int(image.shape[1]))
    return image, meta

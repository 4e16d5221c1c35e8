"""Synthetic Brazilian licence plates and LRLPR-26-style tracks (5 HR + 5 LR frames per vehicle).

Layouts: ``brazilian`` (old grey plates, ``LLLNNNN``) and ``mercosur`` (white plate with a blue top
band, ``LLLNLNN``).

A track mimics the competition data: HR and LR frames are *separate captures* of one physical plate
(near and far), not downsampled copies of each other. Each frame re-renders the same flat plate
into the scene with its own small pose and camera jitter. LR frames are rendered at 4x the output
resolution, optically blurred, area-downscaled and then degraded (noise, contrast loss, JPEG), which
is how a far, low-quality capture loses detail.

The five LR frames of a track are consecutive frames of one approaching vehicle, so they share
their conditions (:class:`FarCapture`: focus, motion blur, haze, exposure, lighting, sensor noise
level, stream compression) and differ only by a slow growth in size, pose and detector-box jitter,
and the noise and compression of each frame. Sizes follow the LRLPR-26 description (see
:data:`SCENARIOS`). Corner annotations (TL, TR, BR, BL) are exact: they are the projected plate
corners in each saved frame, in pixel coordinates where pixel (i, j) covers [i-0.5, i+0.5] x
[j-0.5, j+0.5]. Scenario-B tracks have none, as in the real data.
"""
from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import cv2
import numpy as np

from vinocr.data.synth import textures as tx
from vinocr.data.synth.fonts import FontSpec, select_fonts
from vinocr.data.synth.text_mask import text_mask
from vinocr.errors import VinocrError

logger = logging.getLogger(__name__)

#: Layout key -> pattern (L = letter, N = digit).
PLATE_LAYOUTS: Dict[str, str] = {"brazilian": "LLLNNNN", "mercosur": "LLLNLNN"}
#: Layout key -> the name used in LRLPR-26 folders and ``annotations.json``.
LAYOUT_NAMES: Dict[str, str] = {"brazilian": "Brazilian", "mercosur": "Mercosur"}
PLATE_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
PLATE_DIGITS = "0123456789"
FRAMES_PER_TRACK = 5

#: Default size range (height, width) of a flat plate from :func:`render_plate`, in pixels.
HR_HEIGHT = (40, 45)
HR_WIDTH = (120, 130)


@dataclass(frozen=True)
class ScenarioSpec:
    """How one LRLPR-26 scenario's crops look. Sizes are medians (height, width) in pixels; a
    track's sizes are drawn log-normally around them (:func:`far_capture`)."""

    folder: str
    lr_size: Tuple[int, int]
    hr_size: Tuple[int, int]
    corners: bool                         # annotations.json carries the plate corners
    lr_width_frac: Tuple[float, float]    # plate width / crop width: how tight the detector's box is
    night_p: float                        # share of tracks captured at night
    image_ext: str


#: Scenario-A: daylight tracks with corners, ``.png`` (mean LR about 40x18 px, HR 87x38);
#: Scenario-B: the same camera facing elsewhere, rain and night included, no corners, ``.jpg``
#: (LR about 48x17, HR 128x45). Sizes: ``shared/reference/vin-and-plates.md``; the looser B crop
#: and its share of night tracks are our assumption (only "rain and nighttime" is documented).
SCENARIOS: Dict[str, ScenarioSpec] = {
    "A": ScenarioSpec("Scenario-A", (18, 40), (38, 87), True, (0.82, 0.95), 0.0, ".png"),
    "B": ScenarioSpec("Scenario-B", (17, 48), (45, 128), False, (0.68, 0.86), 0.4, ".jpg"),
}
#: A track's frame sizes stay inside the range a third-party size survey of LRLPR-26 reports for
#: LR frames (13..36 x 24..68 px).
LR_SIZE_LIMITS = ((12, 36), (24, 68))

# Real plates are 400 x 130 mm.
PLATE_ASPECT = 400.0 / 130.0

_PLATE_FONTS = ("dejavu-sans-bold", "dejavu-sans-mono-bold", "hershey-duplex", "hershey-triplex",
                "dejavu-sans")
_CITIES = (("SP", "SAO PAULO"), ("PR", "CURITIBA"), ("RJ", "RIO DE JANEIRO"),
           ("MG", "BELO HORIZONTE"), ("RS", "PORTO ALEGRE"), ("BA", "SALVADOR"), ("PE", "RECIFE"),
           ("GO", "GOIANIA"), ("SP", "CAMPINAS"), ("SC", "FLORIANOPOLIS"), ("CE", "FORTALEZA"),
           ("DF", "BRASILIA"), ("ES", "VITORIA"), ("PR", "LONDRINA"), ("MG", "UBERLANDIA"))


_u = tx.uniform


def normalise_layout(layout: str) -> str:
    """``'brazilian'`` or ``'mercosur'`` from any capitalisation; VinocrError otherwise."""
    key = str(layout).strip().lower()
    if key not in PLATE_LAYOUTS:
        raise VinocrError(f"unknown plate layout {layout!r}; choose from "
                          + ", ".join(PLATE_LAYOUTS))
    return key


def plate_matches_layout(text: str, layout: str) -> bool:
    """True when ``text`` has a letter at every L and a digit at every N of the layout pattern."""
    pattern = PLATE_LAYOUTS[normalise_layout(layout)]
    regex = "".join("[A-Z]" if c == "L" else "[0-9]" for c in pattern)
    return re.fullmatch(regex, text) is not None


def random_plate(rng: np.random.Generator, layout: str) -> str:
    """A random plate string following ``layout`` (``LLLNNNN`` or ``LLLNLNN``)."""
    pattern = PLATE_LAYOUTS[normalise_layout(layout)]
    return "".join(PLATE_LETTERS[int(rng.integers(26))] if c == "L"
                   else PLATE_DIGITS[int(rng.integers(10))] for c in pattern)


# --------------------------------------------------------------------------------------------
# Flat plate drawing
# --------------------------------------------------------------------------------------------

def paste_fit(canvas: np.ndarray, mask: np.ndarray, box: Tuple[int, int, int, int]) -> None:
    """Stretch ``mask`` into ``box`` (x0, y0, x1, y1) of ``canvas`` (max-combined, in place)."""
    x0, y0, x1, y1 = box
    bw, bh = x1 - x0, y1 - y0
    if bw < 1 or bh < 1:
        return
    interp = cv2.INTER_AREA if bw < mask.shape[1] else cv2.INTER_LINEAR
    fitted = cv2.resize(mask, (bw, bh), interpolation=interp)
    region = canvas[y0:y1, x0:x1]
    np.maximum(region, fitted, out=region)


def _text_in_box(text: str, font: FontSpec, box: Tuple[int, int, int, int], weight: float,
                 tracking: float) -> np.ndarray:
    """A mask of ``text`` drawn at the box height (so glyphs are crisp) before stretching."""
    x0, y0, x1, y1 = box
    mask = text_mask(text, font, cap_height=max(4.0, (y1 - y0) * 0.9), tracking=tracking,
                     weight=weight, pad=1)
    return mask


def rounded_rect(mask: np.ndarray, x0: int, y0: int, x1: int, y1: int, r: int,
                 thickness: int) -> None:
    """Rounded-rectangle outline (plate border) drawn into a uint8 mask."""
    r = max(1, min(r, (x1 - x0) // 4, (y1 - y0) // 4))
    t = thickness
    cv2.line(mask, (x0 + r, y0), (x1 - r, y0), 255, t, cv2.LINE_AA)
    cv2.line(mask, (x0 + r, y1), (x1 - r, y1), 255, t, cv2.LINE_AA)
    cv2.line(mask, (x0, y0 + r), (x0, y1 - r), 255, t, cv2.LINE_AA)
    cv2.line(mask, (x1, y0 + r), (x1, y1 - r), 255, t, cv2.LINE_AA)
    for cx, cy, a in ((x0 + r, y0 + r, 180), (x1 - r, y0 + r, 270), (x1 - r, y1 - r, 0),
                      (x0 + r, y1 - r, 90)):
        cv2.ellipse(mask, (cx, cy), (r, r), a, 0, 90, 255, t, cv2.LINE_AA)


def _draw_plate(text: str, layout: str, rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """The frontal plate as float32 BGR (h, w, 3), 0..255."""
    fonts = select_fonts(_PLATE_FONTS)
    font = fonts[int(rng.integers(len(fonts)))]
    weight = _u(rng, 1.6, 2.4)
    ink_mask = np.zeros((h, w), np.float32)  # characters + border, printed in the ink colour
    border = np.zeros((h, w), np.uint8)
    inset = max(1, int(round(0.02 * h)))
    rounded_rect(border, inset, inset, w - 1 - inset, h - 1 - inset, int(0.08 * h),
                 max(1, int(round(0.025 * h))))
    ink_mask = np.maximum(ink_mask, border.astype(np.float32) / 255.0)
    if layout == "mercosur":
        commercial = rng.random() < 0.1
        paper = np.full((h, w), _u(rng, 225, 252), np.float32)
        img = paper[..., None] * (1.0 + rng.uniform(-0.03, 0.03, 3)).astype(np.float32)
        ink = np.array([35, 35, 175] if commercial else [25, 25, 25], np.float32)
        band_h = int(round(h * _u(rng, 0.19, 0.23)))
        blue = np.array([_u(rng, 130, 175), _u(rng, 45, 75), _u(rng, 0, 25)], np.float32)
        img[inset:band_h, inset:w - inset] = blue
        white = np.zeros((h, w), np.float32)
        word = text_mask("BRASIL", font, max(4.0, band_h * 0.45), tracking=band_h * 0.05,
                         weight=1.2, pad=1)
        ww = int(min(w * 0.3, word.shape[1] * (band_h * 0.55) / max(word.shape[0], 1)))
        bx0 = (w - ww) // 2
        paste_fit(white, word, (bx0, int(band_h * 0.22), bx0 + ww, int(band_h * 0.85)))
        # Mercosur emblem (left) and Brazilian flag (right) in the band.
        r = max(1, int(band_h * 0.3))
        cv2.circle(white, (int(0.09 * w), band_h // 2 + inset // 2), r, 1.0, max(1, r // 3),
                   cv2.LINE_AA)
        fx0, fx1 = int(0.83 * w), int(0.93 * w)
        fy0, fy1 = int(band_h * 0.2), int(band_h * 0.85)
        img[fy0:fy1, fx0:fx1] = (0, 140, 0)
        diamond = np.array([[fx0 + 1, (fy0 + fy1) // 2], [(fx0 + fx1) // 2, fy0 + 1],
                            [fx1 - 1, (fy0 + fy1) // 2], [(fx0 + fx1) // 2, fy1 - 1]], np.int32)
        cv2.fillPoly(img, [diamond], (0, 215, 250), cv2.LINE_AA)
        cv2.circle(img, ((fx0 + fx1) // 2, (fy0 + fy1) // 2), max(1, (fy1 - fy0) // 4),
                   (130, 60, 10), -1, cv2.LINE_AA)
        wm = white[..., None]
        img = img * (1.0 - wm) + 245.0 * wm
        x_text0 = int(0.06 * w)
        if rng.random() < 0.7:
            # QR code on the left, below the band.
            qs = max(3, int(0.17 * h))
            grid = (rng.random((7, 7)) < 0.5).astype(np.float32)
            qr = cv2.resize(grid, (qs, qs), interpolation=cv2.INTER_NEAREST)
            qy = band_h + int(0.08 * h)
            qx = int(0.035 * w)
            ink_mask[qy:qy + qs, qx:qx + qs] = np.maximum(ink_mask[qy:qy + qs, qx:qx + qs], qr)
            x_text0 = qx + qs + int(0.015 * w)
        box = (x_text0, band_h + int(0.12 * h), int(w * 0.955), h - int(0.1 * h))
        glyphs = _text_in_box(text, font, box, weight, tracking=(box[3] - box[1]) * 0.12)
        paste_fit(ink_mask, glyphs, box)
    else:
        commercial = rng.random() < 0.1
        level = _u(rng, 150, 205)
        if commercial:
            base = np.array([_u(rng, 30, 60), _u(rng, 30, 60), _u(rng, 150, 200)], np.float32)
            ink = np.array([230, 230, 230], np.float32)
        else:
            base = np.array([level * _u(rng, 0.97, 1.05), level, level * _u(rng, 0.95, 1.02)],
                            np.float32)
            ink = np.array([_u(rng, 15, 40)] * 3, np.float32)
        img = np.ones((h, w, 1), np.float32) * base
        uf, city = _CITIES[int(rng.integers(len(_CITIES)))]
        top = text_mask(f"{uf}-{city}", font, max(4.0, h * 0.1), tracking=h * 0.01, weight=1.0,
                        pad=1)
        tw = int(min(w * 0.6, top.shape[1] * (h * 0.12) / max(top.shape[0], 1)))
        tx0 = (w - tw) // 2
        paste_fit(ink_mask, top, (tx0, int(0.07 * h), tx0 + tw, int(0.2 * h)))
        sep = "-" if rng.random() < 0.6 else " "
        box = (int(0.05 * w), int(0.29 * h), int(0.95 * w), int(0.9 * h))
        glyphs = _text_in_box(text[:3] + sep + text[3:], font, box, weight,
                              tracking=(box[3] - box[1]) * 0.1)
        paste_fit(ink_mask, glyphs, box)
    # Embossed metal: characters and border are raised, so they catch light on one side.
    relief = tx.emboss(cv2.GaussianBlur(ink_mask, (0, 0), max(0.5, h / 90.0)),
                       _u(rng, 0, 2 * math.pi)) * np.float32(_u(rng, 5, 14))
    m = ink_mask[..., None]
    img = img * (1.0 - m) + ink * m + relief[..., None]
    # Bolts.
    bolt_y = int(0.12 * h) if layout == "brazilian" else int(0.5 * (band_h + inset))
    for bx in (int(0.2 * w), int(0.8 * w)) if layout == "brazilian" else (int(0.22 * w),
                                                                             int(0.74 * w)):
        rr = max(1, int(0.04 * h))
        cv2.circle(img, (bx, bolt_y), rr, (_u(rng, 90, 160),) * 3, -1, cv2.LINE_AA)
        cv2.circle(img, (bx, bolt_y), rr, (40, 40, 40), max(1, rr // 3), cv2.LINE_AA)
    # Wear: grime and light texture, fixed per plate (the same physical plate in every frame).
    img += (tx.texture("grain", rng, h, w) * _u(rng, 2, 6))[..., None]
    if rng.random() < 0.5:
        stain = np.clip(tx.texture("blotch", rng, h, w) - _u(rng, 0.5, 1.5), 0, 1)
        img *= (1.0 - _u(rng, 0.15, 0.45) * stain)[..., None]
    return img


def render_plate(text: str, layout: str, rng: np.random.Generator,
                 size: Optional[Tuple[int, int]] = None) -> np.ndarray:
    """A frontal, high-resolution plate image (BGR uint8, about 40x120 .. 45x130 px).

    Args:
        text: plate string matching ``layout``.
        layout: ``"brazilian"`` or ``"mercosur"``.
        rng: the random generator.
        size: ``(height, width)``; None picks one in the HR range.
    """
    key = normalise_layout(layout)
    if not plate_matches_layout(text, key):
        raise VinocrError(f"plate text {text!r} does not match the {LAYOUT_NAMES[key]} layout "
                          f"{PLATE_LAYOUTS[key]}")
    if size is None:
        size = (int(rng.integers(HR_HEIGHT[0], HR_HEIGHT[1] + 1)),
                int(rng.integers(HR_WIDTH[0], HR_WIDTH[1] + 1)))
    h, w = int(size[0]), int(size[1])
    if h < 8 or w < 16:
        raise VinocrError(f"plate size must be at least 8x16 px, got {h}x{w}")
    img = _draw_plate(text, key, rng, h, w)
    np.clip(img + 0.5, 0, 255, out=img)
    return img.astype(np.uint8)


# --------------------------------------------------------------------------------------------
# Scene rendering for tracks
# --------------------------------------------------------------------------------------------

@dataclass
class Scene:
    """Everything that stays fixed within a track: the plate, the car and the mean pose."""

    plate: np.ndarray          # flat plate, float32 BGRA (alpha = 1), at high resolution
    body: np.ndarray           # car body colour, BGR
    bumper: Optional[float]    # y of a dark bumper gap relative to the plate (plate heights)
    roll: float                # degrees
    yaw: float                 # relative height difference of left vs right plate edge
    pitch: float               # relative width difference of top vs bottom plate edge
    gain: float                # overall exposure
    aspect: float = PLATE_ASPECT  # plate width / height


def _make_scene(text: str, layout: str, rng: np.random.Generator) -> Scene:
    ph = int(rng.integers(120, 136))
    pw = int(round(ph * PLATE_ASPECT))
    return scene_for(_draw_plate(text, layout, rng, ph, pw), rng)


def scene_for(plate: np.ndarray, rng: np.random.Generator,
              aspect: float = PLATE_ASPECT) -> Scene:
    """A car around the flat ``plate`` (float32 BGR, 0..255) and its mean pose."""
    ph, pw = plate.shape[:2]
    plate = np.concatenate([plate, np.ones((ph, pw, 1), np.float32)], axis=2)
    hue = rng.uniform(0, 180)
    sat = rng.uniform(0, 200) if rng.random() < 0.5 else rng.uniform(0, 40)
    val = rng.uniform(30, 230)
    body = cv2.cvtColor(np.array([[[hue, sat, val]]], np.float32).astype(np.uint8),
                        cv2.COLOR_HSV2BGR)[0, 0].astype(np.float32)
    bumper = _u(rng, 0.6, 1.2) * (1 if rng.random() < 0.5 else -1) if rng.random() < 0.5 else None
    return Scene(plate=plate, body=body, bumper=bumper, roll=_u(rng, -4, 4),
                 yaw=_u(rng, -0.12, 0.12), pitch=_u(rng, -0.06, 0.06), gain=_u(rng, 0.7, 1.2),
                 aspect=aspect)


def _plate_quad(rng: np.random.Generator, scene: Scene, out_w: int, out_h: int,
                width_frac: Tuple[float, float], margin: float, jitter: float) -> np.ndarray:
    """The plate's four corners (TL, TR, BR, BL) in output pixel coordinates for one capture."""
    pw = out_w * _u(rng, *width_frac)
    ph = pw / scene.aspect * _u(rng, 0.93, 1.07)
    roll = math.radians(scene.roll + rng.normal(0, 1.2 * jitter))
    yaw = scene.yaw + rng.normal(0, 0.03 * jitter)
    pitch = scene.pitch + rng.normal(0, 0.02 * jitter)
    # Perspective: one vertical edge taller than the other (yaw), top edge narrower/wider (pitch).
    local = np.array([
        [-pw / 2 * (1 - pitch), -ph / 2 * (1 + yaw)],
        [pw / 2 * (1 - pitch), -ph / 2 * (1 - yaw)],
        [pw / 2 * (1 + pitch), ph / 2 * (1 - yaw)],
        [-pw / 2 * (1 + pitch), ph / 2 * (1 + yaw)],
    ])
    ca, sa = math.cos(roll), math.sin(roll)
    quad = local @ np.array([[ca, sa], [-sa, ca]])
    # Keep every corner at least `margin` pixels inside the frame: the plate sits in the scene.
    ext_x = quad[:, 0].max() - quad[:, 0].min()
    ext_y = quad[:, 1].max() - quad[:, 1].min()
    scale = min(1.0, (out_w - 1 - 2 * margin) / ext_x, (out_h - 1 - 2 * margin) / ext_y)
    quad *= scale
    free_x = max(0.0, (out_w - 1 - 2 * margin - (quad[:, 0].max() - quad[:, 0].min())) / 2)
    free_y = max(0.0, (out_h - 1 - 2 * margin - (quad[:, 1].max() - quad[:, 1].min())) / 2)
    cx = (out_w - 1) / 2 + _u(rng, -1, 1) * free_x * 0.8
    cy = (out_h - 1) / 2 + _u(rng, -1, 1) * free_y * 0.8
    quad[:, 0] += cx - (quad[:, 0].max() + quad[:, 0].min()) / 2
    quad[:, 1] += cy - (quad[:, 1].max() + quad[:, 1].min()) / 2
    return quad.astype(np.float32)


def _background(rng: np.random.Generator, scene: Scene, h: int, w: int,
                quad_hi: np.ndarray) -> np.ndarray:
    """Car body around the plate (float32 BGR), with shading, texture and an optional bumper gap."""
    shade = tx.linear_gradient(rng, h, w, _u(rng, 0.7, 0.9), _u(rng, 1.0, 1.2))
    bg = shade[..., None] * scene.body
    bg += (tx.texture("blotch", rng, h, w) * _u(rng, 3, 10))[..., None]
    if scene.bumper is not None:
        top = quad_hi[:, 1].min()
        bottom = quad_hi[:, 1].max()
        plate_h = bottom - top
        y = (top if scene.bumper < 0 else bottom) + scene.bumper * plate_h * 0.5
        thick = max(1, int(plate_h * 0.12))
        cv2.line(bg, (0, int(y)), (w - 1, int(y)), (15, 15, 15), thick, cv2.LINE_AA)
    return bg


def render_capture(scene: Scene, rng: np.random.Generator, out_w: int, out_h: int,
                   supersample: int, width_frac: Tuple[float, float], margin: float,
                   jitter: float, optical_blur: Tuple[float, float],
                   light_rng: Optional[np.random.Generator] = None
                   ) -> Tuple[np.ndarray, np.ndarray]:
    """Render one capture: (float32 BGR image at output size, corners (4, 2) in output pixels).

    ``light_rng`` draws the illumination (exposure, shadow ramp, colour cast, glare) instead of
    ``rng``: a generator seeded alike for every frame gives consecutive frames the same light.
    """
    quad = _plate_quad(rng, scene, out_w, out_h, width_frac, margin, jitter)
    s = supersample
    hi_w, hi_h = out_w * s, out_h * s
    # Output coordinate x corresponds to supersampled coordinate (x + 0.5) * s - 0.5.
    quad_hi = (quad + 0.5) * s - 0.5
    ph, pw = scene.plate.shape[:2]
    src = np.array([[-0.5, -0.5], [pw - 0.5, -0.5], [pw - 0.5, ph - 0.5], [-0.5, ph - 0.5]],
                   np.float32)
    matrix = cv2.getPerspectiveTransform(src, quad_hi.astype(np.float32))
    warped = cv2.warpPerspective(scene.plate, matrix, (hi_w, hi_h), flags=cv2.INTER_LINEAR,
                                 borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0, 0))
    alpha = warped[..., 3:4]
    bg = _background(rng, scene, hi_h, hi_w, quad_hi)
    img = bg * (1.0 - alpha) + warped[..., :3]
    # Per-capture illumination: exposure, a shadow / light ramp and a colour cast.
    light = rng if light_rng is None else light_rng
    gain = scene.gain * _u(light, 0.88, 1.12)
    img *= (tx.linear_gradient(light, hi_h, hi_w, _u(light, 0.75, 0.95), _u(light, 1.0, 1.15))
            * np.float32(gain))[..., None]
    img *= (1.0 + light.uniform(-0.05, 0.05, 3)).astype(np.float32)
    if light.random() < 0.15:  # headlight / sun glare
        img += (tx.gaussian_spot(light, hi_h, hi_w, (0.1, 0.3), (0.3, 0.8)) * _u(light, 30, 90)
                )[..., None]
    sigma = _u(rng, *optical_blur) * s
    if sigma > 0.3:
        img = cv2.GaussianBlur(img, (0, 0), sigma)
    out = cv2.resize(img, (out_w, out_h), interpolation=cv2.INTER_AREA)
    return out, quad


def _to_uint8(img: np.ndarray) -> np.ndarray:
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)


def _track_size(rng: np.random.Generator, median: Tuple[int, int], spread: float
                ) -> Tuple[float, float]:
    """A track's frame size (height, width), log-normal around ``median``: one scale for both
    sides and a smaller independent change of aspect."""
    scale = math.exp(rng.normal(0.0, spread))
    aspect = math.exp(rng.normal(0.0, spread * 0.4))
    return median[0] * scale, median[1] * scale * aspect


def _render_hr(scene: Scene, rng: np.random.Generator, size: Tuple[float, float]
               ) -> Tuple[np.ndarray, np.ndarray]:
    out_h = max(16, int(round(size[0])) + int(rng.integers(-1, 2)))
    out_w = max(40, int(round(size[1])) + int(rng.integers(-2, 3)))
    img, quad = render_capture(scene, rng, out_w, out_h, 2, (0.8, 0.9), 1.5, 1.0, (0.2, 0.55))
    img += tx.texture("noise", rng, out_h, out_w)[..., None] * np.float32(_u(rng, 0.8, 2.5))
    out = _to_uint8(img)
    if rng.random() < 0.5:
        out = tx.jpeg_roundtrip(out, int(rng.integers(75, 96)))
    return out, quad


@dataclass(frozen=True)
class FarCapture:
    """What the five LR frames of one track share: one camera, one stream, a fraction of a second.

    A far vehicle approaching the camera grows by ``growth`` per frame; everything else that makes
    a capture hard (focus, motion, haze, light, sensor noise level, compression level) belongs to
    the moment, not to the frame.
    """

    size: Tuple[float, float]   # (height, width) of the first frame, pixels
    growth: float               # relative size increase per frame
    width_frac: float           # plate width / crop width (the detector's box)
    blur: float                 # optical blur sigma, output pixels
    motion: int                 # motion-blur length, output pixels (< 2: none)
    motion_angle: float         # degrees
    contrast: float             # haze: contrast kept
    offset: float               # haze / exposure offset, grey levels
    exposure: float             # 1 by day, about 0.4 at night
    noise: float                # sensor noise sigma, grey levels
    chroma_noise: float
    jpeg: int                   # stream JPEG quality
    light_seed: int             # one lighting (shadow ramp, colour cast, glare) for every frame


def far_capture(rng: np.random.Generator, spec: ScenarioSpec) -> FarCapture:
    """Draw one track's LR conditions for scenario ``spec``.

    The sources we have give no numbers for blur, haze, noise or JPEG quality. The ranges are
    milder than the per-frame renderer's earlier ones (blur sigma 0.25..0.8 -> 0.2..0.65 px,
    contrast kept 0.5..0.92 -> 0.55..0.95, noise 2..7 -> 2..6, JPEG quality 20..69 -> 25..75),
    set by looking at track grids: drawn once per track, the old harshest draws made every frame
    of a track illegible, where a trained reader of real LRLPR-26 frames reads most single
    frames (60.6%, the organisers' baseline).
    """
    (h_lo, h_hi), (w_lo, w_hi) = LR_SIZE_LIMITS
    h, w = _track_size(rng, spec.lr_size, 0.15)
    night = rng.random() < spec.night_p
    return FarCapture(
        size=(min(max(h, h_lo), h_hi), min(max(w, w_lo), w_hi)),
        growth=_u(rng, 0.0, 0.04),
        width_frac=_u(rng, *spec.lr_width_frac),
        blur=_u(rng, 0.2, 0.65),
        motion=int(rng.integers(2, 4)) if rng.random() < 0.25 else 0,
        motion_angle=_u(rng, -30, 30),
        contrast=_u(rng, 0.55, 0.95) * (0.75 if night else 1.0),
        offset=_u(rng, -10, 20),
        exposure=_u(rng, 0.35, 0.6) if night else 1.0,
        noise=_u(rng, 2, 6) * (1.6 if night else 1.0),
        chroma_noise=_u(rng, 0.5, 2.5),
        jpeg=int(rng.integers(25, 76)),
        light_seed=int(rng.integers(2 ** 31)))


def _render_lr(scene: Scene, rng: np.random.Generator, cap: FarCapture, k: int
               ) -> Tuple[np.ndarray, np.ndarray]:
    """Frame ``k`` (0-based) of a track's far captures."""
    grow = (1.0 + cap.growth) ** k
    (h_lo, h_hi), (w_lo, w_hi) = LR_SIZE_LIMITS
    out_h = min(max(int(round(cap.size[0] * grow)) + int(rng.integers(-1, 2)), h_lo), h_hi)
    out_w = min(max(int(round(cap.size[1] * grow)) + int(rng.integers(-1, 2)), w_lo), w_hi)
    frac = min(max(cap.width_frac + rng.normal(0.0, 0.01), 0.5), 0.97)
    img, quad = render_capture(scene, rng, out_w, out_h, 4, (frac, frac), 0.6, 0.4,
                               (cap.blur * 0.9, cap.blur * 1.1),
                               light_rng=np.random.default_rng(cap.light_seed))
    if cap.motion >= 2:
        # Motion blur at output scale (vehicle moving across the frame); cheap at this size.
        k_len = cap.motion
        kernel = np.zeros((k_len, k_len), np.float32)
        kernel[k_len // 2, :] = 1.0 / k_len
        rot = cv2.getRotationMatrix2D(((k_len - 1) / 2, (k_len - 1) / 2),
                                      cap.motion_angle + rng.normal(0.0, 3.0), 1.0)
        kernel = cv2.warpAffine(kernel, rot, (k_len, k_len))
        kernel /= max(kernel.sum(), 1e-6)
        img = cv2.filter2D(img, -1, kernel)
    # Far capture: haze lowers contrast, small sensors add noise, streams add JPEG blocking.
    img *= np.float32(cap.exposure * _u(rng, 0.97, 1.03))
    mean = img.mean(axis=(0, 1), keepdims=True)
    img = mean + (img - mean) * np.float32(cap.contrast) + np.float32(cap.offset)
    img += tx.texture("noise", rng, out_h, out_w)[..., None] * np.float32(
        cap.noise * _u(rng, 0.9, 1.1))
    img += tx.texture("noise3", rng, out_h, out_w) * np.float32(cap.chroma_noise)
    quality = min(max(cap.jpeg + int(rng.integers(-4, 5)), 10), 95)
    return tx.jpeg_roundtrip(_to_uint8(img), quality), quad


def _corner_list(quad: np.ndarray) -> List[List[float]]:
    return [[round(float(x), 2), round(float(y), 2)] for x, y in quad]


def write_track(track_dir: Union[str, Path], text: str, layout: str, rng: np.random.Generator,
                image_ext: Optional[str] = None, scenario: str = "A") -> Dict[str, Any]:
    """Write one LRLPR-26-style track: ``hr-001..005``, ``lr-001..005`` and ``annotations.json``.

    ``scenario`` ``"A"`` or ``"B"`` (:data:`SCENARIOS`) sets the sizes, the crop and whether
    corners are annotated; ``image_ext`` defaults to the scenario's. Returns the annotations dict
    that was written.
    """
    key = normalise_layout(layout)
    if not plate_matches_layout(text, key):
        raise VinocrError(f"plate text {text!r} does not match the {LAYOUT_NAMES[key]} layout "
                          f"{PLATE_LAYOUTS[key]}")
    spec = scenario_spec(scenario)
    ext = image_ext or spec.image_ext
    ext = ext if ext.startswith(".") else "." + ext
    if ext.lower() not in (".png", ".jpg", ".jpeg"):
        raise VinocrError(f"image_ext must be .png or .jpg, got {image_ext!r}")
    params = [cv2.IMWRITE_JPEG_QUALITY, 95] if ext.lower() != ".png" else \
        [cv2.IMWRITE_PNG_COMPRESSION, 3]
    out = Path(track_dir)
    out.mkdir(parents=True, exist_ok=True)
    scene = _make_scene(text, key, rng)
    hr_size = _track_size(rng, spec.hr_size, 0.12)
    far = far_capture(rng, spec)
    corners: Dict[str, List[List[float]]] = {}
    frames: List[Tuple[str, np.ndarray]] = []
    for k in range(FRAMES_PER_TRACK):
        image, quad = _render_hr(scene, rng, hr_size)
        name = f"hr-{k + 1:03d}{ext}"
        frames.append((name, image))
        corners[name] = _corner_list(quad)
    for k in range(FRAMES_PER_TRACK):
        image, quad = _render_lr(scene, rng, far, k)
        name = f"lr-{k + 1:03d}{ext}"
        frames.append((name, image))
        corners[name] = _corner_list(quad)
    for name, image in frames:
        ok, buf = cv2.imencode(ext, image, params)
        if not ok:  # pragma: no cover
            raise VinocrError(f"could not encode {name} as {ext}")
        (out / name).write_bytes(buf.tobytes())
    annotations = {"plate_layout": LAYOUT_NAMES[key], "plate_text": text,
                   "corners": corners if spec.corners else {}}
    (out / "annotations.json").write_text(json.dumps(annotations, indent=2) + "\n",
                                          encoding="utf-8")
    return annotations


def scenario_spec(scenario: str) -> ScenarioSpec:
    """The :class:`ScenarioSpec` of ``"A"``/``"B"`` (also accepts ``"Scenario-A"``)."""
    key = str(scenario).strip()
    key = key[len("scenario-"):] if key.lower().startswith("scenario-") else key
    if key.upper() not in SCENARIOS:
        raise VinocrError(f"unknown scenario {scenario!r}; choose A or B")
    return SCENARIOS[key.upper()]

"""Synthetic plate crops of any registered plate format (:mod:`vinocr.decode.formats`).

One sample: a plate number drawn from the format's regular expression as printed (separators
included, so a hyphen or the Chinese middle dot appears where plates print it), a flat plate in a
look of the format's region (:mod:`vinocr.data.synth.plate_looks`), one or two rows, placed on a
car with a small pose (:func:`vinocr.data.synth.plates.render_capture`), cropped the way a plate
detector crops (tight to loose, sometimes cutting the edge) and damaged like a camera does
(:mod:`vinocr.data.synth.degrade`). The label is what a reader must output: the format's
canonical reading (separators dropped, merged characters in their canonical spelling), top row
first on two-row plates.

Brazilian formats are drawn by the renderer of the Brazilian tracks (:func:`render_plate`).
"""
from __future__ import annotations

import functools
import math
import random
import re
from typing import AbstractSet, Any, Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from vinocr.data.synth import textures as tx
from vinocr.data.synth.degrade import degrade
from vinocr.data.synth.fonts import (KIND_TRUETYPE, FontSpec, cjk_fonts, fonts_for, is_cjk,
                                     load_truetype)
from vinocr.data.synth.plate_looks import EU_BLUE, RED, WHITE, PlateLook, Scheme, looks_for
from vinocr.data.synth.plates import (paste_fit, render_capture, render_plate, rounded_rect,
                                      scene_for)
from vinocr.data.synth.pools import get_pool
from vinocr.data.synth.text_mask import text_mask
from vinocr.decode import regex
from vinocr.decode.formats import PlateFormat, group_members, resolve_formats
from vinocr.errors import VinocrError

#: Brazilian format -> layout of :mod:`vinocr.data.synth.plates`.
_BRAZIL = {"br_old": "brazilian", "mercosur": "mercosur"}
#: Printed separators this module draws itself (fonts disagree on them, plates do not).
_SEPARATORS = " -·•"
#: How often a separator that labels may omit is printed (real plates print theirs).
SEPARATOR_P = 0.85
#: Height range of the plate in the saved crop, pixels (CCPD crops: about 20-30).
CROP_PLATE_HEIGHT = (18.0, 72.0)

#: Camera damage for plate crops: every family except a second resampling (``lowres_cubic`` on
#: top of the small crop sizes leaves plates nobody can read).
PLATE_DAMAGE: Tuple[str, ...] = tuple(f for f in get_pool("all").degradations
                                      if f != "lowres_cubic")

_u = tx.uniform


# ----------------------------------------------------------------------------------------------
# Text

def printed_plate(fmt: PlateFormat, rng: np.random.Generator,
                  alphabet: Optional[AbstractSet[str]] = None) -> str:
    """A random plate of ``fmt`` as printed (separators included where plates print them).

    ``alphabet``: the characters a label may hold (a recogniser's charset); plates whose reading
    needs others (a German district with an umlaut under the ``plate`` charset) are drawn again.
    Raises VinocrError when the format cannot be written in ``alphabet`` at all.
    """
    for _ in range(200):
        text = _printed_once(fmt, rng)
        if alphabet is None or set(fmt.canonical(text)) <= alphabet:
            return text
    raise VinocrError(f"plate format {fmt.name} cannot be written in the charset: its plates "
                      "need characters the charset lacks (Chinese formats need plate_cn)")


def _printed_once(fmt: PlateFormat, rng: np.random.Generator) -> str:
    seps = set(fmt.separators)

    def optional_p(node: regex.Repeat) -> Optional[float]:
        inner = node.node
        if isinstance(inner, regex.CharSet) and inner.chars <= seps:
            # Catch-all formats allow a separator between any two characters; plates of
            # specific formats print theirs.
            return 0.1 if fmt.fallback else SEPARATOR_P
        return None

    text = regex.sample(fmt.printed_ast, random.Random(int(rng.integers(2 ** 63))),
                        optional_p=optional_p)
    # One separator style per plate where the format allows it (a regex like [ ·•-]? allows a
    # different one at each gap; German plates do mix a hyphen and a space).
    used = [c for c in text if c in seps]
    if len(set(used)) > 1:
        same = "".join(used[0] if c in seps else c for c in text)
        if re.fullmatch(fmt.regex, same):
            text = same
    return text


def split_rows(printed: str, fmt: PlateFormat) -> Tuple[str, str]:
    """Where a two-row plate breaks: at the separator that balances the rows best (after the
    province sign and letter on Chinese plates); in the middle when nothing separates."""
    read = [i for i, c in enumerate(printed) if c not in fmt.separators]
    if fmt.region == "CN" and len(read) > 2:
        cut = read[2]
        return printed[:cut], printed[cut:]
    gaps = [i for i, c in enumerate(printed) if c in fmt.separators and 0 < i < len(printed) - 1]
    n = len(read)
    if gaps:
        def imbalance(i: int) -> int:
            top = sum(1 for j in read if j < i)
            return abs(2 * top - n)
        cut = min(gaps, key=imbalance)
        return printed[:cut], printed[cut + 1:]
    cut = read[(n + 1) // 2] if n > 1 else len(printed)
    return printed[:cut], printed[cut:]


# ----------------------------------------------------------------------------------------------
# Drawing

@functools.lru_cache(maxsize=256)
def _cjk_glyph(char: str, path: str, px: int) -> np.ndarray:
    """Coverage of one Chinese character, cropped to its ink (float32 0..1)."""
    from PIL import Image, ImageDraw

    font = load_truetype(path, px)
    image = Image.new("L", (2 * px, 2 * px), 0)
    ImageDraw.Draw(image).text((px, px), char, font=font, fill=255, anchor="mm")
    mask = np.asarray(image, dtype=np.float32) * (1.0 / 255.0)
    rows = np.flatnonzero(mask.max(axis=1) > 0.2)
    cols = np.flatnonzero(mask.max(axis=0) > 0.2)
    if rows.size == 0 or cols.size == 0:
        raise VinocrError(f"the font {path} has no glyph for {char!r}")
    return mask[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]


def _ink_rows(mask: np.ndarray) -> Tuple[int, int]:
    rows = np.flatnonzero(mask.max(axis=1) > 0.5)
    return (int(rows[0]), int(rows[-1]) + 1) if rows.size else (0, mask.shape[0])


def _separator_mask(c: str, height: int, top: int, bottom: int, cap: float,
                    seal: bool) -> np.ndarray:
    """A printed separator drawn at cap height ``cap`` between rows ``top`` and ``bottom``."""
    mid = (top + bottom) / 2.0
    if c == " ":
        return np.zeros((height, max(1, int(cap * 0.45))), np.float32)
    width = max(3, int(cap * (0.45 if seal else 0.4)))
    mask = np.zeros((height, width), np.uint8)
    cx = width // 2
    if seal:  # German plates: two round seals stacked where the hyphen would be
        r = max(1, int(cap * 0.16))
        cv2.circle(mask, (cx, int(mid - cap * 0.22)), r, 255, max(1, r // 2), cv2.LINE_AA)
        cv2.circle(mask, (cx, int(mid + cap * 0.22)), r, 255, max(1, r // 2), cv2.LINE_AA)
    elif c == "-":
        half = max(1, int(cap * 0.14))
        cv2.rectangle(mask, (cx - half, int(mid - cap * 0.05)), (cx + half, int(mid + cap * 0.05)),
                      255, -1)
    else:  # middle dot / bullet
        cv2.circle(mask, (cx, int(mid)), max(1, int(cap * 0.07)), 255, -1, cv2.LINE_AA)
    return mask.astype(np.float32) / 255.0


def line_mask(text: str, font: FontSpec, cap: float, tracking: float,
              seal_first_gap: bool = False) -> np.ndarray:
    """Coverage of one printed row: Latin runs in ``font``, Chinese characters in the CJK font,
    separators drawn; rows cropped to the ink."""
    ref = text_mask("H", font, cap, pad=0)
    height = ref.shape[0]
    top, bottom = _ink_rows(ref)
    pieces: List[np.ndarray] = []
    run = ""
    sealed = not seal_first_gap

    def flush() -> None:
        nonlocal run
        if run:
            pieces.append(text_mask(run, font, cap, tracking=tracking, pad=0))
            run = ""

    for c in text:
        if c in _SEPARATORS:
            flush()
            pieces.append(_separator_mask(c, height, top, bottom, cap, seal=not sealed))
            sealed = True
        elif is_cjk(c):
            flush()
            cjk = cjk_fonts()
            if not cjk:
                raise VinocrError("no Chinese font is installed for the province signs; "
                                  "reinstall vinocr (it installs pylopdf-fonts-zh-cn)")
            glyph = _cjk_glyph(c, cjk[0].path or "", max(8, int(cap * 1.3)))
            gh = max(1, bottom - top)
            gw = max(1, int(round(glyph.shape[1] * gh / glyph.shape[0])))
            placed = np.zeros((height, gw), np.float32)
            placed[top:bottom] = cv2.resize(glyph, (gw, gh), interpolation=cv2.INTER_AREA)
            pieces.append(placed)
        else:
            run += c
    flush()
    gap = np.zeros((height, max(1, int(round(tracking)))), np.float32)
    joined = [p for piece in pieces for p in (piece, gap)][:-1] or [gap]
    mask = np.concatenate(joined, axis=1)
    lo, hi = _ink_rows(mask)
    return mask[lo:hi]


def _fit_line(canvas: np.ndarray, mask: np.ndarray, box: Tuple[int, int, int, int],
              stretch: float) -> None:
    """Paste ``mask`` at the box height, as wide as its shape asks (times ``stretch``) but never
    wider than the box, centred."""
    x0, y0, x1, y1 = box
    natural = mask.shape[1] * (y1 - y0) / max(1, mask.shape[0]) * stretch
    width = int(min(x1 - x0, natural))
    left = x0 + (x1 - x0 - width) // 2
    paste_fit(canvas, mask, (left, y0, left + width, y1))


def _pick_scheme(look: PlateLook, rng: np.random.Generator) -> Scheme:
    weights = np.array([s.weight for s in look.schemes], np.float64)
    return look.schemes[int(rng.choice(len(weights), p=weights / weights.sum()))]


def _paper(scheme: Scheme, rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    paper = np.array(scheme.paper, np.float32) * np.float32(_u(rng, 0.92, 1.05))
    img = np.ones((h, w, 1), np.float32) * paper
    if scheme.paper2 is not None:
        ramp = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None, None] ** _u(rng, 0.7, 1.6)
        img = img * (1.0 - ramp) + np.array(scheme.paper2, np.float32) * ramp
    return img


def _small_text(canvas: np.ndarray, text: str, font: FontSpec, box: Tuple[int, int, int, int]
                ) -> None:
    if text.strip():
        mask = text_mask(text, font, max(4.0, (box[3] - box[1]) * 0.8), pad=1)
        _fit_line(canvas, mask, box, 1.0)


def _draw_flat(printed: str, fmt: PlateFormat, look: PlateLook, rng: np.random.Generator,
               two_row: bool) -> Tuple[np.ndarray, float]:
    """The frontal plate (float32 BGR 0..255) and its aspect."""
    aspect = look.two_row_aspect if two_row else look.aspect
    h = 200 if two_row else 120
    w = int(round(h * aspect))
    scheme = _pick_scheme(look, rng)
    fonts = [f for f in fonts_for(look.fonts, ("train", "heldout")) if f.kind == KIND_TRUETYPE]
    font = fonts[int(rng.integers(len(fonts)))]
    img = _paper(scheme, rng, h, w)
    ink = np.array(scheme.ink, np.float32)
    ink_mask = np.zeros((h, w), np.float32)      # drawn in the ink colour
    accent = np.zeros((h, w), np.float32)        # header / footer / band text colour
    inset = max(2, int(0.035 * h))
    border = np.zeros((h, w), np.uint8)
    rounded_rect(border, inset, inset, w - 1 - inset, h - 1 - inset, int(0.1 * h),
                 max(1, int(0.025 * h)))
    ink_mask = np.maximum(ink_mask, border.astype(np.float32) / 255.0)
    x_left, x_right = int(0.05 * w), int(0.95 * w)
    if look.band is not None and look.band_codes:
        code = look.band_codes[int(rng.integers(len(look.band_codes)))]
        bw = int(0.09 * w * (look.aspect / aspect) ** 0.5)
        if look.band == "eu":
            img[inset:h - inset, inset:inset + bw] = EU_BLUE
            white = np.zeros((h, w), np.float32)
            cx, cy, r = inset + bw // 2, int(0.3 * h), max(2, int(0.16 * h))
            for k in range(12):
                a = 2 * math.pi * k / 12
                cv2.circle(white, (int(cx + r * math.cos(a)), int(cy + r * math.sin(a))),
                           max(1, int(0.018 * h)), 1.0, -1, cv2.LINE_AA)
            if code:
                _small_text(white, code, font, (inset + 2, int(0.58 * h), inset + bw - 2,
                                                int(0.85 * h)))
            img = img * (1.0 - white[..., None]) + np.array(WHITE, np.float32) * white[..., None]
        else:  # Indian plates: a hologram disc and IND at the left
            cv2.circle(accent, (inset + bw // 2, int(0.3 * h)), max(2, int(0.1 * h)), 1.0, -1,
                       cv2.LINE_AA)
            _small_text(accent, code, font, (inset + 2, int(0.55 * h), inset + bw,
                                             int(0.8 * h)))
        x_left = inset + bw + int(0.02 * w)
    rows = split_rows(printed, fmt) if two_row else (printed,)
    header = look.header[int(rng.integers(len(look.header)))] if look.header else ""
    footer = look.footer[int(rng.integers(len(look.footer)))] if look.footer else ""
    if two_row:
        boxes = [(0.1, 0.45), (0.52, 0.9)]
    elif header or footer:
        boxes = [(0.25, 0.79)]
        _small_text(accent, header, font, (int(0.2 * w), int(0.06 * h), int(0.8 * w),
                                           int(0.21 * h)))
        _small_text(accent, footer, font, (int(0.25 * w), int(0.83 * h), int(0.75 * w),
                                           int(0.94 * h)))
    else:
        boxes = [(0.15, 0.86)]
    stretch = _u(rng, 0.8, 1.1)
    seal = look.band == "eu" and fmt.region == "DE" and rng.random() < 0.7
    for row, (t, b) in zip(rows, boxes):
        cap = (b - t) * h
        mask = line_mask(row.strip(_SEPARATORS), font, cap, tracking=cap * _u(rng, 0.05, 0.18),
                         seal_first_gap=seal)
        _fit_line(ink_mask, mask, (x_left, int(t * h), x_right, int(b * h)), stretch)
    accent_colour = ink if rng.random() < 0.5 else np.array(RED, np.float32)
    if look.bolt_holes:
        ys = (0.1, 0.9) if look.bolt_holes == 4 else (0.1,)
        for y in ys:
            for x in (0.22, 0.78):
                cv2.circle(img, (int(x * w), int(y * h)), max(1, int(0.035 * h)),
                           (_u(rng, 80, 170),) * 3, -1, cv2.LINE_AA)
    if rng.random() < look.embossed:
        relief = tx.emboss(cv2.GaussianBlur(ink_mask, (0, 0), max(0.5, h / 90.0)),
                           _u(rng, 0, 2 * math.pi)) * np.float32(_u(rng, 5, 14))
        img = img + relief[..., None]
    img = img * (1.0 - accent[..., None]) + accent_colour * accent[..., None]
    img = img * (1.0 - ink_mask[..., None]) + ink * ink_mask[..., None]
    if rng.random() < look.frame_p:  # dealer frame: covers the edges and part of header/footer
        frame = np.array((_u(rng, 10, 60),) * 3, np.float32)
        top_t, bot_t = int(_u(rng, 0.03, 0.12) * h), int(_u(rng, 0.05, 0.16) * h)
        side = int(0.03 * w)
        img[:top_t] = frame
        img[h - bot_t:] = frame
        img[:, :side] = frame
        img[:, w - side:] = frame
    img += (tx.texture("grain", rng, h, w) * _u(rng, 2, 6))[..., None]
    if rng.random() < 0.4:
        stain = np.clip(tx.texture("blotch", rng, h, w) - _u(rng, 0.5, 1.5), 0, 1)
        img *= (1.0 - _u(rng, 0.1, 0.35) * stain)[..., None]
    return img, aspect


# ----------------------------------------------------------------------------------------------
# The crop

def _crop(image: np.ndarray, quad: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Cut around the plate as a detector would: tight to loose, sometimes clipping an edge."""
    x0, y0 = quad.min(axis=0)
    x1, y1 = quad.max(axis=0)
    pw, ph = x1 - x0, y1 - y0
    mx = [_u(rng, -0.02, 0.08) * pw for _ in range(2)]
    my = [_u(rng, -0.05, 0.2) * ph for _ in range(2)]
    h, w = image.shape[:2]
    left, right = max(0, int(round(x0 - mx[0]))), min(w, int(round(x1 + mx[1])) + 1)
    top, bottom = max(0, int(round(y0 - my[0]))), min(h, int(round(y1 + my[1])) + 1)
    return image[top:bottom, left:right]


def render_plate_crop(fmt: PlateFormat, rng: np.random.Generator,
                      two_row_p: Optional[float] = None,
                      damage: Optional[Sequence[str]] = None,
                      damage_p: float = 0.6, alphabet: Optional[AbstractSet[str]] = None
                      ) -> Tuple[np.ndarray, str, Dict[str, Any]]:
    """One synthetic crop of ``fmt``: ``(BGR uint8 image, label, meta)``.

    Args:
        fmt: a plate format.
        rng: all randomness of the sample.
        two_row_p: chance of a two-row plate where the region has them (None: the look's own).
        damage: camera-damage families (:mod:`vinocr.data.synth.degrade`) to draw from
            (None: :data:`PLATE_DAMAGE`).
        damage_p: chance that a crop gets 1-2 of them.
        alphabet: characters a label may hold (see :func:`printed_plate`).
    """
    printed = printed_plate(fmt, rng, alphabet)
    label = fmt.canonical(printed)
    if fmt.name in _BRAZIL:
        plate = render_plate(label, _BRAZIL[fmt.name], rng, size=(130, 400)).astype(np.float32)
        look_name, aspect, two_row = "br", 400 / 130, False
    else:
        looks = looks_for(fmt.region, fmt.name)
        look = looks[int(rng.integers(len(looks)))]
        p = look.two_row_p if two_row_p is None else (two_row_p if look.two_row_p > 0 else 0.0)
        two_row = bool(rng.random() < p)
        plate, aspect = _draw_flat(printed, fmt, look, rng, two_row)
        look_name = look.name
    scene = scene_for(plate, rng, aspect)
    # A two-row plate is taller for the same character size.
    plate_h = math.exp(_u(rng, *np.log(CROP_PLATE_HEIGHT))) * (1.7 if two_row else 1.0)
    frac = _u(rng, 0.7, 0.85)
    out_w = max(24, int(plate_h * aspect / frac))
    out_h = max(16, int(plate_h / frac * 1.3))
    image, quad = render_capture(scene, rng, out_w, out_h, 2, (frac, frac), 1.0, 1.0,
                                 (0.2, 0.6))
    image = np.clip(_crop(image, quad, rng) + 0.5, 0, 255).astype(np.uint8)
    image, applied = degrade(image, rng, tuple(PLATE_DAMAGE if damage is None else damage),
                             damage_p, 2)
    meta = {"format": fmt.name, "region": fmt.region, "look": look_name, "printed": printed,
            "two_row": two_row, "damage": applied}
    return image, label, meta


def format_mix(spec: str) -> List[Tuple[PlateFormat, float]]:
    """Formats and their shares from ``"cn_blue:6,cn_green,us"``: each listed name gets its
    weight (default 1), split evenly over the members of a group, recursively.

    Raises :class:`~vinocr.decode.formats.FormatError` naming an unknown format.
    """
    shares: Dict[str, Tuple[PlateFormat, float]] = {}

    def add(name: str, weight: float, depth: int = 0) -> None:
        members = group_members(name)
        if members is None or depth > 20:  # a format, or "all" (every format, evenly)
            fmts = resolve_formats([name])
            for fmt in fmts:
                shares[fmt.name] = (fmt, shares.get(fmt.name, (fmt, 0.0))[1] + weight / len(fmts))
            return
        for member in members:
            add(member, weight / len(members), depth + 1)

    items = [item.strip() for item in str(spec).split(",") if item.strip()]
    if not items:
        raise VinocrError("no plate formats given (e.g. --formats cn or us,eu_de:2)")
    for item in items:
        name, _, weight = item.partition(":")
        try:
            w = float(weight) if weight else 1.0
        except ValueError:
            w = -1.0
        if not w > 0 or not math.isfinite(w):
            raise VinocrError(f"format weight in {item!r} must be a positive number")
        add(name.strip(), w)
    total = sum(w for _, w in shares.values())
    return [(fmt, w / total) for fmt, w in shares.values()]

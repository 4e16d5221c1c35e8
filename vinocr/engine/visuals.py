"""Pictures of evaluation results: a character confusion heatmap and a grid of misread crops.

Both return HWC uint8 RGB arrays, the layout VisualDL's ``add_image`` takes, and :func:`save_png`
writes them to disk. Rendering uses matplotlib's Agg canvas directly (no pyplot), so importing or
calling this module never switches the process-wide matplotlib backend, and it works headless.
"""
from __future__ import annotations

import functools
import logging
import math
import os
import warnings
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from vinocr.errors import VinocrError

logger = logging.getLogger(__name__)

#: How an empty side of a confusion pair (insertion/deletion) and a space are drawn.
GAP_LABEL = "∅"
SPACE_LABEL = "␣"

_WHITE = (255, 255, 255)
_TEXT = (20, 20, 20)
_OK = (0, 120, 0)
_BAD = (210, 0, 0)


class VisualsError(VinocrError):
    """An image cannot be written."""


def _display(char: str) -> str:
    if char == "":
        return GAP_LABEL
    if char == " ":
        return SPACE_LABEL
    return char


def _figure_to_rgb(fig) -> np.ndarray:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    rgba = np.asarray(canvas.buffer_rgba())
    return np.ascontiguousarray(rgba[:, :, :3])


def _select_chars(confusion: Mapping[Tuple[str, str], int], chars: Optional[Sequence[str]],
                  max_chars: int) -> List[str]:
    """Characters to show (``''`` = gap), limited to those that occur and to ``max_chars``."""
    errors: Dict[str, int] = {}
    total: Dict[str, int] = {}
    for (t, p), count in confusion.items():
        if count <= 0:
            continue
        for c in {t, p}:
            total[c] = total.get(c, 0) + count
            if t != p:
                errors[c] = errors.get(c, 0) + count
    occurring = set(total)
    if len(occurring) > max_chars:
        # Keep the characters involved in most errors: a heatmap of 80 mostly-correct characters
        # hides the few confusions one is looking for.
        ranked = sorted(occurring, key=lambda c: (-errors.get(c, 0), -total[c], c))
        dropped = len(occurring) - max_chars
        occurring = set(ranked[:max_chars])
        logger.debug("confusion matrix: showing %d of %d characters", max_chars,
                     max_chars + dropped)
    order: List[str] = []
    if chars is not None:
        order = [c for c in dict.fromkeys(chars) if c in occurring and c != ""]
    order += sorted(c for c in occurring if c not in order and c != "")
    if "" in occurring:
        order.append("")  # the gap row/column goes last, apart from real characters
    return order


def confusion_matrix_image(confusion: Mapping[Tuple[str, str], int],
                           chars: Optional[Sequence[str]] = None, max_chars: int = 40
                           ) -> np.ndarray:
    """Row-normalised heatmap of a confusion dict ``{(true, pred): count}`` (as in
    :attr:`vinocr.engine.evaluation.EvalResult.confusion`).

    Rows are true characters, columns predicted ones; only characters that occur are shown, in the
    order of ``chars`` when given. ``∅`` is the gap: row ∅ = inserted characters, column ∅ =
    deleted ones. A square-root colour scale keeps rare confusions visible next to a near-1
    diagonal. Returns an HWC uint8 RGB array.
    """
    from matplotlib.colors import PowerNorm
    from matplotlib.figure import Figure

    order = _select_chars(confusion, chars, max(1, int(max_chars)))
    if not order:
        fig = Figure(figsize=(3, 2), dpi=100)
        fig.text(0.5, 0.5, "no confusion data", ha="center", va="center")
        return _figure_to_rgb(fig)
    index = {c: i for i, c in enumerate(order)}
    k = len(order)
    counts = np.zeros((k, k), np.float64)
    for (t, p), count in confusion.items():
        if t in index and p in index:
            counts[index[t], index[p]] += count
    row_sums = counts.sum(axis=1, keepdims=True)
    matrix = np.divide(counts, row_sums, out=np.zeros_like(counts), where=row_sums > 0)
    n_errors = int(sum(c for (t, p), c in confusion.items() if t != p))

    side = min(14.0, max(3.5, 1.2 + 0.32 * k))
    fig = Figure(figsize=(side + 0.8, side), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(matrix, cmap="Blues", norm=PowerNorm(gamma=0.5, vmin=0.0, vmax=1.0),
                      interpolation="nearest")
    labels = [_display(c) for c in order]
    ax.set_xticks(range(k))
    ax.set_yticks(range(k))
    font = 9 if k <= 30 else 7
    families = _tick_families()
    ax.set_xticklabels(labels, fontsize=font, fontfamily=list(families))
    ax.set_yticklabels(labels, fontsize=font, fontfamily=list(families))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"confusion (row-normalised), {n_errors} character errors", fontsize=10)
    if k <= 25:
        # Only the off-diagonal cells: those are what the picture is for, and the diagonal is
        # readable from the colour.
        for i in range(k):
            for j in range(k):
                if i != j and counts[i, j] > 0:
                    ax.text(j, i, f"{int(counts[i, j])}", ha="center", va="center",
                            fontsize=6, color="white" if matrix[i, j] > 0.5 else "black")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    with warnings.catch_warnings():
        # Characters no installed font has are drawn as boxes; a warning per glyph per draw
        # would flood the training log.
        warnings.filterwarnings("ignore", message=".*[Gg]lyph.*missing.*")
        fig.tight_layout()
        return _figure_to_rgb(fig)


@functools.lru_cache(maxsize=1)
def _tick_families() -> Tuple[str, ...]:
    """DejaVu Sans, then the Chinese font the package installs (matplotlib falls back per
    glyph), so the province signs of Chinese plates label the matrix instead of boxes."""
    families = ["DejaVu Sans"]
    path = _cjk_font_path()
    if path is not None:
        from matplotlib import font_manager

        try:
            font_manager.fontManager.addfont(path)
            families.append(font_manager.FontProperties(fname=path).get_name())
        except Exception as exc:  # pragma: no cover - a damaged font file: boxes, not a crash
            logger.debug("could not register %s with matplotlib: %s", path, exc)
    return tuple(families)


def _cjk_font_path() -> Optional[str]:
    from vinocr.data.synth.fonts import cjk_fonts

    fonts = cjk_fonts()
    return fonts[0].path if fonts else None


# --------------------------------------------------------------------------------------------
# Error grid

def _load_font(size: int):
    from PIL import ImageFont

    try:
        from matplotlib import font_manager

        path = font_manager.findfont("DejaVu Sans Mono", fallback_to_default=True)
        return ImageFont.truetype(path, size)
    except Exception:  # pragma: no cover - matplotlib always ships DejaVu; keep a fallback anyway
        return ImageFont.load_default()


def _to_rgb(image: np.ndarray) -> np.ndarray:
    """A BGR/BGRA/grey crop (uint8 or float in [0, 1]) as uint8 RGB."""
    import cv2

    img = np.asarray(image)
    if img.dtype != np.uint8:
        img = img.astype(np.float64)
        if img.size and np.nanmax(img) <= 1.0:
            img = img * 255.0
        img = np.clip(np.nan_to_num(img), 0, 255).astype(np.uint8)
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    if img.ndim == 3 and img.shape[2] == 1:
        return cv2.cvtColor(img[:, :, 0], cv2.COLOR_GRAY2RGB)
    if img.ndim == 3 and img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    if img.ndim == 3 and img.shape[2] == 3:
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    raise ValueError(f"expected an HW, HWC1, HWC3 or HWC4 image, got shape {img.shape}")


def _highlight_flags(label: str, pred: str) -> Tuple[List[bool], List[bool]]:
    """Per-character 'wrong' flags for the label and the prediction, from the alignment."""
    from vinocr.engine.evaluation import align

    gt_bad: List[bool] = []
    pr_bad: List[bool] = []
    for t, p in align(label, pred):
        if t:
            gt_bad.append(t != p)
        if p:
            pr_bad.append(t != p)
    return gt_bad, pr_bad


def _load_cjk_font(size: int):
    """The installed Chinese font at ``size`` (None when it is missing)."""
    from vinocr.data.synth.fonts import load_truetype

    path = _cjk_font_path()
    return load_truetype(path, size) if path is not None else None


def _draw_line(draw, font, x: int, y: int, prefix: str, text: str, bad: Sequence[bool],
               suffix: str = "", cjk_font=None) -> int:
    """Draw ``prefix`` + ``text`` (wrong characters in red) + ``suffix``; return the end x.
    Chinese characters are drawn with ``cjk_font`` when given."""
    from vinocr.data.synth.fonts import is_cjk

    draw.text((x, y), prefix, font=font, fill=_TEXT)
    x += int(math.ceil(font.getlength(prefix)))
    for char, wrong in zip(text, bad):
        face = cjk_font if cjk_font is not None and is_cjk(char) else font
        draw.text((x, y), char, font=face, fill=_BAD if wrong else _OK)
        x += int(math.ceil(face.getlength(char)))
    if suffix:
        draw.text((x, y), suffix, font=font, fill=_TEXT)
        x += int(math.ceil(font.getlength(suffix)))
    return x


def error_grid(images: Sequence[np.ndarray], labels: Sequence[str], preds: Sequence[str],
               confidences: Optional[Sequence[float]] = None, cols: int = 2,
               cell_height: int = 48) -> np.ndarray:
    """A grid of crops, each with ``GT: label`` and ``PR: pred (0.87)`` underneath.

    ``images`` are the crops as read (BGR, or grey; uint8 or float in [0, 1]). Characters that
    differ in the edit alignment are red, matching ones green, so a misread ``8``/``B`` stands out.
    Crops are scaled to ``cell_height`` and, when very wide, shrunk to the common cell width.
    Returns an HWC uint8 RGB array.
    """
    import cv2
    from PIL import Image, ImageDraw

    from vinocr.data.synth.fonts import is_cjk

    if not (len(images) == len(labels) == len(preds)):
        raise ValueError(f"{len(images)} images, {len(labels)} labels and {len(preds)} "
                         "predictions must match")
    if confidences is not None and len(confidences) != len(preds):
        raise ValueError(f"{len(confidences)} confidences for {len(preds)} predictions")
    cell_height = max(8, int(cell_height))
    cols = max(1, int(cols))
    font_px = max(10, int(round(cell_height * 0.3)))
    font = _load_font(font_px)
    cjk_font = _load_cjk_font(font_px) if any(
        is_cjk(c) for t in (*labels, *preds) for c in t) else None
    line_h = font_px + 4
    pad = 4
    if len(images) == 0:
        return np.full((cell_height + 2 * line_h + 2 * pad, 4 * cell_height, 3), 255, np.uint8)

    texts = []
    for i, (label, pred) in enumerate(zip(labels, preds)):
        conf = ""
        if confidences is not None and not math.isnan(float(confidences[i])):
            conf = f" ({float(confidences[i]):.2f})"
        texts.append((f"GT: {label}", f"PR: {pred}{conf}", conf))
    crops = [_to_rgb(img) for img in images]
    scaled_widths = [max(1, int(round(c.shape[1] * cell_height / max(1, c.shape[0]))))
                     for c in crops]
    text_width = max(int(math.ceil(font.getlength(t))) for pair in texts for t in pair[:2])
    # Very wide crops (whole plates with margins, long banners) are capped so one image does not
    # stretch every cell of the grid.
    cell_w = max(text_width, min(max(scaled_widths), 10 * cell_height)) + 2 * pad
    cell_h = cell_height + 2 * line_h + 2 * pad
    rows = int(math.ceil(len(crops) / cols))
    grid_cols = min(cols, len(crops))
    canvas = Image.new("RGB", (grid_cols * cell_w + (grid_cols + 1) * pad,
                               rows * cell_h + (rows + 1) * pad), _WHITE)
    draw = ImageDraw.Draw(canvas)
    for i, crop in enumerate(crops):
        r, c = divmod(i, cols)
        x0 = pad + c * (cell_w + pad)
        y0 = pad + r * (cell_h + pad)
        w = min(scaled_widths[i], cell_w - 2 * pad)
        h = cell_height if w == scaled_widths[i] else max(1, int(round(
            crop.shape[0] * w / max(1, crop.shape[1]))))
        resized = cv2.resize(crop, (w, h), interpolation=cv2.INTER_AREA if h < crop.shape[0]
                             else cv2.INTER_LINEAR)
        canvas.paste(Image.fromarray(resized), (x0 + pad, y0 + pad + (cell_height - h) // 2))
        # Thin frame so light crops are distinguishable from the white background.
        draw.rectangle([x0, y0, x0 + cell_w - 1, y0 + cell_h - 1], outline=(200, 200, 200))
        label, pred = labels[i], preds[i]
        gt_bad, pr_bad = _highlight_flags(label, pred)
        ty = y0 + pad + cell_height + 2
        _draw_line(draw, font, x0 + pad, ty, "GT: ", label, gt_bad, cjk_font=cjk_font)
        _draw_line(draw, font, x0 + pad, ty + line_h, "PR: ", pred, pr_bad, texts[i][2],
                   cjk_font=cjk_font)
    return np.asarray(canvas, dtype=np.uint8).copy()


def save_png(path: Union[str, Path], image_rgb: np.ndarray) -> Path:
    """Write an HWC RGB (or HW grey) uint8 array as PNG; creates parent directories."""
    import cv2

    p = Path(path)
    img = np.asarray(image_rgb)
    if img.dtype != np.uint8 or img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] not in
                                                           (1, 3, 4)):
        raise ValueError(f"expected an HW or HWC (C=1/3/4) uint8 image, got {img.dtype} "
                         f"{img.shape}")
    if img.ndim == 3 and img.shape[2] == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    elif img.ndim == 3 and img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_RGBA2BGRA)
    ok, buf = cv2.imencode(".png", img)
    if not ok:
        raise VisualsError(f"{p}: PNG encoding failed")
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(f".{p.name}.tmp-{os.getpid()}")
        tmp.write_bytes(buf.tobytes())
        # Rename into place so a viewer polling the file never sees half a PNG.
        os.replace(tmp, p)
    except OSError as exc:
        raise VisualsError(f"{p}: cannot write PNG ({' '.join(str(exc).split())})") from None
    return p

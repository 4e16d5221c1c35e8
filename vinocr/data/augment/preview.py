"""A PNG grid showing what an augmentation pipeline does to a few images.

Layout: one row per input image; column 0 is the original, columns 1..n_aug augmented versions.
Every cell is resized to ``cell_height`` (keeping aspect ratio) and padded on the right to the
widest cell, and cells are separated by ``gap``-pixel lines, so the grid is
``rows * cell_height + (rows + 1) * gap`` high and ``cols * cell_width + (cols + 1) * gap`` wide.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import List, Sequence, Tuple, Union

import cv2
import numpy as np

from .pipeline import AugmentPipeline, as_bgr, write_png

logger = logging.getLogger(__name__)

#: Colour of gaps and padding: mid-grey-blue so it stands apart from black/white plate borders.
_BACKGROUND: Tuple[int, int, int] = (96, 72, 48)


def _fit_height(img: np.ndarray, cell_height: int) -> np.ndarray:
    h, w = img.shape[:2]
    new_w = max(1, int(round(w * cell_height / h)))
    # Nearest for upscaling so tiny plates show their real pixels instead of a smooth blur.
    interp = cv2.INTER_NEAREST if cell_height > h else cv2.INTER_AREA
    return cv2.resize(img, (new_w, cell_height), interpolation=interp)


def preview_grid(images: Sequence[np.ndarray], pipeline: AugmentPipeline,
                 rng: np.random.Generator, n_aug: int = 7, cell_height: int = 48,
                 gap: int = 2) -> np.ndarray:
    """Grid image of originals and ``n_aug`` augmented versions each (see module docstring).

    Augmented cells always apply the pipeline's transforms (its ``p`` is ignored) so the preview
    shows what augmentation looks like rather than mostly untouched copies.
    """
    if not images:
        raise ValueError("preview_grid needs at least one image")
    if n_aug < 0 or cell_height < 1 or gap < 0:
        raise ValueError(f"bad preview size: n_aug={n_aug}, cell_height={cell_height}, gap={gap}")
    rows: List[List[np.ndarray]] = []
    for img in images:
        img = as_bgr(img)
        row = [img] + [pipeline.augment(img, rng, force=True) for _ in range(n_aug)]
        rows.append([_fit_height(c, cell_height) for c in row])
    cell_w = max(c.shape[1] for row in rows for c in row)
    n_rows, n_cols = len(rows), n_aug + 1
    grid = np.empty((n_rows * cell_height + (n_rows + 1) * gap,
                     n_cols * cell_w + (n_cols + 1) * gap, 3), dtype=np.uint8)
    grid[:] = _BACKGROUND
    for r, row in enumerate(rows):
        y = gap + r * (cell_height + gap)
        for c, cell in enumerate(row):
            x = gap + c * (cell_w + gap)
            grid[y: y + cell_height, x: x + cell.shape[1]] = cell
    return grid


def save_preview(path: Union[str, Path], grid: np.ndarray) -> Path:
    """Write ``grid`` as a PNG (works for non-ASCII paths); returns the path."""
    out = write_png(path, grid)
    logger.info("wrote augmentation preview %s (%dx%d)", out, grid.shape[1], grid.shape[0])
    return out

"""VisualDL images for SR runs: LR | SR | HR side by side with the text read from SR."""
from __future__ import annotations

from typing import Optional, Sequence

import cv2
import numpy as np

from vinocr.engine.visuals import error_grid


def comparison_grid(lr: np.ndarray, sr: np.ndarray, hr: np.ndarray, texts: Sequence[str],
                    preds: Sequence[str], confidences: Optional[Sequence[float]] = None,
                    cell_height: int = 64) -> np.ndarray:
    """One row per plate: the LR frame (nearest-neighbour enlarged, so its pixels stay visible),
    the SR output and the HR frame, captioned ``GT`` / ``PR`` (the recogniser on SR) with
    misread characters in red. Returns HWC uint8 RGB."""
    h, w = hr.shape[1:3]
    cells = []
    for a, b, c in zip(lr, sr, hr):
        up = cv2.resize(a, (w, h), interpolation=cv2.INTER_NEAREST)
        gap = np.full((h, 2, 3), 255, np.uint8)
        cells.append(np.concatenate([up, gap, b, gap, c], axis=1))
    return error_grid(cells, list(texts), list(preds), confidences, cols=1,
                      cell_height=cell_height)

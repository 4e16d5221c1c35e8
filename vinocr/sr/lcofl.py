"""LCOFL — the Layout- and Character-Oriented Focal Loss — with gradients in every term.

Terms (each returned separately so it can be logged and tested):

- ``char``: a focal, character-weighted cross-entropy of the recogniser's output on the SR image.
  Targets come from a forced CTC alignment of the ground truth (:mod:`vinocr.sr.alignment`), so
  every output frame has a class to read (a label character or blank). Chosen over a fixed-slot
  auxiliary head because it needs no extra parameters and uses the very recogniser deployed after
  SR. Frames of a character ``c`` weigh ``w[c]``; blank frames weigh 1.
- ``layout``: the probability mass on the wrong character group at each aligned frame (digits at
  a letter position of the plate layout, letters at a digit position), times ``beta``. Unlike the
  released code's Python-number penalty, it is a tensor of the recogniser's probabilities.
- ``ssim``: ``1 - SSIM(SR, HR)``; ``l1``: mean absolute error.

The character weights start at 1 and are recomputed after each validation pass from the
recogniser's confusions on SR images (:meth:`LCOFL.update_char_weights`): a true character gains
``alpha`` for every other character it is read as at a row-normalised rate above ``threshold``.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import paddle
import paddle.nn.functional as F

from vinocr.errors import ConfigError
from vinocr.sr.alignment import batch_align
from vinocr.sr.ssim import ssim

logger = logging.getLogger(__name__)

#: Layout names of the LRLPR-26 annotations -> pattern (L letter, N digit).
LAYOUT_PATTERNS: Dict[str, str] = {"brazilian": "LLLNNNN", "mercosur": "LLLNLNN"}


def layout_pattern(layout: Optional[str]) -> Optional[str]:
    """``Brazilian``/``Mercosur`` (any case) or an explicit ``L``/``N`` pattern; None if unknown."""
    if not layout:
        return None
    key = layout.strip().lower()
    if key in LAYOUT_PATTERNS:
        return LAYOUT_PATTERNS[key]
    up = layout.strip().upper()
    return up if up and set(up) <= {"L", "N"} else None


def to_ocr_input(images01: paddle.Tensor, image_shape: Sequence[int],
                 aspect: float = 3.0) -> paddle.Tensor:
    """SR output (BGR in [0, 1], [N, 3, h, w]) -> the recogniser's input, differentiably.

    Mirrors :func:`vinocr.data.preprocess.resize_norm` for a plate of aspect ``aspect``: resize to
    the model height keeping the aspect (squeezed if wider than the model width), scale to
    [-1, 1], right-pad with 0 (mid-grey) to the model width.
    """
    _, height, width = (int(v) for v in image_shape)
    resized_w = min(width, int(np.ceil(height * aspect)))
    x = F.interpolate(images01, size=[height, resized_w], mode="bilinear", align_corners=False)
    x = (x - 0.5) / 0.5
    if resized_w < width:
        x = F.pad(x, [0, width - resized_w, 0, 0], value=0.0)
    return x


@dataclass
class LossWeights:
    """Multipliers of the LCOFL terms (0 switches a term off) and its adaptive-weight settings."""

    l1: float = 1.0
    ssim: float = 1.0          # lambda
    char: float = 1.0
    layout: float = 1.0        # multiplies the beta-scaled layout penalty
    beta: float = 0.5
    focal_gamma: float = 2.0
    alpha: float = 0.5
    threshold: float = 0.25
    max_char_weight: float = 5.0
    accumulate: bool = False

    @classmethod
    def from_config(cls, cfg: Mapping[str, object]) -> "LossWeights":
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(cfg) - known)
        if unknown:
            raise ConfigError(f"Loss: unknown key(s) {', '.join(unknown)} "
                              f"(valid: {', '.join(sorted(known))})")
        return cls(**dict(cfg))


class LCOFL:
    """The loss, bound to a recogniser's class list (index 0 = CTC blank)."""

    def __init__(self, classes: Sequence[str], weights: Optional[LossWeights] = None) -> None:
        self.classes = list(classes)
        self.weights = weights or LossWeights()
        n = len(self.classes)
        self.char_weights = np.ones(n, dtype=np.float32)
        self._class_of = {c: i for i, c in enumerate(self.classes) if i > 0 and c}
        letters = np.zeros(n, dtype=np.float32)
        digits = np.zeros(n, dtype=np.float32)
        for i, c in enumerate(self.classes):
            if i == 0 or len(c) != 1:
                continue
            if c.isdigit():
                digits[i] = 1.0
            elif c.isalpha():
                letters[i] = 1.0
        self._letters, self._digits = letters, digits

    # ---- labels -------------------------------------------------------------------------

    def encode(self, text: str) -> List[int]:
        """Class ids of ``text``; characters outside the class list are dropped with a warning."""
        ids = [self._class_of.get(c) for c in text]
        if any(i is None for i in ids):
            logger.warning("label %r has characters outside the recogniser's classes", text)
        return [i for i in ids if i is not None]

    # ---- the loss -----------------------------------------------------------------------

    def image_terms(self, sr: paddle.Tensor, hr: paddle.Tensor) -> Dict[str, paddle.Tensor]:
        """Pixel terms: ``l1`` and ``ssim`` (= 1 - SSIM)."""
        return {"l1": paddle.abs(sr - hr).mean(), "ssim": 1.0 - ssim(sr, hr)}

    def text_terms(self, logits: paddle.Tensor, texts: Sequence[str],
                   layouts: Sequence[Optional[str]]) -> Dict[str, paddle.Tensor]:
        """``char`` and ``layout`` from recogniser logits [N, T, C] of the SR images."""
        w = self.weights
        logp = F.log_softmax(logits, axis=-1)
        labels = [self.encode(t) for t in texts]
        aligns = batch_align(logp.detach().numpy(), labels)
        n, t_len, c_len = logp.shape
        targets = np.zeros((n, t_len), dtype=np.int64)
        frame_w = np.zeros((n, t_len), dtype=np.float32)
        wrong = np.zeros((n, t_len, c_len), dtype=np.float32)
        aligned_chars = 0
        for i, al in enumerate(aligns):
            if al is None or not labels[i]:
                # T too short for the label, or no label (unlabelled / unencodable text): an
                # empty target would teach "blank everywhere", so the sample adds nothing.
                continue
            targets[i] = al.targets
            frame_w[i] = np.where(al.positions >= 0, self.char_weights[al.targets], 1.0)
            pattern = layout_pattern(layouts[i]) if i < len(layouts) else None
            if pattern is None or len(pattern) != len(labels[i]):
                continue
            for t, pos in enumerate(al.positions):
                if pos >= 0:
                    wrong[i, t] = self._digits if pattern[pos] == "L" else self._letters
                    aligned_chars += 1
        tgt = paddle.to_tensor(targets)
        fw = paddle.to_tensor(frame_w)
        nll = -paddle.take_along_axis(logp, tgt.unsqueeze(-1), axis=-1).squeeze(-1)
        if w.focal_gamma > 0:
            p = paddle.exp(-nll)
            nll = nll * paddle.pow(1.0 - p + 1e-6, w.focal_gamma)
        char = (nll * fw).sum() / max(float(frame_w.sum()), 1.0)
        probs = paddle.exp(logp)
        layout = w.beta * (probs * paddle.to_tensor(wrong)).sum() / max(aligned_chars, 1)
        return {"char": char, "layout": layout}

    def total(self, terms: Mapping[str, paddle.Tensor]) -> paddle.Tensor:
        """Weighted sum of the terms present (a stage may compute only some)."""
        w = self.weights
        scale = {"l1": w.l1, "ssim": w.ssim, "char": w.char, "layout": w.layout}
        out = None
        for name, value in terms.items():
            if scale.get(name, 0.0) == 0.0:
                continue
            part = value * scale[name]
            out = part if out is None else out + part
        if out is None:
            raise ConfigError("Loss: every active term has weight 0; nothing to train")
        return out

    # ---- confusion-adaptive character weights ---------------------------------------------

    def update_char_weights(self, confusion: Mapping[Tuple[str, str], int]) -> Dict[str, float]:
        """Recompute the character weights from a validation confusion ``{(true, pred): n}``.

        Returns the characters whose weight is above 1, for logging.
        """
        w = self.weights
        rows: Dict[str, int] = {}
        for (true, _), count in confusion.items():
            if true:
                rows[true] = rows.get(true, 0) + count
        base = self.char_weights.copy() if w.accumulate else np.ones_like(self.char_weights)
        for (true, pred), count in confusion.items():
            if not true or not pred or true == pred or true not in self._class_of:
                continue
            if rows[true] and count / rows[true] > w.threshold:
                base[self._class_of[true]] += w.alpha
        self.char_weights = np.minimum(base, w.max_char_weight).astype(np.float32)
        return {self.classes[i]: float(v) for i, v in enumerate(self.char_weights) if v > 1.0}

    def state_dict(self) -> Dict[str, List[float]]:
        return {"char_weights": self.char_weights.tolist()}

    def set_state_dict(self, state: Mapping[str, Sequence[float]]) -> None:
        if "char_weights" in state:
            arr = np.asarray(state["char_weights"], dtype=np.float32)
            if arr.shape == self.char_weights.shape:
                self.char_weights = arr

"""Forced CTC alignment: which output frame reads which ground-truth character.

LCOFL needs a per-character probability from a CTC recogniser, whose output has no fixed character
slots. We take the best path that spells exactly the ground truth (Viterbi over the usual extended
label sequence ``blank, c1, blank, c2, ..., cL, blank``) on the detached log-probabilities; each
frame then has a target class (a character of the label, or blank) and the loss is a weighted
cross-entropy at those targets. This is "Viterbi training" of CTC: the gradient reaches every
frame through the recogniser, unlike the released LCOFL code whose loss was computed on one-hot
predicted strings.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np

NEG_INF = -1e30


@dataclass
class Alignment:
    """``targets[t]``: the class to read at frame t (0 = blank); ``positions[t]``: the index of
    the ground-truth character that frame t reads, or -1 for blank frames."""

    targets: np.ndarray
    positions: np.ndarray


def _extended(label: Sequence[int], blank: int) -> Tuple[np.ndarray, np.ndarray]:
    """The CTC state sequence ``blank, c1, blank, ..., cL, blank`` and, per state, whether it may
    be entered from two states back (skipping a blank: only between different characters)."""
    ext = [blank]
    for c in label:
        ext += [c, blank]
    can_skip = np.zeros(len(ext), dtype=bool)
    for s in range(2, len(ext)):
        can_skip[s] = ext[s] != blank and ext[s] != ext[s - 2]
    return np.asarray(ext), can_skip


def forced_align(log_probs: np.ndarray, label: Sequence[int], blank: int = 0) -> Optional[Alignment]:
    """Best CTC path through ``log_probs`` [T, C] that spells ``label`` (class ids, no blanks).

    Returns None when no path exists (T too short for the label and its repeated characters).
    """
    lp = np.asarray(log_probs, dtype=np.float64)
    t_len = lp.shape[0]
    lab = [int(c) for c in label]
    if not lab:
        return Alignment(np.full(t_len, blank, np.int64), np.full(t_len, -1, np.int64))
    ext_arr, can_skip = _extended(lab, blank)
    s_len = len(ext_arr)
    score = np.full(s_len, NEG_INF)
    score[0] = lp[0, ext_arr[0]]
    score[1] = lp[0, ext_arr[1]]
    back = np.zeros((t_len, s_len), dtype=np.int8)  # 0 stay, 1 from s-1, 2 from s-2
    for t in range(1, t_len):
        stay = score
        step = np.concatenate([[NEG_INF], score[:-1]])
        skip = np.where(can_skip, np.concatenate([[NEG_INF, NEG_INF], score[:-2]]), NEG_INF)
        stacked = np.stack([stay, step, skip])
        choice = stacked.argmax(axis=0)
        score = stacked[choice, np.arange(s_len)] + lp[t, ext_arr]
        back[t] = choice
    ends = [s_len - 1, s_len - 2]
    end = max(ends, key=lambda s: score[s])
    if score[end] <= NEG_INF / 2:
        return None
    states = np.empty(t_len, dtype=np.int64)
    s = end
    for t in range(t_len - 1, -1, -1):
        states[t] = s
        s -= int(back[t, s])
    targets = ext_arr[states]
    positions = np.where(states % 2 == 1, (states - 1) // 2, -1)
    return Alignment(targets.astype(np.int64), positions.astype(np.int64))


def batch_align(log_probs: np.ndarray, labels: Sequence[Sequence[int]], blank: int = 0
                ) -> List[Optional[Alignment]]:
    """:func:`forced_align` for each sample of ``log_probs`` [N, T, C]."""
    return [forced_align(lp, lab, blank) for lp, lab in zip(log_probs, labels)]


def ctc_log_likelihood(log_probs: np.ndarray, label: Sequence[int], blank: int = 0) -> float:
    """``log P(label | frame)`` under CTC: the forward algorithm over every alignment.

    Unlike a per-time-step comparison, this is independent of *where* each frame's output puts
    the label's characters, so it can compare frames whose CTC spikes are offset in time.
    Returns ``-inf`` when no alignment fits.
    """
    lp = np.asarray(log_probs, dtype=np.float64)
    t_len = lp.shape[0]
    ext_arr, can_skip = _extended([int(c) for c in label], blank)
    s_len = len(ext_arr)
    alpha = np.full(s_len, -np.inf)
    alpha[0] = lp[0, ext_arr[0]]
    if s_len > 1:
        alpha[1] = lp[0, ext_arr[1]]
    for t in range(1, t_len):
        prev1 = np.full(s_len, -np.inf)
        prev1[1:] = alpha[:-1]
        prev2 = np.full(s_len, -np.inf)
        prev2[2:] = alpha[:-2]
        prev2[~can_skip] = -np.inf
        alpha = np.logaddexp(np.logaddexp(alpha, prev1), prev2) + lp[t, ext_arr]
    ends = alpha[-1] if s_len == 1 else np.logaddexp(alpha[-1], alpha[-2])
    return float(ends)

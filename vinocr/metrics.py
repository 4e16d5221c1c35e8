"""Recognition metrics: sequence accuracy, character accuracy (1 - normalised edit distance), CER,
and how far confidences can be trusted (expected calibration error, accuracy at coverage)."""
from __future__ import annotations

import math
from typing import Dict, Optional, Sequence

#: Equal-width confidence bins over [0, 1] for :func:`expected_calibration_error`.
ECE_BINS = 15


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (insertions, deletions, substitutions all cost 1)."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        current = [i]
        for j, cb in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def normalized_edit_distance(pred: str, truth: str) -> float:
    """Edit distance over the longer length (0 = equal, 1 = nothing in common)."""
    longest = max(len(pred), len(truth))
    return 0.0 if longest == 0 else edit_distance(pred, truth) / longest


def text_metrics(preds: Sequence[str], truths: Sequence[str]) -> Dict[str, float]:
    """``seq_acc`` (exact match), ``char_acc`` (1 - mean NED), ``ned`` and ``cer`` (edits per
    ground-truth character, over the whole set)."""
    if len(preds) != len(truths):
        raise ValueError(f"{len(preds)} predictions for {len(truths)} labels")
    n = max(1, len(truths))
    neds = [normalized_edit_distance(p, t) for p, t in zip(preds, truths)]
    edits = sum(edit_distance(p, t) for p, t in zip(preds, truths))
    chars = max(1, sum(len(t) for t in truths))
    return {"seq_acc": sum(p == t for p, t in zip(preds, truths)) / n,
            "char_acc": 1.0 - sum(neds) / n, "ned": sum(neds) / n, "cer": edits / chars}


def _check_lengths(confidences: Sequence[float], correct: Sequence[bool]) -> None:
    if len(confidences) != len(correct):
        raise ValueError(f"{len(confidences)} confidences for {len(correct)} results")


def expected_calibration_error(confidences: Sequence[float], correct: Sequence[bool],
                               n_bins: int = ECE_BINS) -> Optional[float]:
    """Expected calibration error: ``sum over bins |acc(bin) - conf(bin)| * n_bin / n``.

    The bins split [0, 1] into ``n_bins`` equal widths, each holding ``[lower, upper)`` except
    the last, which includes 1.0 (values outside [0, 1] go to the end bins). ``acc(bin)`` is the
    fraction of correct results in the bin and ``conf(bin)`` their mean confidence. 0 means the
    confidences are calibrated (reads at 0.8 are right 80% of the time); the maximum is 1.
    None for no results.
    """
    _check_lengths(confidences, correct)
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    n = len(confidences)
    if n == 0:
        return None
    conf_sum = [0.0] * n_bins
    hits = [0] * n_bins
    count = [0] * n_bins
    for c, ok in zip(confidences, correct):
        b = min(max(int(float(c) * n_bins), 0), n_bins - 1)
        conf_sum[b] += float(c)
        hits[b] += bool(ok)
        count[b] += 1
    return sum(abs(hits[b] - conf_sum[b]) for b in range(n_bins) if count[b]) / n


def accuracy_at_coverage(confidences: Sequence[float], correct: Sequence[bool],
                         coverage: float) -> Optional[float]:
    """Accuracy of the ``ceil(coverage * n)`` most confident results (ties kept in their original
    order): what the reads accepted automatically would score if the least confident
    ``1 - coverage`` went to human review. None for no results."""
    _check_lengths(confidences, correct)
    if not 0.0 < coverage <= 1.0:
        raise ValueError(f"coverage must be in (0, 1], got {coverage}")
    n = len(confidences)
    if n == 0:
        return None
    # The epsilon keeps float noise (0.07 * 100 = 7.000000000000001) from keeping one more.
    keep = min(n, max(1, math.ceil(coverage * n - 1e-9)))
    order = sorted(range(n), key=lambda i: -float(confidences[i]))  # stable: ties by index
    return sum(bool(correct[i]) for i in order[:keep]) / keep

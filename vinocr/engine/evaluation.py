"""Evaluation of recognised strings against labels: accuracy, per-position accuracy for fixed-length
codes, character confusions from an edit-distance alignment, and confidence calibration hints.

Everything here works on plain strings, so the same numbers come out of training-time evaluation,
``vinocr-eval`` and notebooks, whatever model produced the predictions.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

from vinocr.metrics import (accuracy_at_coverage, expected_calibration_error,
                             normalized_edit_distance, text_metrics)
from vinocr.vin import validate_vin

#: A confusion pair (true character, predicted character); ``''`` marks a deletion (true, '')
#: or an insertion ('', pred).
Pair = Tuple[str, str]


def align(label: str, pred: str) -> List[Pair]:
    """Minimum-edit alignment of ``label`` and ``pred`` as a list of (true, predicted) pairs.

    Matches are ``(c, c)``, substitutions ``(t, p)``, deletions (a label character the prediction
    lacks) ``(t, '')`` and insertions ``('', p)``. Among equally short alignments, the backtrace
    prefers match/substitution, then deletion, so results are deterministic.
    """
    n, m = len(label), len(pred)
    # Full table (not the two-row version in vinocr.metrics) because the backtrace needs it; codes
    # are short (VIN 17, plates < 12), so n*m stays tiny.
    dist = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(n + 1):
        dist[i][0] = i
    for j in range(m + 1):
        dist[0][j] = j
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            dist[i][j] = min(dist[i - 1][j - 1] + (label[i - 1] != pred[j - 1]),
                             dist[i - 1][j] + 1, dist[i][j - 1] + 1)
    pairs: List[Pair] = []
    i, j = n, m
    while i > 0 or j > 0:
        if i > 0 and j > 0 and dist[i][j] == dist[i - 1][j - 1] + (label[i - 1] != pred[j - 1]):
            pairs.append((label[i - 1], pred[j - 1]))
            i, j = i - 1, j - 1
        elif i > 0 and dist[i][j] == dist[i - 1][j] + 1:
            pairs.append((label[i - 1], ""))
            i -= 1
        else:
            pairs.append(("", pred[j - 1]))
            j -= 1
    pairs.reverse()
    return pairs


def confusion_counts(preds: Sequence[str], labels: Sequence[str]) -> Dict[Pair, int]:
    """Counts of aligned (true, predicted) character pairs over a dataset, matches included."""
    counts: Counter = Counter()
    for pred, label in zip(preds, labels):
        counts.update(align(label, pred))
    return dict(counts)


def per_position_accuracy(preds: Sequence[str], labels: Sequence[str]) -> Optional[List[float]]:
    """Per-position accuracy when every label has the same length L, else None.

    Position i counts as correct when ``pred[i] == label[i]``; predictions are padded (a missing
    character is wrong) or truncated to L. No alignment is done on purpose: for a fixed-length
    code a dropped character shifts the rest, and that is exactly how such a prediction fails.
    """
    if not labels:
        return None
    length = len(labels[0])
    if length == 0 or any(len(label) != length for label in labels):
        return None
    hits = [0] * length
    for pred, label in zip(preds, labels):
        for i in range(length):
            if i < len(pred) and pred[i] == label[i]:
                hits[i] += 1
    return [h / len(labels) for h in hits]


def _mean(values: Sequence[float]) -> Optional[float]:
    return sum(values) / len(values) if values else None


@dataclass
class EvalResult:
    """Metrics of one evaluation; see :func:`evaluate_texts`."""

    n: int
    seq_acc: float
    char_acc: float
    ned: float
    cer: float
    per_position_acc: Optional[List[float]] = None
    check_digit_valid_rate: Optional[float] = None
    confusion: Dict[Pair, int] = field(default_factory=dict)
    confidence_gap: Optional[float] = None
    mean_confidence: Optional[float] = None
    ece: Optional[float] = None
    acc_at_90_coverage: Optional[float] = None
    acc_at_95_coverage: Optional[float] = None
    worst: List[int] = field(default_factory=list)

    def top_confusions(self, k: int = 10) -> List[Tuple[Pair, int]]:
        """The ``k`` most frequent errors (pairs whose characters differ), most frequent first;
        ties are ordered by the pair so the list is stable."""
        errors = [(pair, count) for pair, count in self.confusion.items() if pair[0] != pair[1]]
        errors.sort(key=lambda item: (-item[1], item[0]))
        return errors[:k]

    @property
    def n_errors(self) -> int:
        """Number of wrong predictions."""
        return len(self.worst)

    def to_dict(self, top_k: int = 20) -> Dict[str, Any]:
        """JSON-able dict. The confusion becomes a list of ``[true, pred, count]`` (JSON objects
        cannot have pair keys), sorted by count."""
        confusion = sorted(self.confusion.items(), key=lambda item: (-item[1], item[0]))
        return {
            "n": self.n, "seq_acc": self.seq_acc, "char_acc": self.char_acc, "ned": self.ned,
            "cer": self.cer, "per_position_acc": self.per_position_acc,
            "check_digit_valid_rate": self.check_digit_valid_rate,
            "confidence_gap": self.confidence_gap, "mean_confidence": self.mean_confidence,
            "ece": self.ece, "acc_at_90_coverage": self.acc_at_90_coverage,
            "acc_at_95_coverage": self.acc_at_95_coverage,
            "n_errors": self.n_errors, "worst": list(self.worst),
            "top_confusions": [[t, p, c] for (t, p), c in self.top_confusions(top_k)],
            "confusion": [[t, p, c] for (t, p), c in confusion],
        }

    def summary_line(self) -> str:
        """One log line with the headline numbers."""
        parts = [f"n={self.n}", f"seq_acc={self.seq_acc:.4f}", f"char_acc={self.char_acc:.4f}",
                 f"cer={self.cer:.4f}"]
        if self.check_digit_valid_rate is not None:
            parts.append(f"vin_valid={self.check_digit_valid_rate:.4f}")
        positions = self.per_position_acc
        if positions:
            # 1-based, as VIN positions are usually quoted (position 9 = check digit).
            weakest = min(range(len(positions)), key=lambda i: positions[i])
            parts.append(f"weakest_pos={weakest + 1}:{positions[weakest]:.3f}")
        if self.mean_confidence is not None:
            parts.append(f"mean_conf={self.mean_confidence:.3f}")
        if self.confidence_gap is not None:
            parts.append(f"conf_gap={self.confidence_gap:+.3f}")
        if self.ece is not None:
            parts.append(f"ece={self.ece:.3f}")
        top = self.top_confusions(3)
        if top:
            shown = ", ".join(f"{t or '∅'}→{p or '∅'}×{c}" for (t, p), c in top)
            parts.append(f"top_confusions=[{shown}]")
        return " ".join(parts)


def evaluate_texts(preds: Sequence[str], labels: Sequence[str],
                   confidences: Optional[Sequence[float]] = None, vin: bool = False) -> EvalResult:
    """Evaluate predicted strings against labels.

    Args:
        preds, labels: equally long sequences of strings.
        confidences: optional per-prediction confidence in [0, 1] (NaN entries are ignored in the
            confidence statistics).
        vin: also report the fraction of predictions that are valid VINs
            (:func:`vinocr.vin.validate_vin`, region-aware check digit).

    With confidences, ``ece`` is the expected calibration error of the confidences against exact
    match (:func:`vinocr.metrics.expected_calibration_error`, 15 equal-width bins) and
    ``acc_at_90_coverage`` / ``acc_at_95_coverage`` the accuracy of the 90% / 95% most confident
    reads (:func:`vinocr.metrics.accuracy_at_coverage`), all over the non-NaN confidences.

    ``worst`` lists the wrong predictions' indices, most confident first (confident mistakes are
    the dangerous ones); without confidences, most wrong (highest normalised edit distance) first.
    """
    if len(preds) != len(labels):
        raise ValueError(f"{len(preds)} predictions for {len(labels)} labels")
    if confidences is not None and len(confidences) != len(preds):
        raise ValueError(f"{len(confidences)} confidences for {len(preds)} predictions")
    preds, labels = list(preds), list(labels)
    n = len(labels)
    if n == 0:
        # text_metrics would report char_acc 1.0 for nothing; zeros make an empty set stand out.
        return EvalResult(n=0, seq_acc=0.0, char_acc=0.0, ned=0.0, cer=0.0)
    metrics = text_metrics(preds, labels)
    correct = [p == t for p, t in zip(preds, labels)]
    wrong = [i for i, ok in enumerate(correct) if not ok]

    mean_conf = gap = ece = acc90 = acc95 = None
    if confidences is not None:
        conf = [float(c) for c in confidences]
        valid = [i for i, c in enumerate(conf) if not math.isnan(c)]
        mean_conf = _mean([conf[i] for i in valid])
        on_right = _mean([conf[i] for i in valid if correct[i]])
        on_wrong = _mean([conf[i] for i in valid if not correct[i]])
        if on_right is not None and on_wrong is not None:
            gap = on_right - on_wrong
        valid_conf, valid_ok = [conf[i] for i in valid], [correct[i] for i in valid]
        ece = expected_calibration_error(valid_conf, valid_ok)
        acc90 = accuracy_at_coverage(valid_conf, valid_ok, 0.90)
        acc95 = accuracy_at_coverage(valid_conf, valid_ok, 0.95)
        # NaN sorts as least confident, so it never hides a confident mistake.
        wrong.sort(key=lambda i: (-(conf[i] if not math.isnan(conf[i]) else -math.inf), i))
    else:
        wrong.sort(key=lambda i: (-normalized_edit_distance(preds[i], labels[i]), i))

    vin_rate = None
    if vin:
        vin_rate = sum(validate_vin(p).valid for p in preds) / n
    return EvalResult(n=n, seq_acc=metrics["seq_acc"], char_acc=metrics["char_acc"],
                      ned=metrics["ned"], cer=metrics["cer"],
                      per_position_acc=per_position_accuracy(preds, labels),
                      check_digit_valid_rate=vin_rate,
                      confusion=confusion_counts(preds, labels), confidence_gap=gap,
                      mean_confidence=mean_conf, ece=ece, acc_at_90_coverage=acc90,
                      acc_at_95_coverage=acc95, worst=wrong)


@dataclass(frozen=True)
class PairedComparison:
    """Two recognisers read the same samples: where they differ, and whether that is chance.

    ``gained``: samples B reads correctly and A does not; ``lost``: the reverse. ``p_value``:
    McNemar's exact test, two-sided: how likely a split at least this uneven is if A and B were
    equally good (only the samples they disagree on carry information; accuracy differences
    between two models on the same set are far more certain than their separate error bars
    suggest).
    """

    n: int
    gained: int
    lost: int
    p_value: float

    @property
    def split(self) -> str:
        """``+gained/-lost``."""
        return f"+{self.gained}/-{self.lost}"

    def text(self) -> str:
        return f"{self.split} (p={self.p_value:.2g})"


def mcnemar_exact_p(gained: int, lost: int) -> float:
    """Two-sided exact McNemar p-value: the binomial(gained + lost, 1/2) probability of a split at
    least as uneven as ``gained`` vs ``lost``."""
    if gained < 0 or lost < 0:
        raise ValueError(f"counts must be >= 0, got {gained}, {lost}")
    n, k = gained + lost, min(gained, lost)
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def paired_comparison(preds_a: Sequence[str], preds_b: Sequence[str],
                      labels: Sequence[str]) -> PairedComparison:
    """Compare recogniser B's exact-match results with A's on the same labelled samples."""
    if not len(preds_a) == len(preds_b) == len(labels):
        raise ValueError(f"{len(preds_a)} and {len(preds_b)} predictions for {len(labels)} labels")
    a_ok = [p == t for p, t in zip(preds_a, labels)]
    b_ok = [p == t for p, t in zip(preds_b, labels)]
    gained = sum(b and not a for a, b in zip(a_ok, b_ok))
    lost = sum(a and not b for a, b in zip(a_ok, b_ok))
    return PairedComparison(len(labels), gained, lost, mcnemar_exact_p(gained, lost))

"""Recognition metrics: sequence accuracy, character accuracy (1 - normalised edit distance), CER."""
from __future__ import annotations

from typing import Dict, Sequence


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

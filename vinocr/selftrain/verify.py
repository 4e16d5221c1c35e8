"""Verifiers for pseudo-labels: a model's read becomes a training label only when every check that
applies to it holds.

The checks, in the order a read is rejected by them:

1. ``empty``: the decoder found no text (a constrained decoder with no valid sequence).
2. ``grammar``: the text breaks the decode grammar (VIN structure, the configured plate formats).
   Greedy and beam reads can break it; constrained reads cannot, and then the next checks carry
   the weight.
3. ``check_digit`` (VIN charsets): the ISO 3779 check digit (position 9) does not match. ``auto``
   applies it where the region makes it mandatory (WMI 1-5, North America), ``always`` to every
   VIN, ``never`` skips it. A read with one wrong character passes a check digit about one time in
   eleven, so this is the verifier that catches confident misreads (8/B, 5/S, 0/D).
4. ``forced`` (constrained decoders): the unconstrained best path of the same probabilities reads
   something else, i.e. the grammar had to change the model's own read. A check digit is passed by
   chance one time in eleven, and a beam search over 17 positions finds such a chance string
   easily; a read the model makes without being forced is far more often right (measured in
   docs/self-training.md).
5. ``agreement`` (tracks): fewer than ``min_agreement`` frames read the same text.
6. ``confidence``: the read's score is below the threshold chosen on a labelled validation set
   (:func:`choose_threshold`) for a target precision.
7. ``disagreement`` (a committee of models, :func:`committee_verdicts`): a model accepted the read,
   but another model's read of the same item passes checks 1-5 with another text.
8. ``votes`` (a committee): fewer than ``min_votes`` models read the accepted text with a read that
   passes checks 1-5 (their confidence may be below their own threshold).

The score is the *minimum* per-character confidence by default: one doubtful character makes a
whole VIN wrong, and the mean of 17 confidences hides it.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from vinocr.decode import build_grammar
from vinocr.decode.constraints import Grammar
from vinocr.errors import ConfigError
from vinocr.vin import CHECK_DIGIT_REGIONS, VIN_LENGTH, check_digit_ok, region_of

#: Rejection reasons, in the order they are checked.
REASONS: Tuple[str, ...] = ("empty", "grammar", "check_digit", "forced", "agreement",
                            "confidence", "disagreement", "votes")
SCORES: Tuple[str, ...] = ("min", "mean")
CHECK_DIGIT_RULES: Tuple[str, ...] = ("auto", "always", "never")


@dataclass
class Read:
    """A model's read of one unlabelled item: a crop, or a track of frames.

    Attributes:
        key: where it came from (the image path; for a track, its folder).
        text: the read (for a track, the text most frames agree on).
        char_confidences: one probability per character of ``text`` (for a track, averaged over
            the frames that read ``text``).
        frames: for a track, each frame's image path and its own read, in frame order.
        unforced: the unconstrained (greedy) read of the same probabilities equals ``text``
            (for a track: on every frame that read ``text``); None when not known.
    """

    key: str
    text: str
    char_confidences: List[float] = field(default_factory=list)
    frames: List[Tuple[str, str]] = field(default_factory=list)
    unforced: Optional[bool] = None

    @property
    def agreement(self) -> int:
        """Frames that read ``text`` (1 for a single crop)."""
        if not self.frames:
            return 1
        return sum(1 for _, t in self.frames if t == self.text)

    def score(self, kind: str = "min") -> float:
        """The confidence compared with the threshold: ``min`` or ``mean`` per-character confidence
        (0.0 for an empty read)."""
        if not self.char_confidences:
            return 0.0
        if kind == "min":
            return float(min(self.char_confidences))
        return float(sum(self.char_confidences) / len(self.char_confidences))


def track_read(key: str, frames: Sequence[Tuple[str, str, Sequence[float]]],
               unforced: Optional[Sequence[Optional[bool]]] = None) -> Read:
    """Combine the frames of a track, each ``(path, text, char_confidences)``, into one
    :class:`Read`: the text most frames read (ties: the one read first), its confidences
    averaged over those frames."""
    if not frames:
        return Read(key, "")
    counts = Counter(t for _, t, _ in frames if t)
    if not counts:
        return Read(key, "", [], [(p, t) for p, t, _ in frames])
    best = max(counts.values())
    text = next(t for _, t, _ in frames if t and counts[t] == best)
    agreeing = [list(c) for _, t, c in frames if t == text]
    # Frames that read the same text have one confidence per character each.
    conf = [sum(col) / len(col) for col in zip(*agreeing)]
    flags = None
    if unforced is not None:
        known = [u for (_, t, _), u in zip(frames, unforced) if t == text]
        flags = None if any(u is None for u in known) else all(known)
    return Read(key, text, conf, [(p, t) for p, t, _ in frames], flags)


@dataclass
class Verdict:
    accepted: bool
    reason: str   # "accepted" or one of REASONS
    score: float

    @property
    def passed_checks(self) -> bool:
        """Every check but the confidence threshold held (:meth:`ReadVerifier.check`)."""
        return self.reason in ("accepted", "confidence")


class ReadVerifier:
    """Accepts a :class:`Read` only when every check that applies holds (module docstring).

    Args:
        grammar: what reads must satisfy (:func:`vinocr.decode.build_grammar` of the decode
            section), or None for no grammar check.
        vin: the reads are VINs: apply the check-digit rule.
        check_digit: ``auto`` (where mandatory), ``always`` or ``never``.
        min_agreement: tracks: frames that must read the same text.
        allow_forced: accept reads the grammar had to change (check 4 off).
        threshold: the minimum score (:meth:`Read.score`); 0 accepts any confidence.
        score: ``min`` or ``mean`` per-character confidence.
    """

    def __init__(self, grammar: Optional[Grammar] = None, vin: bool = False,
                 check_digit: str = "auto", min_agreement: int = 1, threshold: float = 0.0,
                 score: str = "min", allow_forced: bool = False) -> None:
        if check_digit not in CHECK_DIGIT_RULES:
            raise ConfigError(f"check_digit: expected one of {', '.join(CHECK_DIGIT_RULES)}, "
                              f"got {check_digit!r}")
        if score not in SCORES:
            raise ConfigError(f"score: expected one of {', '.join(SCORES)}, got {score!r}")
        if min_agreement < 1:
            raise ConfigError(f"min_agreement: expected >= 1, got {min_agreement}")
        if not 0.0 <= threshold <= 1.0:
            raise ConfigError(f"threshold: expected a confidence in [0, 1], got {threshold}")
        self.grammar = grammar
        self.vin = vin
        self.check_digit = check_digit
        self.min_agreement = int(min_agreement)
        self.threshold = float(threshold)
        self.score_kind = score
        self.allow_forced = bool(allow_forced)

    @classmethod
    def from_decode(cls, decode: Optional[Mapping[str, Any]], vin: bool, **kwargs: Any
                    ) -> "ReadVerifier":
        """A verifier whose grammar is the one ``decode`` (a decode section) searches.

        For VINs the VIN structure applies whatever the decoder (greedy reads too), and the check
        digit is this verifier's own rule (``check_digit``), so a failure is reported as
        ``check_digit`` rather than ``grammar``.
        """
        decode = dict(decode or {})
        if vin:
            grammar = build_grammar({"method": "vin", "check_digit": "never",
                                     "year_rule": bool(decode.get("year_rule", False))})
        else:
            grammar = build_grammar(decode, key="decode")
        return cls(grammar, vin=vin, **kwargs)

    def needs_check_digit(self, text: str) -> bool:
        if not self.vin or self.check_digit == "never":
            return False
        return self.check_digit == "always" or region_of(text) in CHECK_DIGIT_REGIONS

    def structural_reason(self, read: Read) -> Optional[str]:
        """The first check other than confidence that ``read`` fails, or None."""
        if not read.text:
            return "empty"
        if self.grammar is not None and not self.grammar.accepts(read.text):
            return "grammar"
        if self.needs_check_digit(read.text) and (len(read.text) != VIN_LENGTH
                                                  or not check_digit_ok(read.text)):
            return "check_digit"
        if read.unforced is False and not self.allow_forced:
            return "forced"
        if read.agreement < self.min_agreement:
            return "agreement"
        return None

    def check(self, read: Read) -> Verdict:
        score = read.score(self.score_kind)
        reason = self.structural_reason(read)
        if reason is None and score < self.threshold:
            reason = "confidence"
        return Verdict(reason is None, reason or "accepted", score)

    def describe(self) -> Dict[str, Any]:
        return {"grammar": self.grammar.describe() if self.grammar is not None else None,
                "vin_check_digit": self.check_digit if self.vin else None,
                "min_agreement": self.min_agreement, "threshold": self.threshold,
                "score": self.score_kind, "allow_forced": self.allow_forced}


def committee_verdicts(reads: Sequence[Sequence[Read]], verifiers: Sequence[ReadVerifier],
                       min_votes: int = 1, confident_votes: bool = False
                       ) -> Tuple[List[Read], List[Verdict], List[List[Verdict]]]:
    """Combine several models' reads of the same items into one read and verdict per item.

    ``reads[m][k]`` is model m's read of item k, judged by model m's own verifier
    ``verifiers[m]`` (each model has its own threshold: confidences of different models are not
    on one scale). An item is accepted when some model accepts its read and no model reads it as
    something else that also passes the structural checks (grammar, check digit, unforced,
    agreement); that case is rejected as ``disagreement``. A read that fails the structural checks
    is no evidence against another model's: a failed check digit already says it is wrong.

    Models misread different crops (another base, another training set), so the committee labels
    crops that its first model alone would leave unlabelled; but the members' errors add up.
    ``min_votes`` > 1 buys precision back: the accepted text must also be read, passing the
    structural checks, by that many members (confident or not), else ``votes``. A member's
    confident misread that no other member makes is then rejected. ``confident_votes`` counts
    only the members that accept the text by their own threshold: a misread that every member
    makes alike, one of them confidently and another doubtfully, is then rejected too (with
    ``min_votes`` equal to the committee's size, every member must accept the read).

    Returns ``(reads, verdicts, per_model)``: the read that was accepted (the first accepting
    model's) or, for a rejected item, the first model's read and verdict; and every model's own
    verdicts, ``per_model[m][k]``.
    """
    if not reads or len(reads) != len(verifiers):
        raise ValueError("one list of reads per verifier expected")
    if not 1 <= min_votes <= len(reads):
        raise ConfigError(f"min_votes: expected 1 to {len(reads)} (the committee's size), got "
                          f"{min_votes}")
    n = len(reads[0])
    if any(len(r) != n for r in reads):
        raise ValueError("every model must read the same items")
    per_model = [[v.check(r) for r in model_reads] for model_reads, v in zip(reads, verifiers)]
    combined_reads: List[Read] = []
    combined: List[Verdict] = []
    for k in range(n):
        accepted = [m for m in range(len(reads)) if per_model[m][k].accepted]
        if not accepted:
            combined_reads.append(reads[0][k])
            combined.append(per_model[0][k])
            continue
        first = accepted[0]
        text = reads[first][k].text
        valid = [m for m in range(len(reads)) if per_model[m][k].passed_checks]
        dissent = any(reads[m][k].text != text for m in valid)
        voters = accepted if confident_votes else valid
        votes = sum(1 for m in voters if reads[m][k].text == text)
        combined_reads.append(reads[first][k])
        verdict = per_model[first][k]
        if dissent:
            verdict = Verdict(False, "disagreement", verdict.score)
        elif votes < min_votes:
            verdict = Verdict(False, "votes", verdict.score)
        combined.append(verdict)
    return combined_reads, combined, per_model


# --------------------------------------------------------------------------- threshold choice
@dataclass
class Calibration:
    """The confidence threshold chosen on labelled validation reads for a target precision.

    Attributes:
        threshold: the lowest score at which the accepted reads reach ``target`` precision.
        target: the precision asked for.
        precision: the precision of the validation reads the threshold accepts.
        precision_lower_95: its Wilson 95% lower bound (few validation reads make the point
            estimate optimistic; this says how far).
        accepted, passed_checks, total: validation reads accepted / passing the structural checks
            / all.
        reached: False when no threshold reaches the target (then nothing is accepted).
    """

    threshold: float
    target: float
    precision: float
    precision_lower_95: float
    accepted: int
    passed_checks: int
    total: int
    reached: bool

    def to_dict(self) -> Dict[str, Any]:
        return dict(self.__dict__)


def wilson_lower(successes: int, n: int, z: float = 1.96) -> float:
    """Wilson score lower bound of a binomial proportion (0.0 for n = 0)."""
    if n == 0:
        return 0.0
    p = successes / n
    denom = 1 + z * z / n
    centre = p + z * z / (2 * n)
    margin = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, (centre - margin) / denom)


def choose_threshold(scores: Sequence[float], correct: Sequence[bool], target: float,
                     total: Optional[int] = None) -> Calibration:
    """The lowest threshold whose accepted set (score >= threshold) has precision >= ``target``.

    ``scores`` and ``correct`` are the validation reads that passed every structural check (those
    are the only ones a threshold decides); ``total`` counts all validation reads for the report.
    The largest accepted set that still meets the target is chosen, so yield is as high as the
    validation set allows at that precision.
    """
    if len(scores) != len(correct):
        raise ValueError("scores and correct differ in length")
    if not 0.0 < target <= 1.0:
        raise ConfigError(f"target precision: expected a value in (0, 1], got {target}")
    total = len(scores) if total is None else total
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    best: Optional[Tuple[float, int, int]] = None
    right = 0
    for n, i in enumerate(order, start=1):
        right += bool(correct[i])
        # A threshold can only sit between distinct scores: wait for the last of a tie.
        if n < len(order) and scores[order[n]] == scores[i]:
            continue
        if right / n >= target:
            best = (float(scores[i]), n, right)
    if best is None:
        return Calibration(threshold=1.0, target=target, precision=0.0, precision_lower_95=0.0,
                           accepted=0, passed_checks=len(scores), total=total, reached=False)
    threshold, n, right = best
    return Calibration(threshold=threshold, target=target, precision=right / n,
                       precision_lower_95=wilson_lower(right, n), accepted=n,
                       passed_checks=len(scores), total=total, reached=True)


def summarise(verdicts: Sequence[Verdict]) -> Dict[str, int]:
    """Counts per outcome: ``accepted`` and each rejection reason."""
    counts = {"accepted": 0, **{r: 0 for r in REASONS}}
    for v in verdicts:
        counts[v.reason] += 1
    return counts


def precision_report(reads: Sequence[Read], verdicts: Sequence[Verdict],
                     truth: Sequence[Optional[str]]) -> Dict[str, Any]:
    """Audit against hidden labels (``None`` = no label for that item): precision and yield of the
    accepted reads, and how many correct reads each check rejected."""
    audited = [(r, v, t) for r, v, t in zip(reads, verdicts, truth) if t is not None]
    accepted = [(r, t) for r, v, t in audited if v.accepted]
    right = sum(1 for r, t in accepted if r.text == t)
    rejected_correct: Dict[str, int] = {}
    for r, v, t in audited:
        if not v.accepted and r.text == t:
            rejected_correct[v.reason] = rejected_correct.get(v.reason, 0) + 1
    return {"audited": len(audited), "accepted": len(accepted), "accepted_correct": right,
            "precision": right / len(accepted) if accepted else None,
            "precision_lower_95": wilson_lower(right, len(accepted)) if accepted else None,
            "yield": len(accepted) / len(audited) if audited else None,
            "reads_correct": sum(1 for r, _, t in audited if r.text == t),
            "correct_but_rejected": rejected_correct}

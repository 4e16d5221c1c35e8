"""Multi-frame recognition of one plate track: fuse the frames' CTC outputs, or vote on their texts.

A track holds several low-resolution captures of the same plate (LRLPR-26: five). Recognising
each frame alone throws away the fact that they spell the same string; the competition's top
entries fuse the frames. Two fusions are offered, plus a single-frame baseline:

``logprob`` (default)
    The frames' per-time-step class probabilities are treated as independent evidence
    (a product of experts): their logarithms are summed on a common time axis and renormalised
    per step (log-softmax of the sum), and the decoder reads that as log-probabilities. A frame
    that is unsure at one character is outvoted by frames that are sure there, even when every
    frame alone decodes to a different wrong string.
``vote``
    Each frame is decoded on its own; the texts of the modal length vote per character position,
    weighted by confidence (see :func:`vote`). Robust when one frame is badly misaligned, since a
    frame can only ever cost one vote per position.
``sequence``
    Summed log-probabilities at the level of whole strings: every candidate text (each frame's
    own reading, and the readings of the ``logprob`` fusion and of the frames' mean
    probabilities) is scored by ``sum_f log P_ctc(text | frame f)``, each frame marginalising over
    its own CTC alignments (:func:`vinocr.sr.alignment.ctc_log_likelihood`). The common alignment
    is the text itself, so frames whose CTC spikes sit one time step apart still agree, which a
    per-time-step sum cannot see.
``single``
    The first frame alone (the baseline the fusions must beat).

Time alignment: CTC frames of one recogniser on plates of one size line up roughly with the
plate's horizontal position, so frame ``t`` of one capture and frame ``t`` of another look at the
same part of the plate. When frames come out with different lengths (dynamic-width inference on
crops of different aspect), every matrix is linearly resampled along time to the longest length
``T`` before summing — a stretch of the shorter outputs over the same plate extent, not a learned
alignment.
"""
from __future__ import annotations

import logging
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from vinocr.decode import Decoder
from vinocr.errors import ConfigError, VinocrError

logger = logging.getLogger(__name__)

#: Fusion methods of :func:`recognise_track`.
METHODS: Tuple[str, ...] = ("sequence", "logprob", "vote", "single")

#: Probability floor before the logarithm: one frame that is (numerically) certain a class is
#: absent costs that class log(1e-8) ~ -18.4 rather than -inf, so a single frame cannot veto a
#: character that the other frames agree on.
PROB_FLOOR = 1e-8


@dataclass
class TrackResult:
    """The recognition of one track.

    Attributes:
        text: the fused plate text ('' when the decoder found no valid sequence).
        confidence: in [0, 1]; its meaning depends on ``method`` (see :func:`recognise_track`).
        method: the fusion used (``logprob``, ``vote`` or ``single``).
        frames: per-frame ``(text, confidence)`` of the frames that were recognised, in order.
    """

    text: str
    confidence: float
    method: str
    frames: List[Tuple[str, float]] = field(default_factory=list)

    def to_dict(self) -> Dict[str, Any]:
        """Plain JSON-ready dict (``frames`` as lists)."""
        out = asdict(self)
        out["frames"] = [[t, float(c)] for t, c in self.frames]
        return out


def check_method(method: str) -> str:
    """``method`` if it is a known fusion, else a :class:`ConfigError` listing the valid ones."""
    if method not in METHODS:
        raise ConfigError(f"unknown fusion method {method!r} (valid: {', '.join(METHODS)})")
    return method


# ---------------------------------------------------------------------------------- log-prob
def resample_time(probs: np.ndarray, length: int) -> np.ndarray:
    """Linearly resample ``probs`` [T, C] along time to [length, C].

    Frame centres are matched (``align_corners=False`` convention): output step ``t`` reads input
    position ``(t + 0.5) * T / length - 0.5``, clamped to the ends. Rows are convex combinations of
    input rows, so probability rows stay normalised.
    """
    arr = np.asarray(probs, dtype=np.float64)
    t_in = arr.shape[0]
    if t_in == length:
        return arr
    pos = np.clip((np.arange(length) + 0.5) * t_in / length - 0.5, 0.0, t_in - 1)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, t_in - 1)
    frac = (pos - lo)[:, None]
    return arr[lo] * (1.0 - frac) + arr[hi] * frac


def _check_frames(frames: Sequence[np.ndarray]) -> List[np.ndarray]:
    arrays = [np.asarray(f) for f in frames]
    if not arrays:
        raise VinocrError("no frames to fuse")
    for i, a in enumerate(arrays):
        if a.ndim != 2 or a.shape[0] == 0 or a.shape[1] < 2:
            raise VinocrError(f"frame {i}: expected probabilities of shape [T, C], got {a.shape}")
        if a.shape[1] != arrays[0].shape[1]:
            raise VinocrError(f"frame {i}: {a.shape[1]} classes, but frame 0 has "
                              f"{arrays[0].shape[1]}")
        if not np.isfinite(a).all() or (a < 0).any():
            raise VinocrError(f"frame {i}: probabilities must be finite and >= 0 (pass softmax "
                              "output, not logits)")
    return arrays


def fuse_logprobs(frames: Sequence[np.ndarray]) -> np.ndarray:
    """Per-frame CTC probabilities [T_i, C] -> fused log-probabilities [T, C], T = max T_i.

    Each frame is resampled to ``T`` (:func:`resample_time`; a no-op when all ``T_i`` agree),
    floored at :data:`PROB_FLOOR`, turned into log-probabilities and summed over frames; the sum
    is renormalised per time step (log-softmax), so every row is a log-distribution a decoder can
    read with ``log_input=True``. For identical frames the argmax path is unchanged and the
    distribution is sharpened, as independent evidence should.
    """
    arrays = _check_frames(frames)
    length = max(a.shape[0] for a in arrays)
    total = np.zeros((length, arrays[0].shape[1]), dtype=np.float64)
    for a in arrays:
        total += np.log(np.maximum(resample_time(a, length), PROB_FLOOR))
    top = total.max(axis=1, keepdims=True)
    lse = top + np.log(np.exp(total - top).sum(axis=1, keepdims=True))
    return np.minimum(total - lse, 0.0)  # rounding can leave +1e-16; decoders insist on <= 0


# ------------------------------------------------------------------------------------- vote
def _clamp01(x: float) -> float:
    x = float(x)
    if not np.isfinite(x):
        return 0.0
    return min(max(x, 0.0), 1.0)


def _pick(candidates: Sequence[Any], counts: Dict[Any, int], weights: Dict[Any, float],
          first: Dict[Any, int]) -> Any:
    """Most votes; ties by summed confidence, then by the earliest frame that voted for it."""
    return min(candidates, key=lambda c: (-counts[c], -weights[c], first[c]))


def vote(results: Sequence[Tuple[str, float]]) -> Tuple[str, float]:
    """Character voting over frame results ``(text, confidence)`` -> ``(text, confidence)``.

    Only frames whose text has the modal length vote: texts of another length are most likely
    missing or duplicating a character, and aligning them position by position would shift every
    later character. Empty texts (a constrained decoder that found nothing) never vote; when every
    text is empty the result is ``("", 0.0)``.

    Choices, each tie broken by summed confidence and then by the earliest frame:

    - the length: the most frequent one;
    - each position: the character with the most votes.

    Confidence (in [0, 1]): the mean over positions of ``share * agree``, where ``share`` is the
    confidence-weighted fraction of the voters that chose the winning character (the count fraction
    when every voter has confidence 0) and ``agree`` is the mean confidence of the frames that chose
    it. Unanimous frames of confidence ``c`` give ``c``; disagreement lowers it in proportion.
    """
    items = [(str(t), _clamp01(c)) for t, c in results]
    voters = [(i, t, c) for i, (t, c) in enumerate(items) if t]
    if not voters:
        return "", 0.0
    counts = Counter(len(t) for _, t, _ in voters)
    weights: Dict[int, float] = {}
    first: Dict[int, int] = {}
    for i, t, c in voters:
        weights[len(t)] = weights.get(len(t), 0.0) + c
        first.setdefault(len(t), i)
    length = _pick(list(counts), counts, weights, first)
    voters = [(i, t, c) for i, t, c in voters if len(t) == length]

    chars: List[str] = []
    scores: List[float] = []
    for p in range(length):
        n: Dict[str, int] = {}
        w: Dict[str, float] = {}
        f: Dict[str, int] = {}
        for i, t, c in voters:
            ch = t[p]
            n[ch] = n.get(ch, 0) + 1
            w[ch] = w.get(ch, 0.0) + c
            f.setdefault(ch, i)
        best = _pick(list(n), n, w, f)
        total = sum(w.values())
        share = w[best] / total if total > 0 else n[best] / len(voters)
        agree = w[best] / n[best]
        chars.append(best)
        scores.append(share * agree)
    return "".join(chars), _clamp01(sum(scores) / len(scores))


# ------------------------------------------------------------------------------ sequence
def sequence_fusion(frames: Sequence[np.ndarray], decoder: Decoder,
                    frame_texts: Sequence[str] = ()) -> Tuple[str, float]:
    """The candidate text with the highest summed CTC log-likelihood over ``frames``.

    Candidates: ``frame_texts`` (each frame's own decoding), plus the decoder's readings of
    :func:`fuse_logprobs` and of the frames' mean probabilities; empty texts are not candidates
    (when all are empty the result is ``("", 0.0)``). The decoder's grammar (e.g. a plate layout)
    therefore bounds the candidates too.

    Confidence: the candidate's posterior among the candidates (softmax of the summed scores)
    times its per-character likelihood ``exp(mean_f log P(text | f) / len(text))``, so agreeing,
    confident frames give values near 1 and a lone strong candidate of weak frames does not.
    """
    from vinocr.sr.alignment import ctc_log_likelihood

    arrays = _check_frames(frames)
    length = max(a.shape[0] for a in arrays)
    mean = np.mean([resample_time(a, length) for a in arrays], axis=0)
    texts = [t for t in frame_texts if t]
    for matrix, log_input in ((fuse_logprobs(arrays), True), (mean, False)):
        d = decoder.decode_one(matrix, log_input=log_input)
        if d.text:
            texts.append(d.text)
    candidates = list(dict.fromkeys(texts))
    if not candidates:
        return "", 0.0
    index = {c: i for i, c in enumerate(decoder.classes) if i > 0}
    logs = [np.log(np.maximum(a, PROB_FLOOR)) for a in arrays]
    scores = []
    for text in candidates:
        label = [index[ch] for ch in text if ch in index]
        scores.append(sum(ctc_log_likelihood(lp, label) for lp in logs))
    arr = np.asarray(scores)
    best = int(np.argmax(arr))
    posterior = float(np.exp(arr[best] - np.logaddexp.reduce(arr)))
    per_char = float(np.exp(arr[best] / len(arrays) / max(len(candidates[best]), 1)))
    return candidates[best], _clamp01(posterior * per_char)


# --------------------------------------------------------------------------------- one track
def recognise_track(frame_probs: Sequence[np.ndarray], decoder: Decoder,
                    method: str = "sequence",
                    frame_results: Optional[Sequence[Tuple[str, float]]] = None) -> TrackResult:
    """Recognise one track from its frames' CTC probabilities [T_i, C].

    Every frame is decoded on its own (``TrackResult.frames``), then:

    - ``logprob``: the decoder runs on :func:`fuse_logprobs` of all frames; the confidence is the
      decoder's confidence on the fused matrix (mean aligned probability of the characters under
      the product of the frames, so several agreeing frames give more confidence than one);
    - ``vote``: :func:`vote` over the per-frame results;
    - ``sequence``: :func:`sequence_fusion`;
    - ``single``: the first frame's result.

    Args:
        frame_probs: per-frame softmax outputs of one recogniser (same class list).
        decoder: a :mod:`vinocr.decode` decoder for that class list (e.g. the ``plate`` decoder,
            whose layout constraint then also applies to the fused output).
        method: one of :data:`METHODS`.
        frame_results: the frames' own ``(text, confidence)`` when the caller has decoded them
            already with ``decoder`` (evaluation compares several methods on the same frames).
    """
    check_method(method)
    arrays = _check_frames(frame_probs)
    if frame_results is not None:
        if len(frame_results) != len(arrays):
            raise VinocrError(f"{len(frame_results)} frame results for {len(arrays)} frames")
        frames = [(str(t), _clamp01(c)) for t, c in frame_results]
    else:
        frames = [(d.text, _clamp01(d.confidence)) for d in map(decoder.decode_one, arrays)]
    if method == "single":
        text, conf = frames[0]
    elif method == "vote":
        text, conf = vote(frames)
    elif method == "sequence":
        text, conf = sequence_fusion(arrays, decoder, [t for t, _ in frames])
    else:
        d = decoder.decode_one(fuse_logprobs(arrays), log_input=True)
        text, conf = d.text, _clamp01(d.confidence)
    logger.debug("track (%d frames, %s): %s %.4f from %s", len(arrays), method, text, conf,
                 frames)
    return TrackResult(text=text, confidence=conf, method=method, frames=frames)

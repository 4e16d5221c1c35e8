"""CTC decoding primitives: greedy decoding, prefix beam search, forward probability, alignment.

Inputs are per-frame class *probabilities* (the softmax output of a recogniser), shape ``[T, C]``
for one sample or ``[N, T, C]`` for a batch. Class 0 is the CTC blank. A list ``classes`` maps every
class index to the character it spells (``''`` for the blank at 0, ``' '`` for the space class), so
a model with more classes than the charset at hand (e.g. the 6625-class PP-OCR head decoded with VIN
characters only) is decoded by passing that model's full class list.

All search is done in log space (float64) so that long sequences and tiny probabilities neither
underflow nor lose precision. Probability zeros become ``-inf`` log-probabilities and are handled
exactly.

Module layout:

- :func:`ctc_greedy` - best path (argmax per frame, collapse repeats, drop blanks);
- :func:`ctc_log_prob` / :func:`ctc_log_prob_batch` - ``log P(labels | x)`` by the forward
  algorithm (sum over every alignment);
- :func:`ctc_forced_align` - the single most probable alignment of a given label sequence (Viterbi),
  used for per-character confidences of beam-searched texts;
- :func:`prefix_beam_search` - CTC prefix beam search, optionally restricted by a
  :class:`SearchConstraint` (the hook the grammar-constrained decoder plugs into);
- :class:`Decoder`, :class:`GreedyDecoder`, :class:`BeamSearchDecoder` - the user-facing decoders
  returning :class:`DecodeResult`.
"""
from __future__ import annotations

import logging
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import (Hashable, List, Optional, Protocol, Sequence, Tuple, Union,
                    runtime_checkable)

import numpy as np

from vinocr.charset import Charset, load_charset
from vinocr.errors import VinocrError

logger = logging.getLogger(__name__)

NEG_INF = float("-inf")
BLANK = 0


class DecodeError(VinocrError):
    """Decoder input or set-up is invalid (wrong array shape, class list mismatch, bad values)."""


@dataclass
class DecodeResult:
    """What a decoder returns for one sample.

    Attributes:
        text: the decoded string ('' when a constrained decoder found no valid sequence).
        char_confidences: one value per character of ``text``: the mean probability of that
            character's class over the frames aligned to it (greedy: its collapsed run of frames;
            beam / constrained: the Viterbi forced alignment of ``text``).
        confidence: mean of ``char_confidences`` (PaddleOCR's convention); 0.0 for an empty text.
        log_prob: ``log P(text | x)`` summed over all CTC alignments (forward algorithm);
            ``-inf`` when a constrained decoder found no valid sequence.
        satisfied: the decoder's constraints hold for ``text`` (always True when unconstrained).
        fallback_text: for constrained decoders that found no valid sequence, the unconstrained
            greedy text (for display / debugging); None otherwise.
        format: for plate-format decoding (``method: plate``), the name of the format ``text``
            matched (the first in the configured order when several match, e.g. ``us_ny`` for
            ``ABC1234`` under ``us``); None for other decoders and when no text was found.
        formats: every format ``text`` matched, in the configured order (``()`` when none).
        region: the region code of ``format`` (``DE``, ``US-CA``, ``CN``); None without a format
            or for region-free formats (``generic``, slot patterns).
        spans: per character of ``text``, ``(class, start, end)``: the class index (in the
            decoder's full class list) and the ``[start, end)`` frames its confidence averages, so
            ``char_confidences[k] == probs[start:end, class].mean()``. Confidence calibration
            (:mod:`vinocr.calibration`) recomputes confidences from tempered probabilities over
            exactly these frames, so the text never changes.
    """

    text: str
    char_confidences: List[float] = field(default_factory=list)
    confidence: float = 0.0
    log_prob: float = 0.0
    satisfied: bool = True
    fallback_text: Optional[str] = None
    format: Optional[str] = None
    formats: Tuple[str, ...] = ()
    region: Optional[str] = None
    spans: List[Tuple[int, int, int]] = field(default_factory=list, repr=False, compare=False)


# ----------------------------------------------------------------------------------------------
# Class lists and input checking


def resolve_classes(charset: Union[Charset, str, None] = None,
                    classes: Optional[Sequence[str]] = None) -> List[str]:
    """The class index -> character list a decoder uses.

    ``classes`` wins when given (index 0 is always the blank, whatever string it holds); otherwise
    the charset's class list with the blank as ''. Every non-blank class must be exactly one
    character so that texts and per-character confidences stay aligned.
    """
    if classes is None:
        if charset is None:
            raise DecodeError("a decoder needs a charset or an explicit classes list")
        cs = load_charset(charset)
        table = cs.class_list()
    else:
        table = [str(c) for c in classes]
    if len(table) < 2:
        raise DecodeError(f"classes: need the blank and at least one character, got {len(table)}")
    table[BLANK] = ""
    bad = [i for i, c in enumerate(table[1:], start=1) if len(c) != 1]
    if bad:
        i = bad[0]
        raise DecodeError(f"classes[{i}] is {table[i]!r}: every non-blank class must be exactly "
                          f"one character ({len(bad)} bad entries)")
    return table


def check_probs(probs: np.ndarray, num_classes: int, log_input: bool = False) -> np.ndarray:
    """Validate one sample ``[T, C]`` (shape, class count, value range); returns it as an array.

    Args:
        probs: softmax probabilities, or log-probabilities when ``log_input``.
        num_classes: the class count the decoder was built for.
        log_input: ``probs`` already holds log-probabilities (e.g. summed log-softmax of several
            frames of the same plate).
    """
    arr = np.asarray(probs)
    if arr.ndim != 2:
        raise DecodeError(f"expected probabilities of shape [T, C], got shape {arr.shape}")
    if arr.shape[1] != num_classes:
        raise DecodeError(f"probabilities have {arr.shape[1]} classes but the decoder has "
                          f"{num_classes}; pass the model's class list as classes=")
    if not np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(np.float64)
    if log_input:
        if np.isnan(arr).any() or (arr > 1e-6).any():
            raise DecodeError("log-probabilities must be <= 0 and not NaN")
        return arr
    if not np.isfinite(arr).all():
        raise DecodeError("probabilities contain NaN or infinity")
    if (arr < 0).any():
        raise DecodeError("probabilities are negative: pass softmax output, not logits "
                          "(or log-probabilities with log_input=True)")
    return arr


def to_log_probs(probs: np.ndarray, num_classes: int, log_input: bool = False,
                 columns: Optional[np.ndarray] = None) -> Tuple[np.ndarray, np.ndarray]:
    """Check one sample ``[T, C]`` and return ``(log_probs, probs)`` as float64.

    ``columns`` keeps only those classes (in that order) *before* the float64 conversion and the
    logarithm: a VIN decoder on a 6625-class head needs 34 of them, and converting the rest would
    cost more than the whole search.
    """
    return convert_probs(check_probs(probs, num_classes, log_input), log_input, columns)


def convert_probs(arr: np.ndarray, log_input: bool = False, columns: Optional[np.ndarray] = None
                  ) -> Tuple[np.ndarray, np.ndarray]:
    """``(log_probs, probs)`` in float64 of an array already checked by :func:`check_probs`."""
    if columns is not None:
        arr = arr[:, columns]
    arr = arr.astype(np.float64)
    if log_input:
        return arr, np.minimum(np.exp(arr), 1.0)
    # Tiny float32 overshoots above 1 would give confidences just above 1.
    arr = np.minimum(arr, 1.0)
    with np.errstate(divide="ignore"):
        return np.log(arr), arr


# ----------------------------------------------------------------------------------------------
# Greedy


def ctc_greedy(probs: np.ndarray) -> Tuple[List[int], List[Tuple[int, int]]]:
    """Best-path decoding of ``[T, C]`` scores (probabilities or log-probabilities).

    Returns the collapsed class ids (no blanks) and, per id, the ``[start, end)`` frame range of
    its run, so callers can average the character's probability over exactly those frames.
    """
    best = np.asarray(probs).argmax(axis=1)
    labels: List[int] = []
    runs: List[Tuple[int, int]] = []
    prev = BLANK
    for t, c in enumerate(best.tolist()):
        if c != prev and c != BLANK:
            labels.append(c)
            runs.append((t, t + 1))
        elif c == prev and c != BLANK:
            runs[-1] = (runs[-1][0], t + 1)
        prev = c
    return labels, runs


# ----------------------------------------------------------------------------------------------
# Forward algorithm and forced alignment


def _extended(seqs: Sequence[Sequence[int]]) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Blank-interleaved label lattices ``[B, S]``, their skip masks and label lengths.

    State ``s`` odd is label ``(s - 1) // 2``, even states are blanks. A transition ``s-2 -> s``
    (skipping a blank) is allowed only into a label state whose label differs from the previous
    label, because two equal labels in a row need a blank between them.
    """
    lengths = np.array([len(s) for s in seqs], dtype=np.int64)
    width = 2 * int(lengths.max(initial=0)) + 1
    ext = np.zeros((len(seqs), width), dtype=np.int64)
    for b, seq in enumerate(seqs):
        if len(seq):
            ext[b, 1:2 * len(seq):2] = seq
    skip = np.zeros_like(ext, dtype=bool)
    if width > 3:
        skip[:, 3::2] = ext[:, 3::2] != ext[:, 1:-2:2]
    return ext, skip, lengths


def ctc_log_prob_batch(log_probs: np.ndarray, seqs: Sequence[Sequence[int]]) -> np.ndarray:
    """``log P(seq | x)`` for several label sequences at once (forward algorithm).

    The sequences are padded with blanks to a common lattice width; probability only flows towards
    higher states, so padding never leaks into a shorter sequence's final states.
    """
    if not len(seqs):
        return np.zeros(0)
    lp = np.asarray(log_probs, dtype=np.float64)
    T = lp.shape[0]
    ext, skip, lengths = _extended(seqs)
    B, S = ext.shape
    if T == 0:
        return np.where(lengths == 0, 0.0, NEG_INF)
    emit = lp[:, ext]  # [T, B, S]
    alpha = np.full((B, S), NEG_INF)
    alpha[:, 0] = emit[0, :, 0]
    if S > 1:
        alpha[:, 1] = emit[0, :, 1]
    pad1 = np.full((B, 1), NEG_INF)
    pad2 = np.full((B, 2), NEG_INF)
    for t in range(1, T):
        from1 = np.concatenate([pad1, alpha[:, :-1]], axis=1)
        from2 = np.where(skip, np.concatenate([pad2, alpha[:, :-2]], axis=1), NEG_INF)
        alpha = np.logaddexp(np.logaddexp(alpha, from1), from2) + emit[t]
    rows = np.arange(B)
    last_blank = alpha[rows, 2 * lengths]
    last_label = np.where(lengths > 0, alpha[rows, np.maximum(2 * lengths - 1, 0)], NEG_INF)
    return np.logaddexp(last_blank, last_label)


def ctc_log_prob(log_probs: np.ndarray, labels: Sequence[int]) -> float:
    """``log P(labels | x)``: the log of the summed probability of every alignment of ``labels``."""
    return float(ctc_log_prob_batch(log_probs, [list(labels)])[0])


def ctc_forced_align(log_probs: np.ndarray, labels: Sequence[int]) -> Tuple[np.ndarray, float]:
    """Most probable alignment (Viterbi) of ``labels`` to the frames.

    Returns ``(positions, log_score)``: ``positions[t]`` is the index into ``labels`` that frame
    ``t`` emits, or -1 for a blank frame; ``log_score`` is the log-probability of that single path
    (``-inf`` and all -1 when ``labels`` cannot fit into the frames).
    """
    lp = np.asarray(log_probs, dtype=np.float64)
    T = lp.shape[0]
    ext, skip, _ = _extended([list(labels)])
    ext, skip = ext[0], skip[0]
    S = ext.size
    positions = np.full(T, -1, dtype=np.int64)
    if T == 0:
        return positions, (0.0 if S == 1 else NEG_INF)
    emit = lp[:, ext]  # [T, S]
    delta = np.full(S, NEG_INF)
    delta[0] = emit[0, 0]
    if S > 1:
        delta[1] = emit[0, 1]
    back = np.zeros((T, S), dtype=np.int8)
    cols = np.arange(S)
    cand = np.full((3, S), NEG_INF)
    for t in range(1, T):
        cand[0] = delta
        cand[1, 0] = NEG_INF
        cand[1, 1:] = delta[:-1]
        cand[2, :2] = NEG_INF
        cand[2, 2:] = np.where(skip[2:], delta[:-2], NEG_INF)
        # argmax prefers staying in a state on ties: a deterministic, compact alignment.
        arg = cand.argmax(axis=0)
        delta = cand[arg, cols] + emit[t]
        back[t] = arg
    if S == 1:
        end = 0
    else:
        end = S - 1 if delta[S - 1] >= delta[S - 2] else S - 2
    score = float(delta[end])
    if score == NEG_INF:
        return positions, NEG_INF
    s = end
    for t in range(T - 1, -1, -1):
        positions[t] = (s - 1) // 2 if s % 2 == 1 else -1
        s -= int(back[t, s])
    return positions, score


def aligned_spans(labels: Sequence[int], positions: np.ndarray) -> List[Tuple[int, int, int]]:
    """Per label, ``(class, start, end)``: the contiguous ``[start, end)`` frames ``positions``
    assigns to it (a CTC path emits each label over one run of frames); ``start == end`` when it
    has none."""
    out: List[Tuple[int, int, int]] = []
    for k, c in enumerate(labels):
        frames = np.nonzero(positions == k)[0]
        out.append((int(c), int(frames[0]), int(frames[-1]) + 1) if frames.size
                   else (int(c), 0, 0))
    return out


def aligned_confidences(probs: np.ndarray, labels: Sequence[int], positions: np.ndarray
                        ) -> List[float]:
    """Per label: mean probability of its class over the frames ``positions`` assigns to it."""
    out: List[float] = []
    for k, c in enumerate(labels):
        frames = np.nonzero(positions == k)[0]
        out.append(float(probs[frames, c].mean()) if frames.size else 0.0)
    return out


# ----------------------------------------------------------------------------------------------
# Prefix beam search


@runtime_checkable
class SearchConstraint(Protocol):
    """What :func:`prefix_beam_search` needs from a grammar (see ``vinocr.decode.constrained``).

    States are opaque hashables; the search keeps one per beam. ``columns`` are the class ids that
    may ever be emitted. ``expand(state)`` gives, per column, the minimum number of further
    characters the grammar still needs after emitting that column (a large number when the column
    is not allowed) and the successor states (None when not allowed).
    """

    columns: np.ndarray

    def start(self) -> Hashable: ...

    def expand(self, state: Hashable) -> Tuple[np.ndarray, List[Optional[Hashable]]]: ...

    def remaining(self, state: Hashable) -> int: ...

    def is_final(self, state: Hashable) -> bool: ...


@dataclass
class Beam:
    """A prefix kept by the beam search: class ids, beam log-score and grammar state."""

    labels: Tuple[int, ...]
    score: float
    state: Optional[Hashable] = None


def prefix_beam_search(log_probs: np.ndarray, beam_size: int = 16,
                       prune_logp: Optional[float] = None,
                       constraint: Optional[SearchConstraint] = None) -> List[Beam]:
    """CTC prefix beam search over ``[T, C]`` log-probabilities.

    Every prefix carries two log-scores: ``pb`` (alignments of the frames so far ending in blank)
    and ``pnb`` (ending in the prefix's last character). Per frame a prefix can stay (blank, or a
    repeat of its last character that CTC collapses) or grow by one class; growing by the same class
    as its last one is only possible from ``pb`` (a blank must separate two equal characters).

    The expansion of all beams by all candidate classes is one ``[B, K]`` matrix, so a 6625-class
    output costs a few numpy operations per frame instead of a Python loop. The result equals the
    textbook algorithm (extend every beam by every class, merge equal prefixes, keep the best
    ``beam_size``) because:

    - an extension can coincide with an existing beam (beam ``AB`` and ``A`` + ``B``); those at
      most ``B`` cases are merged into the existing beam first, using the full class scores;
    - the remaining extensions are all distinct prefixes, so keeping only their top ``B`` before
      merging loses nothing;
    - without a grammar, a beam's row of extension scores is ``ptot + log p(class)`` except at most
      ``B`` entries (its repeat class and its merged children), so the row's top ``B`` lie within
      the frame's ``2B`` most probable classes and only those need to be scored.

    Args:
        log_probs: ``[T, C]`` log-probabilities, blank at class 0.
        beam_size: prefixes kept per frame. With a beam at least as large as the number of distinct
            prefixes the search is exact; smaller beams are approximate (the best sequence can be
            pruned early).
        prune_logp: skip extensions by classes whose frame log-probability is below this (e.g.
            -12.0). None disables pruning. Rarely needed: the search already scores only the
            ``2 * beam_size`` best classes per frame when unconstrained.
        constraint: restricts extensions (grammar); beams that can no longer be completed within the
            remaining frames are dropped as early as possible so they do not take beam slots.

    Returns:
        The surviving beams, best first. With a constraint, only beams whose state is final.
    """
    if beam_size < 1:
        raise DecodeError(f"beam_size must be >= 1, got {beam_size}")
    lp_all = np.asarray(log_probs, dtype=np.float64)
    T, C = lp_all.shape
    if constraint is None:
        columns = np.arange(1, C)
    else:
        columns = np.asarray(constraint.columns, dtype=np.int64)
    col_of = np.full(C, -1, dtype=np.int64)
    col_of[columns] = np.arange(columns.size)
    preselect = 2 * beam_size

    prefixes: List[Tuple[int, ...]] = [()]
    states: List[Optional[Hashable]] = [constraint.start() if constraint is not None else None]
    pb = np.array([0.0])
    pnb = np.array([NEG_INF])

    for t in range(T):
        lp = lp_all[t]
        frames_left = T - 1 - t  # frames after this one, for the completion check
        lpc_all = lp[columns]
        # Only usable classes take part: not -inf, not pruned and, unconstrained, among the
        # 2B best (see docstring). Dropping -inf up front also keeps argpartition fast; it degrades
        # badly on arrays full of equal -inf values (float32 softmax underflows to exact zeros).
        act = np.flatnonzero(lpc_all > NEG_INF if prune_logp is None
                             else lpc_all >= prune_logp)
        if constraint is None and act.size > preselect:
            best = np.argpartition(lpc_all[act], act.size - preselect)[act.size - preselect:]
            act = act[np.sort(best)]
        cols_t, lpc = columns[act], lpc_all[act]
        colpos = np.full(C, -1, dtype=np.int64)
        colpos[cols_t] = np.arange(act.size)
        K_t = act.size
        ptot = np.logaddexp(pb, pnb)
        B = len(prefixes)
        lasts = np.array([p[-1] if p else BLANK for p in prefixes], dtype=np.int64)

        # Extensions by a new character.
        ext = ptot[:, None] + lpc[None, :]
        last_cols = colpos[lasts]
        rep = np.nonzero((lasts != BLANK) & (last_cols >= 0))[0]
        if rep.size:
            ext[rep, last_cols[rep]] = pb[rep] + lpc[last_cols[rep]]
        dead = np.zeros(B, dtype=bool)
        if constraint is not None:
            need = np.stack([constraint.expand(s)[0] for s in states])[:, act]
            ext[need > frames_left] = NEG_INF
            dead = np.array([constraint.remaining(s) > frames_left for s in states])

        # The prefix itself: a blank, or a repeat of its last character.
        cont_pb = np.where(dead, NEG_INF, ptot + lp[BLANK])
        cont_pnb = np.where(dead | (lasts == BLANK), NEG_INF, pnb + lp[lasts])

        # Merge extensions that land on an existing prefix into it. Scored from the full frame
        # (not just the preselected classes) so merged beams get their exact score.
        index = {p: i for i, p in enumerate(prefixes)}
        for j, p in enumerate(prefixes):
            if not p or dead[j]:
                continue
            i = index.get(p[:-1])
            c = p[-1]
            usable = lp[c] > NEG_INF if prune_logp is None else lp[c] >= prune_logp
            if i is None or col_of[c] < 0 or not usable:
                continue
            src = pb[i] if lasts[i] == c else ptot[i]
            cont_pnb[j] = np.logaddexp(cont_pnb[j], src + lp[c])
            k = colpos[c]
            if k >= 0:
                ext[i, k] = NEG_INF

        flat = ext.ravel()
        finite = np.flatnonzero(flat > NEG_INF)
        n = min(beam_size, finite.size)
        if n == finite.size:
            top = finite
        else:
            top = finite[np.argpartition(flat[finite], finite.size - n)[finite.size - n:]]
        cont_score = np.logaddexp(cont_pb, cont_pnb)
        scores = np.concatenate([cont_score, flat[top]])
        order = np.argsort(-scores, kind="stable")[:beam_size]
        order = order[scores[order] > NEG_INF]

        new_prefixes: List[Tuple[int, ...]] = []
        new_states: List[Optional[Hashable]] = []
        new_pb = np.empty(order.size)
        new_pnb = np.empty(order.size)
        for m, o in enumerate(order.tolist()):
            if o < B:
                new_prefixes.append(prefixes[o])
                new_states.append(states[o])
                new_pb[m], new_pnb[m] = cont_pb[o], cont_pnb[o]
            else:
                i, k = divmod(int(top[o - B]), K_t)
                new_prefixes.append(prefixes[i] + (int(cols_t[k]),))
                new_states.append(constraint.expand(states[i])[1][int(act[k])]
                                  if constraint is not None else None)
                new_pb[m], new_pnb[m] = NEG_INF, flat[top[o - B]]
        prefixes, states, pb, pnb = new_prefixes, new_states, new_pb, new_pnb
        if not prefixes:
            break

    scores = np.logaddexp(pb, pnb) if len(prefixes) else np.zeros(0)
    beams = [Beam(p, float(s), st) for p, s, st in zip(prefixes, scores, states)]
    if constraint is not None:
        beams = [b for b in beams if constraint.is_final(b.state)]
    beams.sort(key=lambda b: -b.score)
    return beams


def rescore_best(log_probs: np.ndarray, beams: Sequence[Beam]) -> Tuple[Beam, float]:
    """The beam with the highest exact ``log P(labels | x)`` and that value.

    A beam's search score misses the alignments that went through prefixes pruned earlier, so the
    exact forward probability is a better (never worse) criterion for picking among the survivors.
    """
    exact = ctc_log_prob_batch(log_probs, [b.labels for b in beams])
    best = int(np.argmax(exact))
    return beams[best], float(exact[best])


# ----------------------------------------------------------------------------------------------
# Decoders


class Decoder(ABC):
    """Base decoder: input checking, batching and result assembly.

    Args:
        charset: charset (or built-in name) whose class list the model outputs.
        classes: explicit class index -> character list; overrides ``charset``. Use this when the
            model has more classes than the characters you care about.
    """

    name = "decoder"

    def __init__(self, charset: Union[Charset, str, None] = None,
                 classes: Optional[Sequence[str]] = None) -> None:
        self.classes: List[str] = resolve_classes(charset, classes)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def text_of(self, labels: Sequence[int]) -> str:
        return "".join(self.classes[c] for c in labels)

    def canonical(self, text: str) -> str:
        """``text`` spelled as this decoder's outputs are (to score labels against them): the
        identity here; a plate-format decoder drops separators and merges one-class characters."""
        return text

    def decode(self, probs: np.ndarray, log_input: bool = False
               ) -> Union[DecodeResult, List[DecodeResult]]:
        """Decode ``[T, C]`` (one result) or ``[N, T, C]`` (a list of results)."""
        arr = np.asarray(probs)
        if arr.ndim == 3:
            return [self.decode_one(a, log_input) for a in arr]
        if arr.ndim != 2:
            raise DecodeError(f"expected probabilities of shape [T, C] or [N, T, C], "
                              f"got shape {arr.shape}")
        return self.decode_one(arr, log_input)

    __call__ = decode

    def decode_one(self, probs: np.ndarray, log_input: bool = False) -> DecodeResult:
        """Decode one ``[T, C]`` sample."""
        logp, p = to_log_probs(probs, self.num_classes, log_input)
        return self._decode(logp, p)

    @abstractmethod
    def _decode(self, logp: np.ndarray, probs: np.ndarray) -> DecodeResult:
        """Decode checked float64 log-probabilities / probabilities of one sample."""

    def _result_from_alignment(self, logp: np.ndarray, probs: np.ndarray, labels: Sequence[int],
                               log_prob: Optional[float] = None, text: Optional[str] = None
                               ) -> DecodeResult:
        """Result for ``labels`` (column indices of ``logp``) with Viterbi-aligned confidences."""
        positions, _ = ctc_forced_align(logp, labels)
        confs = aligned_confidences(probs, labels, positions)
        if log_prob is None:
            log_prob = ctc_log_prob(logp, labels)
        return DecodeResult(text=self.text_of(labels) if text is None else text,
                            char_confidences=confs, confidence=_mean(confs), log_prob=log_prob,
                            spans=aligned_spans(labels, positions))


def _mean(values: Sequence[float]) -> float:
    return float(sum(values) / len(values)) if values else 0.0


class GreedyDecoder(Decoder):
    """Best-path CTC decoding (what PaddleOCR's ``CTCLabelDecode`` does)."""

    name = "greedy"

    def decode_one(self, probs: np.ndarray, log_input: bool = False) -> DecodeResult:
        """Decode one ``[T, C]`` sample."""
        raw = check_probs(probs, self.num_classes, log_input)
        labels, runs = ctc_greedy(raw)  # argmax is the same on probabilities and log-probs
        # Confidences and log P only need the blank and the decoded classes: converting just
        # those columns keeps greedy cheap on a 6625-class head.
        used, sub = np.unique(np.array([BLANK, *labels], dtype=np.int64), return_inverse=True)
        logp, p = convert_probs(raw, log_input, columns=used)
        sub_labels = [int(k) for k in sub[1:]]
        confs = [float(p[a:b, k].mean()) for k, (a, b) in zip(sub_labels, runs)]
        return DecodeResult(text=self.text_of(labels), char_confidences=confs,
                            confidence=_mean(confs), log_prob=ctc_log_prob(logp, sub_labels),
                            spans=[(int(c), a, b) for c, (a, b) in zip(labels, runs)])

    def _decode(self, logp: np.ndarray, probs: np.ndarray) -> DecodeResult:
        labels, runs = ctc_greedy(logp)
        confs = [float(probs[a:b, c].mean()) for c, (a, b) in zip(labels, runs)]
        return DecodeResult(text=self.text_of(labels), char_confidences=confs,
                            confidence=_mean(confs), log_prob=ctc_log_prob(logp, labels),
                            spans=[(int(c), a, b) for c, (a, b) in zip(labels, runs)])


class BeamSearchDecoder(Decoder):
    """CTC prefix beam search (no grammar): the most probable text summed over alignments.

    Approximate for small beams; exact once ``beam_size`` covers every distinct prefix.
    """

    name = "beam"

    def __init__(self, charset: Union[Charset, str, None] = None,
                 classes: Optional[Sequence[str]] = None, beam_size: int = 16,
                 prune_logp: Optional[float] = None) -> None:
        super().__init__(charset, classes)
        self.beam_size = _check_beam_size(beam_size)
        self.prune_logp = _check_prune(prune_logp)

    def _decode(self, logp: np.ndarray, probs: np.ndarray) -> DecodeResult:
        beams = prefix_beam_search(logp, self.beam_size, self.prune_logp)
        if not beams:  # only possible with T == 0
            return DecodeResult(text="", log_prob=ctc_log_prob(logp, []))
        best, exact = rescore_best(logp, beams)
        return self._result_from_alignment(logp, probs, best.labels, exact)


def _check_beam_size(beam_size: int) -> int:
    if isinstance(beam_size, bool) or not isinstance(beam_size, int) or beam_size < 1:
        raise DecodeError(f"beam_size must be a positive int, got {beam_size!r}")
    return beam_size


def _check_prune(prune_logp: Optional[float]) -> Optional[float]:
    if prune_logp is None:
        return None
    if isinstance(prune_logp, bool) or not isinstance(prune_logp, (int, float)) \
            or math.isnan(prune_logp) or prune_logp > 0:
        raise DecodeError(f"prune_logp must be a log-probability <= 0 or null, got {prune_logp!r}")
    return float(prune_logp)

"""Grammar-constrained CTC decoding: the most probable text under the CTC output that a grammar
accepts.

The search is CTC prefix beam search (:func:`vinocr.decode.ctc.prefix_beam_search`) in which a beam
may only be extended by the classes its grammar state allows, beams that can no longer be completed
in the frames left are dropped, and only beams in a final state are candidates at the end. The
survivors are rescored with the exact forward probability and the best one is returned.

Limits:

- Beam search is approximate. A beam keeps only ``beam_size`` prefixes per frame, so the truly best
  valid sequence can be pruned early when many other prefixes look better at that point; a larger
  beam makes it exact (once the beam holds every alive prefix). In practice the grammar *helps* the
  beam: invalid prefixes never take a slot.
- The result is exact for the class sequence, not merged over classes that spell the same character
  (a model whose class list has duplicate characters keeps them as separate hypotheses).
- ``prune_logp`` can remove the only class that would satisfy the grammar at some frame (e.g. the
  check digit the VIN needs); leave it unset unless speed on huge class counts demands it.
- Plate formats (:class:`~vinocr.decode.constraints.FormatGrammar`): the result names the
  format(s) the text matched and spells it canonically (merged classes such as US ``O``/``0`` as
  the format writes them: ``0``). A separator class of the model (e.g. the space class) is not a
  character of any format; its probability is added to the blank, since a reader that outputs a
  separator has emitted nothing the format reads (otherwise "8584 HH" would lose the space
  frames' mass instead of reading as ``8584HH``).
- When no valid sequence survives (too few frames, or every allowed class pruned) the decoder
  returns ``text=""``, ``satisfied=False`` and the unconstrained greedy text in
  ``fallback_text``. It never returns a text that violates its grammar.
"""
from __future__ import annotations

import logging
from typing import Dict, Hashable, List, Optional, Sequence, Set, Tuple, Union

import numpy as np

from vinocr.charset import Charset
from vinocr.decode.constraints import FormatGrammar, Grammar
from vinocr.decode.ctc import (NEG_INF, DecodeError, DecodeResult, Decoder, _check_beam_size,
                               _check_prune, check_probs, convert_probs, ctc_greedy,
                               prefix_beam_search, rescore_best)

logger = logging.getLogger(__name__)

#: "Not allowed" in the per-column remaining-characters arrays; larger than any frame count.
_NEVER = np.iinfo(np.int64).max // 2


class CompiledGrammar:
    """A character grammar bound to a model's class list (implements ``SearchConstraint``).

    Per grammar state it caches, for every usable class, the successor state and the minimum number
    of characters still needed after it, so the beam search masks a whole ``[B, K]`` matrix with one
    comparison per frame.

    Args:
        grammar: the character-level grammar.
        classes: class index -> character (index 0 is the blank).
        warn: log a warning when some grammar characters have no class.
    """

    def __init__(self, grammar: Grammar, classes: Sequence[str], warn: bool = True) -> None:
        self.grammar = grammar
        self.classes = list(classes)
        cols = [i for i, c in enumerate(self.classes) if i != 0 and c in grammar.alphabet]
        if not cols:
            raise DecodeError(f"none of the {len(self.classes)} classes spells a character that "
                              f"{grammar.describe()} allows")
        present = {self.classes[i] for i in cols}
        missing = sorted(grammar.alphabet - present)
        if missing and warn:
            logger.warning("%s: the class list lacks %d allowed characters (%s); they can never "
                           "be decoded", grammar.describe(), len(missing), "".join(missing))
        self.columns = np.array(cols, dtype=np.int64)
        self._col_chars = [self.classes[i] for i in cols]
        self._cache: Dict[Hashable, Tuple[np.ndarray, List[Optional[Hashable]]]] = {}

    def start(self) -> Hashable:
        return self.grammar.start()

    def expand(self, state: Hashable) -> Tuple[np.ndarray, List[Optional[Hashable]]]:
        got = self._cache.get(state)
        if got is None:
            nxt = self.grammar.next_chars(state)
            states = [nxt.get(c) for c in self._col_chars]
            need = np.array([_NEVER if s is None else self.grammar.min_remaining(s)
                             for s in states], dtype=np.int64)
            got = (need, states)
            self._cache[state] = got
        return got

    def remaining(self, state: Hashable) -> int:
        return self.grammar.min_remaining(state)

    def is_final(self, state: Hashable) -> bool:
        return self.grammar.is_final(state)

    # The class-id view of the grammar, for callers that work with class sequences.

    def _run(self, prefix: Sequence[int]) -> Optional[Hashable]:
        state: Optional[Hashable] = self.start()
        for c in prefix:
            if c <= 0 or c >= len(self.classes):
                return None
            state = self.grammar.step(state, self.classes[c])
            if state is None:
                return None
        return state

    def allowed(self, prefix: Sequence[int]) -> Set[int]:
        """Class ids that may follow the class sequence ``prefix`` (no blanks in it)."""
        state = self._run(prefix)
        if state is None:
            return set()
        _, states = self.expand(state)
        return {int(c) for c, s in zip(self.columns, states) if s is not None}

    def accept(self, prefix: Sequence[int]) -> bool:
        """True when the class sequence ``prefix`` is a complete valid text."""
        state = self._run(prefix)
        return state is not None and self.grammar.is_final(state)


def constrained_beam_search(log_probs: np.ndarray, grammar: CompiledGrammar, beam_size: int = 16,
                            prune_logp: Optional[float] = None
                            ) -> Optional[Tuple[Tuple[int, ...], float]]:
    """Best grammar-accepted class sequence and its exact ``log P``, or None if none survived."""
    beams = prefix_beam_search(log_probs, beam_size, prune_logp, constraint=grammar)
    if not beams:
        return None
    best, exact = rescore_best(log_probs, beams)
    return best.labels, exact


class ConstrainedDecoder(Decoder):
    """Prefix beam search restricted to texts a :class:`~vinocr.decode.constraints.Grammar` accepts.

    Args:
        grammar: e.g. ``VinGrammar(check_digit="auto")`` or ``PlateGrammar(["LLLNNNN"])``.
        charset / classes: the model's class list (see :class:`~vinocr.decode.ctc.Decoder`).
        beam_size: prefixes kept per frame (bigger: slower, closer to exact).
        prune_logp: optional per-frame class pruning threshold (log-probability).
    """

    name = "constrained"

    def __init__(self, grammar: Grammar, charset: Union[Charset, str, None] = None,
                 classes: Optional[Sequence[str]] = None, beam_size: int = 16,
                 prune_logp: Optional[float] = None) -> None:
        super().__init__(charset, classes)
        self.grammar = grammar
        #: The grammar over the model's class ids (``allowed`` / ``accept`` on class sequences).
        self.compiled = CompiledGrammar(grammar, self.classes)
        # The search only ever needs the blank and the classes the grammar can emit, so it runs
        # on that sub-matrix (34 of 6625 columns for a VIN on the PP-OCR head).
        self._used = np.concatenate([[0], self.compiled.columns]).astype(np.int64)
        self._sub_classes = [self.classes[c] for c in self._used]
        self._sub_grammar = CompiledGrammar(grammar, self._sub_classes, warn=False)
        self.beam_size = _check_beam_size(beam_size)
        self.prune_logp = _check_prune(prune_logp)
        ignored = getattr(grammar, "ignored", frozenset())
        #: Classes spelling a separator the grammar ignores: their mass goes to the blank.
        self._fold = np.array([i for i, c in enumerate(self.classes)
                               if i != 0 and c in ignored and c not in grammar.alphabet],
                              dtype=np.int64)

    def decode_one(self, probs: np.ndarray, log_input: bool = False) -> DecodeResult:
        """Decode one ``[T, C]`` sample."""
        raw = check_probs(probs, self.num_classes, log_input)
        logp, p = convert_probs(raw, log_input, columns=self._used)
        if self._fold.size:
            logp, p = self._fold_separators(raw, logp, p, log_input)
        result = self._decode(logp, p)
        if not result.satisfied:
            # Fallback text from the full class set, as an unconstrained greedy decoder reads it.
            result.fallback_text = self.text_of(ctc_greedy(raw)[0])
        return result

    def canonical(self, text: str) -> str:
        """Plate formats: ``text`` without separators, merged classes canonical (``CHICAGO`` ->
        ``CHICAG0`` under ``us``); other grammars: unchanged."""
        if isinstance(self.grammar, FormatGrammar):
            return self.grammar.canonical(text)
        return text

    def _fold_separators(self, raw: np.ndarray, logp: np.ndarray, p: np.ndarray,
                         log_input: bool) -> Tuple[np.ndarray, np.ndarray]:
        """Column 0 (blank) of the sub-matrix plus the ignored separator classes of ``raw``."""
        sep = raw[:, self._fold].astype(np.float64)
        logp, p = logp.copy(), p.copy()
        if log_input:
            logp[:, 0] = np.logaddexp(logp[:, 0], np.logaddexp.reduce(sep, axis=1))
            p[:, 0] = np.minimum(np.exp(logp[:, 0]), 1.0)
        else:
            p[:, 0] = np.minimum(p[:, 0] + sep.sum(axis=1), 1.0)
            with np.errstate(divide="ignore"):
                logp[:, 0] = np.log(p[:, 0])
        return logp, p

    def _decode(self, logp: np.ndarray, probs: np.ndarray) -> DecodeResult:
        """Search on the sub-matrix of used classes; ``logp`` columns follow ``self._used``."""
        result = self._decode_sub(logp, probs)
        # Spans name classes of the full class list, not of the sub-matrix.
        result.spans = [(int(self._used[c]), a, b) for c, a, b in result.spans]
        return result

    def _decode_sub(self, logp: np.ndarray, probs: np.ndarray) -> DecodeResult:
        found = constrained_beam_search(logp, self._sub_grammar, self.beam_size, self.prune_logp)
        if found is not None:
            sub_labels, exact = found
            labels = [int(self._used[c]) for c in sub_labels]
            text = self.text_of(labels)
            # Belt and braces: the search only builds accepted sequences, but the promise "never
            # return an invalid text" is worth one more automaton run.
            if self.grammar.accepts(text):
                if not isinstance(self.grammar, FormatGrammar):
                    return self._result_from_alignment(logp, probs, sub_labels, exact, text=text)
                # Canonical spelling keeps the length, so confidences stay aligned.
                text = self.grammar.canonical(text)
                result = self._result_from_alignment(logp, probs, sub_labels, exact, text=text)
                result.formats = self.grammar.match(text)
                if result.formats:
                    result.format = result.formats[0]
                    result.region = self.grammar.by_name[result.format].region
                return result
            logger.error("%s: search produced %r which the grammar rejects; returning no text",
                         self.grammar.describe(), text)
        return DecodeResult(text="", char_confidences=[], confidence=0.0, log_prob=NEG_INF,
                            satisfied=False, fallback_text=None)

"""Grammars for constrained CTC decoding: VINs and licence-plate formats.

A grammar is a deterministic automaton over characters. The constrained beam search
(:mod:`vinocr.decode.constrained`) keeps one automaton state per beam and only extends a beam by
characters the state allows, so every prefix in the beam can still become a valid text.

Contract for :class:`Grammar` subclasses: :meth:`Grammar.step` must return ``None`` not only for a
character that breaks the rule right now but for every character after which no completion exists
(the state would be a dead end). Then an alive beam is always completable, and a beam never wastes
its slot on a prefix that can only fail at the end.

VIN check digit inside the search
---------------------------------
The check digit sits at position 9 but is a function of all *other* positions, including 10-17
which are read later. :class:`VinGrammar` therefore carries in its state the weighted
transliteration sum of the positions read so far (position 9 excluded, it has weight 0) modulo 11
and the value the chosen position-9 character claims (``X`` = 10). At position 17 only characters
that make ``sum == claimed value (mod 11)`` are allowed. Because position 17 has weight 2 and
``2 * v mod 11`` misses one residue for v in 0..9, some sums after position 16 cannot be completed:
the state's liveness check (memoised over ``(position, sum, claim, required)``) already rejects the
position-16 characters leading there. With ``check_digit="auto"`` the rule is required only for
North American VINs, i.e. when the *first* character is 1-5; the first character read decides it
for the rest of the search.
"""
from __future__ import annotations

import logging
import string
from abc import ABC, abstractmethod
from typing import Dict, FrozenSet, Hashable, List, Optional, Sequence, Set, Tuple, Union

from vinocr.decode.ctc import DecodeError
from vinocr.decode.formats import PlateFormat, resolve_formats
from vinocr.decode.regex import CharSet, Nfa, to_pattern
from vinocr.vin import VIN_ALPHABET, VIN_LENGTH, YEAR_CODES, transliterate

logger = logging.getLogger(__name__)


class GrammarError(DecodeError):
    """A grammar was configured with invalid options (unknown mode, bad plate pattern)."""


class Grammar(ABC):
    """A deterministic automaton over characters (see the module docstring for the contract)."""

    #: Every character the grammar can ever accept.
    alphabet: FrozenSet[str] = frozenset()

    def __init__(self) -> None:
        self._next_cache: Dict[Hashable, Dict[str, Hashable]] = {}

    @abstractmethod
    def start(self) -> Hashable:
        """The state before any character."""

    @abstractmethod
    def step(self, state: Hashable, char: str) -> Optional[Hashable]:
        """The state after ``char``, or None if ``char`` is not allowed (or leads to a dead end)."""

    @abstractmethod
    def is_final(self, state: Hashable) -> bool:
        """True when the characters read so far form a complete valid text."""

    def min_remaining(self, state: Hashable) -> int:
        """A lower bound on the characters still needed to reach a final state (0 if unknown)."""
        return 0

    def describe(self) -> str:
        return type(self).__name__

    # Convenience built on the four methods above.

    def next_chars(self, state: Hashable) -> Dict[str, Hashable]:
        """Allowed characters from ``state`` and their successor states (cached)."""
        out = self._next_cache.get(state)
        if out is None:
            out = {}
            for c in sorted(self.alphabet):
                nxt = self.step(state, c)
                if nxt is not None:
                    out[c] = nxt
            self._next_cache[state] = out
        return out

    def run(self, text: str) -> Optional[Hashable]:
        """The state after reading ``text``, or None if some character is not allowed."""
        state: Optional[Hashable] = self.start()
        for c in text:
            state = self.step(state, c)
            if state is None:
                return None
        return state

    def accepts(self, text: str) -> bool:
        """True when ``text`` is a complete valid text of this grammar."""
        state = self.run(text)
        return state is not None and self.is_final(state)

    def allowed_chars(self, prefix: str) -> Set[str]:
        """Characters that may follow ``prefix`` (empty if ``prefix`` itself is not allowed)."""
        state = self.run(prefix)
        return set() if state is None else set(self.next_chars(state))


# ----------------------------------------------------------------------------------------------
# VIN

_VIN_WEIGHTS = (8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2)
_CHECK_POS = 8  # 0-based position 9
_YEAR_POS = 9  # 0-based position 10
_CHECK_CHARS = "0123456789X"
_NORTH_AMERICA = "12345"
CHECK_DIGIT_MODES = ("auto", "always", "never")

# State: (position, weighted sum mod 11 of positions != 9, claimed check value or -1,
#         check required: True / False / None = not decided yet (auto mode before position 1)).
VinState = Tuple[int, int, int, Optional[bool]]


class VinGrammar(Grammar):
    """17 VIN characters (no I, O, Q) with an optional check digit and model-year rule.

    Args:
        check_digit: ``auto`` (required when the first character is 1-5, North America),
            ``always`` or ``never``.
        year_rule: position 10 must be a model-year code (no U, Z, 0).
    """

    alphabet = frozenset(VIN_ALPHABET)

    def __init__(self, check_digit: str = "auto", year_rule: bool = False) -> None:
        super().__init__()
        if check_digit not in CHECK_DIGIT_MODES:
            raise GrammarError(f"check_digit: unknown mode {check_digit!r} "
                               f"(valid: {', '.join(CHECK_DIGIT_MODES)})")
        self.check_digit = check_digit
        self.year_rule = bool(year_rule)
        self._values = {c: transliterate(c) for c in VIN_ALPHABET}
        self._live: Dict[VinState, bool] = {}

    def describe(self) -> str:
        return f"vin(check_digit={self.check_digit}, year_rule={self.year_rule})"

    def start(self) -> VinState:
        required = {"auto": None, "always": True, "never": False}[self.check_digit]
        return (0, 0, -1, required)

    def _raw_step(self, state: VinState, char: str) -> Optional[VinState]:
        pos, total, claim, required = state
        if pos >= VIN_LENGTH or char not in self.alphabet:
            return None
        if required is None:
            required = char in _NORTH_AMERICA
        if pos == _YEAR_POS and self.year_rule and char not in YEAR_CODES:
            return None
        if pos == _CHECK_POS and required:
            if char not in _CHECK_CHARS:
                return None
            claim = 10 if char == "X" else int(char)
        elif required:
            total = (total + self._values[char] * _VIN_WEIGHTS[pos]) % 11
        # Without the check rule the sum is irrelevant; keeping it 0 keeps the state space small.
        return (pos + 1, total, claim, required)

    def _is_live(self, state: VinState) -> bool:
        """Can ``state`` still reach a complete valid VIN? Memoised: at most a few thousand
        states (position x sum x claim) are ever visited."""
        known = self._live.get(state)
        if known is not None:
            return known
        pos, total, claim, required = state
        if pos == VIN_LENGTH:
            live = not required or total == claim
        else:
            live = False
            for c in VIN_ALPHABET:
                nxt = self._raw_step(state, c)
                if nxt is not None and self._is_live(nxt):
                    live = True
                    break
        self._live[state] = live
        return live

    def step(self, state: Hashable, char: str) -> Optional[VinState]:
        nxt = self._raw_step(state, char)  # type: ignore[arg-type]
        if nxt is None or not self._is_live(nxt):
            return None
        return nxt

    def is_final(self, state: Hashable) -> bool:
        return state[0] == VIN_LENGTH  # type: ignore[index]

    def min_remaining(self, state: Hashable) -> int:
        return VIN_LENGTH - state[0]  # type: ignore[index]


# ----------------------------------------------------------------------------------------------
# Plate formats


class FormatGrammar(Grammar):
    """Texts of one or more plate formats (:mod:`vinocr.decode.formats`) as a reader outputs them.

    The formats' regexes are compiled into one tagged NFA (:class:`vinocr.decode.regex.Nfa`) with
    the separators deleted (they are printed, not read) and each format's merged characters made
    interchangeable. A state is the set of live NFA states after the prefix, numbered as met (the
    subset construction done lazily), so only the DFA states a search visits are built. Dead ends
    never appear: NFA states that cannot reach an accepting state are dropped from every set, so
    an empty set (``None``) is exactly "no completion exists", and :meth:`min_remaining` is exact.

    Args:
        formats: format or group names (``["eu_de", "us"]``) and/or :class:`PlateFormat` records.
            A text accepted by several formats is reported with all of them, in this order.
    """

    def __init__(self, formats: Union[str, Sequence[Union[str, PlateFormat]]]) -> None:
        super().__init__()
        if isinstance(formats, (str, PlateFormat)):
            formats = [formats]
        chosen: Dict[str, PlateFormat] = {}
        for f in formats:
            for fmt in ([f] if isinstance(f, PlateFormat) else resolve_formats([f])):
                chosen.setdefault(fmt.name, fmt)
        if not chosen:
            raise GrammarError("formats: need at least one plate format")
        self.formats: Tuple[PlateFormat, ...] = tuple(chosen.values())
        #: The chosen formats by name (e.g. to look up a matched format's region).
        self.by_name: Dict[str, PlateFormat] = dict(chosen)
        self.nfa = Nfa([(f.name, f.read_ast) for f in self.formats])
        first = self.nfa.start_set()
        if not first:
            raise GrammarError(f"formats: {self.describe()} accept no text")
        self._sets: List[FrozenSet[int]] = []
        self._ids: Dict[FrozenSet[int], int] = {}
        self._step_cache: Dict[Tuple[int, str], Optional[int]] = {}
        self._start = self._intern(first)
        live = {s for s, d in enumerate(self.nfa.dist) if d is not None}
        self.alphabet = frozenset().union(*(chars for s in live for chars, t in self.nfa.edges[s]
                                            if t in live))
        #: Separators of the chosen formats that no format reads as a character: a constrained
        #: decoder folds their probability into the blank (a separator class emits nothing).
        self.ignored: FrozenSet[str] = frozenset(
            "".join(f.separators for f in self.formats)) - self.alphabet

    def _intern(self, states: FrozenSet[int]) -> int:
        got = self._ids.get(states)
        if got is None:
            got = self._ids[states] = len(self._sets)
            self._sets.append(states)
        return got

    def describe(self) -> str:
        names = [f.name for f in self.formats]
        if len(names) > 6:
            names = [*names[:5], f"... {len(names)} formats"]
        return f"formats({', '.join(names)})"

    def start(self) -> int:
        return self._start

    def step(self, state: Hashable, char: str) -> Optional[int]:
        key = (state, char)
        if key in self._step_cache:
            return self._step_cache[key]
        nxt = self.nfa.step(self._sets[state], char)  # type: ignore[index]
        out = self._intern(nxt) if nxt else None
        self._step_cache[key] = out  # type: ignore[index]
        return out

    def is_final(self, state: Hashable) -> bool:
        return bool(self.nfa.accepted_tags(self._sets[state]))  # type: ignore[index]

    def min_remaining(self, state: Hashable) -> int:
        return self.nfa.remaining(self._sets[state])  # type: ignore[index]

    @property
    def num_states(self) -> int:
        """DFA states built so far (grows as decoding visits new prefixes)."""
        return len(self._sets)

    def formats_of(self, state: Hashable) -> Tuple[PlateFormat, ...]:
        """The formats a final ``state`` completes (empty when it is not final)."""
        tags = self.nfa.accepted_tags(self._sets[state])  # type: ignore[index]
        return tuple(self.formats[k] for k in tags)

    def match(self, text: str) -> Tuple[str, ...]:
        """Names of the formats that accept ``text`` (as read: no separators), in order."""
        state = self.run(text)
        return () if state is None else tuple(f.name for f in self.formats_of(state))

    def canonical(self, text: str) -> str:
        """``text`` as the first matching format spells it (separators dropped, merged characters
        canonical); with no match, only the separators of every chosen format are dropped."""
        for fmt in self.formats:
            candidate = fmt.canonical(text)
            if fmt.name in self.match(candidate):
                return candidate
        seps = set("".join(f.separators for f in self.formats))
        return "".join(c for c in text if c not in seps)


# ----------------------------------------------------------------------------------------------
# Plate layouts as slot patterns (the special case of formats that configs have always used)

SLOT_HELP = "L letter, N digit, A letter or digit"
DEFAULT_PLATE_PATTERNS = ("LLLNNNN", "LLLNLNN")  # Brazilian grey plates and Mercosur


class PlateGrammar(FormatGrammar):
    """Texts that fully match one of several slot patterns (``L`` letter, ``N`` digit, ``A``
    either), e.g. ``LLLNNNN`` and ``LLLNLNN``: a :class:`FormatGrammar` with one format per
    pattern, named by the pattern (so the decoder reports ``format="LLLNLNN"``).

    Args:
        patterns: one pattern or several; any length, any mix of slots.
        letters: characters an ``L`` slot accepts (default A-Z).
        digits: characters an ``N`` slot accepts (default 0-9).
    """

    def __init__(self, patterns: Union[str, Sequence[str]] = DEFAULT_PLATE_PATTERNS,
                 letters: str = string.ascii_uppercase, digits: str = string.digits) -> None:
        if isinstance(patterns, str):
            patterns = [patterns]
        if not patterns:
            raise GrammarError("patterns: need at least one plate pattern")
        clean: List[str] = []
        for p in patterns:
            if not isinstance(p, str) or not p:
                raise GrammarError(f"patterns: {p!r} is not a non-empty string of slots "
                                   f"({SLOT_HELP})")
            bad = sorted(set(p) - set("LNA"))
            if bad:
                raise GrammarError(f"patterns: {p!r} has unknown slot {bad[0]!r} ({SLOT_HELP})")
            if p not in clean:
                clean.append(p)
        if not letters or not digits:
            raise GrammarError("patterns: letters and digits must not be empty")
        self.patterns: Tuple[str, ...] = tuple(clean)
        slots = {"L": frozenset(letters), "N": frozenset(digits),
                 "A": frozenset(letters) | frozenset(digits)}
        super().__init__([PlateFormat(p, None, "".join(to_pattern(CharSet(slots[s])) for s in p))
                          for p in self.patterns])

    def describe(self) -> str:
        return f"plate({'|'.join(self.patterns)})"

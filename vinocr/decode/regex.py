"""A small regular-expression compiler for plate grammars: pattern -> AST -> NFA, searched as a DFA.

Why not :mod:`re`: the constrained CTC search needs the *automaton* (which characters may follow a
prefix, how many characters are still needed, whether a prefix can still be completed), and
:mod:`re` only answers "does this whole string match". The supported syntax is a strict subset of
Python's, so every pattern means the same to :func:`re.fullmatch` (the tests check it):

- literals, including any Unicode character (``京``, ``Ä``); ``\\`` escapes a metacharacter;
- classes ``[A-HJ-NP-Z0-9]`` (ranges, escapes, ``\\d`` inside or outside a class);
- ``?``, ``*``, ``+``, ``{m}``, ``{m,}``, ``{m,n}`` (one quantifier per atom: group to nest);
- alternation ``|`` and groups ``( )`` / ``(?: )``.

Not supported (an error names the position): ``.``, ``^``, ``$``, negated classes ``[^...]``,
lazy or possessive quantifiers, backreferences, lookarounds and other escapes (``\\w``, ``\\s``):
plate formats never need them, and ``.`` or ``[^...]`` would need a universe of characters.

:class:`Nfa` is a Thompson automaton over a union of tagged patterns. It never builds the whole
DFA: :class:`~vinocr.decode.constraints.FormatGrammar` walks NFA state *sets* lazily (the subset
construction, one step at a time) because the union of dozens of formats has many DFA states of
which a search visits a handful. Liveness and the minimum number of characters to a final state are
computed once on the NFA, which is exact for sets too (a set is alive when one member is; its
minimum is the members' minimum).
"""
from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass
from typing import Callable, Dict, FrozenSet, Iterable, List, Optional, Sequence, Tuple, Union

from vinocr.decode.ctc import DecodeError

#: Largest NFA built from one set of patterns (counted repetitions are expanded into copies).
MAX_NFA_STATES = 200_000
_META = set(".^$*+?{}[]\\|()")
_DIGITS = frozenset("0123456789")


class RegexError(DecodeError):
    """A plate-format pattern uses syntax the compiler does not support, or is malformed."""


# ----------------------------------------------------------------------------------------------
# AST


@dataclass(frozen=True)
class CharSet:
    """One character from ``chars``."""

    chars: FrozenSet[str]


@dataclass(frozen=True)
class Concat:
    parts: Tuple["Node", ...]


@dataclass(frozen=True)
class Alt:
    options: Tuple["Node", ...]


@dataclass(frozen=True)
class Repeat:
    """``node`` repeated ``low`` to ``high`` times (``high`` None: unbounded)."""

    node: "Node"
    low: int
    high: Optional[int]


Node = Union[CharSet, Concat, Alt, Repeat]
EMPTY = Concat(())


class _Parser:
    def __init__(self, pattern: str) -> None:
        self.p = pattern
        self.i = 0

    def fail(self, what: str, at: Optional[int] = None) -> RegexError:
        pos = self.i if at is None else at
        return RegexError(f"pattern {self.p!r}: {what} at position {pos}")

    def peek(self) -> Optional[str]:
        return self.p[self.i] if self.i < len(self.p) else None

    def parse(self) -> Node:
        node = self.alt()
        if self.i != len(self.p):
            raise self.fail(f"unexpected {self.p[self.i]!r}")
        return node

    def alt(self) -> Node:
        options = [self.concat()]
        while self.peek() == "|":
            self.i += 1
            options.append(self.concat())
        return options[0] if len(options) == 1 else Alt(tuple(options))

    def concat(self) -> Node:
        parts: List[Node] = []
        while self.peek() is not None and self.peek() not in "|)":
            parts.append(self.repeat())
        return parts[0] if len(parts) == 1 else Concat(tuple(parts))

    def repeat(self) -> Node:
        start = self.i
        node = self.atom()
        quant = self.quantifier()
        if quant is None:
            return node
        if self.peek() is not None and self.peek() in "?*+{":
            raise self.fail("a second quantifier (lazy/possessive or nested) is not supported; "
                            "use a group")
        low, high = quant
        if high is not None and high < low:
            raise self.fail(f"repeat {{{low},{high}}} has max < min", start)
        return Repeat(node, low, high)

    def quantifier(self) -> Optional[Tuple[int, Optional[int]]]:
        c = self.peek()
        if c == "?":
            self.i += 1
            return 0, 1
        if c == "*":
            self.i += 1
            return 0, None
        if c == "+":
            self.i += 1
            return 1, None
        if c != "{":
            return None
        end = self.p.find("}", self.i)
        body = self.p[self.i + 1:end] if end > 0 else ""
        low_s, comma, high_s = body.partition(",")
        if end < 0 or not low_s.isdigit() or (high_s and not high_s.isdigit()):
            raise self.fail("'{' must start a repeat {m}, {m,} or {m,n} (escape a literal '{')")
        self.i = end + 1
        low = int(low_s)
        return low, (low if not comma else (int(high_s) if high_s else None))

    def atom(self) -> Node:
        c = self.peek()
        if c == "(":
            self.i += 1
            if self.p.startswith("?:", self.i):
                self.i += 2
            elif self.peek() == "?":
                raise self.fail("only plain '( )' and '(?: )' groups are supported")
            node = self.alt()
            if self.peek() != ")":
                raise self.fail("missing ')'")
            self.i += 1
            return node
        if c == "[":
            return self.char_class()
        if c == "\\":
            return CharSet(self.escape(in_class=False))
        if c in (".", "^", "$"):
            raise self.fail(f"{c!r} is not supported (spell the characters out)")
        if c in ("*", "+", "?", "{"):
            raise self.fail(f"nothing to repeat before {c!r}")
        if c in ("]", "}"):
            raise self.fail(f"unescaped {c!r}")
        assert c is not None
        self.i += 1
        return CharSet(frozenset(c))

    def escape(self, in_class: bool) -> FrozenSet[str]:
        self.i += 1
        c = self.peek()
        if c is None:
            raise self.fail("pattern ends with '\\'")
        self.i += 1
        if c == "d":
            return _DIGITS
        if c.isalnum() or c == "_":
            raise self.fail(f"escape '\\{c}' is not supported", self.i - 2)
        return frozenset(c)

    def char_class(self) -> Node:
        start = self.i
        self.i += 1
        if self.peek() == "^":
            raise self.fail("negated classes [^...] are not supported (list the characters)")
        chars: set = set()
        first = True
        while True:
            c = self.peek()
            if c is None:
                raise self.fail("missing ']'", start)
            if c == "]" and not first:
                self.i += 1
                break
            if c == "]" or c == "[":
                raise self.fail(f"escape {c!r} inside a class")
            first = False
            if c == "\\":
                got = self.escape(in_class=True)
                if len(got) > 1:  # \d cannot start a range
                    chars |= got
                    continue
                lo = next(iter(got))
            else:
                lo = c
                self.i += 1
            if self.peek() == "-" and self.i + 1 < len(self.p) and self.p[self.i + 1] != "]":
                self.i += 1
                if self.peek() == "\\":
                    got = self.escape(in_class=True)
                    if len(got) > 1:
                        raise self.fail("a range cannot end in '\\d'")
                    hi = next(iter(got))
                else:
                    hi = self.p[self.i]
                    self.i += 1
                if ord(hi) < ord(lo):
                    raise self.fail(f"bad range {lo}-{hi}")
                chars.update(chr(o) for o in range(ord(lo), ord(hi) + 1))
            else:
                chars.add(lo)
        return CharSet(frozenset(chars))


def parse(pattern: str) -> Node:
    """The AST of ``pattern`` (see the module docstring for the syntax)."""
    if not isinstance(pattern, str):
        raise RegexError(f"pattern must be a string, got {pattern!r}")
    return _Parser(pattern).parse()


# ----------------------------------------------------------------------------------------------
# AST transformations and helpers


def map_sets(node: Node, fn: Callable[[FrozenSet[str]], Node]) -> Node:
    """A copy of ``node`` with every character set replaced by ``fn(chars)``."""
    if isinstance(node, CharSet):
        return fn(node.chars)
    if isinstance(node, Concat):
        return Concat(tuple(map_sets(p, fn) for p in node.parts))
    if isinstance(node, Alt):
        return Alt(tuple(map_sets(o, fn) for o in node.options))
    return Repeat(map_sets(node.node, fn), node.low, node.high)


def drop_chars(node: Node, ignored: Iterable[str]) -> Node:
    """The language with the ``ignored`` characters deleted from every string (a homomorphic
    image, still regular): separators printed on a plate that the reader does not output."""
    gone = frozenset(ignored)

    def fn(chars: FrozenSet[str]) -> Node:
        keep = chars - gone
        if keep == chars:
            return CharSet(chars)
        if not keep:
            return EMPTY
        return Alt((CharSet(keep), EMPTY))

    return map_sets(node, fn) if gone else node


def merge_chars(node: Node, groups: Sequence[str]) -> Node:
    """Every set that holds one character of a group holds the whole group (characters that are
    one class on the plate, e.g. ``"0O"``)."""
    closed = [frozenset(g) for g in groups]

    def fn(chars: FrozenSet[str]) -> Node:
        out = set(chars)
        for g in closed:
            if out & g:
                out |= g
        return CharSet(frozenset(out))

    return map_sets(node, fn) if closed else node


def chars_of(node: Node) -> FrozenSet[str]:
    """Every character the pattern mentions."""
    if isinstance(node, CharSet):
        return node.chars
    if isinstance(node, Repeat):
        return chars_of(node.node)
    items = node.parts if isinstance(node, Concat) else node.options
    return frozenset().union(*(chars_of(n) for n in items))


def to_pattern(node: Node) -> str:
    """Python ``re`` syntax for ``node`` (used to check the compiler against :mod:`re`)."""
    if isinstance(node, CharSet):
        chars = sorted(node.chars)
        if len(chars) == 1:
            return _escape(chars[0])
        return "[" + "".join(_escape(c, in_class=True) for c in chars) + "]"
    if isinstance(node, Concat):
        return "".join(_group(p) if isinstance(p, Alt) else to_pattern(p) for p in node.parts)
    if isinstance(node, Alt):
        return "|".join(to_pattern(o) for o in node.options)
    inner = to_pattern(node.node)
    if not isinstance(node.node, CharSet):
        inner = f"(?:{inner})"
    high = "" if node.high is None else str(node.high)
    if node.low == node.high:
        return f"{inner}{{{node.low}}}"
    return f"{inner}{{{node.low},{high}}}"


def _group(node: Node) -> str:
    return f"(?:{to_pattern(node)})"


def _escape(c: str, in_class: bool = False) -> str:
    return "\\" + c if c in _META or (in_class and c in "-^") else c


def sample(node: Node, rng: random.Random, max_extra: int = 3,
           optional_p: Optional[Callable[[Repeat], Optional[float]]] = None) -> str:
    """A random string of the language (unbounded repeats stop after ``max_extra`` more).

    ``optional_p(repeat)`` may give the probability of taking an optional element (a ``{0,1}``
    repeat) instead of the even chance: plate synthesis prints a separator that labels may omit.
    Returning None keeps the even chance for that element.
    """
    if isinstance(node, CharSet):
        return rng.choice(sorted(node.chars))
    if isinstance(node, Concat):
        return "".join(sample(p, rng, max_extra, optional_p) for p in node.parts)
    if isinstance(node, Alt):
        return sample(rng.choice(node.options), rng, max_extra, optional_p)
    if optional_p is not None and node.low == 0 and node.high == 1:
        p = optional_p(node)
        if p is not None:
            return sample(node.node, rng, max_extra, optional_p) if rng.random() < p else ""
    high = node.low + max_extra if node.high is None else node.high
    return "".join(sample(node.node, rng, max_extra, optional_p)
                   for _ in range(rng.randint(node.low, high)))


# ----------------------------------------------------------------------------------------------
# NFA


class Nfa:
    """Thompson NFA of the union of tagged ASTs, with per-state liveness and distance to accept.

    Args:
        patterns: ``(tag, ast)`` pairs; a string reaching the end of pattern ``i`` is accepted with
            tag ``i``'s index.
    """

    def __init__(self, patterns: Sequence[Tuple[str, Node]]) -> None:
        self.tags: List[str] = [t for t, _ in patterns]
        self.eps: List[List[int]] = []
        self.edges: List[List[Tuple[FrozenSet[str], int]]] = []
        self.accept_tag: Dict[int, int] = {}
        self.start = self._new()
        for k, (tag, ast) in enumerate(patterns):
            s, e = self._build(ast, tag)
            self.eps[self.start].append(s)
            self.accept_tag[e] = k
        self.alphabet: FrozenSet[str] = frozenset().union(
            *(cs for out in self.edges for cs, _ in out))
        self._analyse()

    def _new(self) -> int:
        if len(self.eps) >= MAX_NFA_STATES:
            raise RegexError(f"patterns expand to more than {MAX_NFA_STATES} automaton states; "
                             "use smaller repeat counts")
        self.eps.append([])
        self.edges.append([])
        return len(self.eps) - 1

    def _build(self, node: Node, tag: str) -> Tuple[int, int]:
        if isinstance(node, CharSet):
            s, e = self._new(), self._new()
            if node.chars:
                self.edges[s].append((node.chars, e))
            return s, e
        if isinstance(node, Concat):
            s = e = self._new()
            for part in node.parts:
                ps, pe = self._build(part, tag)
                self.eps[e].append(ps)
                e = pe
            return s, e
        if isinstance(node, Alt):
            s, e = self._new(), self._new()
            for opt in node.options:
                os_, oe = self._build(opt, tag)
                self.eps[s].append(os_)
                self.eps[oe].append(e)
            return s, e
        s = e = self._new()
        for _ in range(node.low):
            ps, pe = self._build(node.node, tag)
            self.eps[e].append(ps)
            e = pe
        if node.high is None:
            ps, pe = self._build(node.node, tag)
            self.eps[e].append(ps)
            self.eps[pe].append(ps)
            end = self._new()
            self.eps[e].append(end)
            self.eps[pe].append(end)
            return s, end
        end = self._new()
        for _ in range(node.high - node.low):
            self.eps[e].append(end)
            ps, pe = self._build(node.node, tag)
            self.eps[e].append(ps)
            e = pe
        self.eps[e].append(end)
        return s, end

    def _analyse(self) -> None:
        """``dist[s]``: fewest characters from ``s`` to an accepting state (None: dead), by a 0-1
        breadth-first search on the reversed graph; ``closure[s]``: live states reachable from
        ``s`` by epsilon moves."""
        n = len(self.eps)
        rev: List[List[Tuple[int, int]]] = [[] for _ in range(n)]
        for s in range(n):
            for t in self.eps[s]:
                rev[t].append((s, 0))
            for _, t in self.edges[s]:
                rev[t].append((s, 1))
        dist: List[Optional[int]] = [None] * n
        queue: deque = deque()
        for s in self.accept_tag:
            dist[s] = 0
            queue.append(s)
        while queue:
            t = queue.popleft()
            for s, w in rev[t]:
                d = dist[t] + w  # type: ignore[operator]
                if dist[s] is None or d < dist[s]:  # type: ignore[operator]
                    dist[s] = d
                    if w == 0:
                        queue.appendleft(s)
                    else:
                        queue.append(s)
        self.dist = dist
        self.closure: List[FrozenSet[int]] = []
        for s in range(n):
            seen = {s}
            stack = [s]
            while stack:
                for t in self.eps[stack.pop()]:
                    if t not in seen:
                        seen.add(t)
                        stack.append(t)
            self.closure.append(frozenset(t for t in seen if dist[t] is not None))

    def start_set(self) -> FrozenSet[int]:
        return self.closure[self.start]

    def step(self, states: FrozenSet[int], char: str) -> FrozenSet[int]:
        """The live states after reading ``char`` from the set ``states`` (empty: no way on)."""
        out: set = set()
        for s in states:
            for chars, t in self.edges[s]:
                if char in chars:
                    out |= self.closure[t]
        return frozenset(out)

    def remaining(self, states: FrozenSet[int]) -> int:
        return min(self.dist[s] for s in states)  # type: ignore[type-var]

    def accepted_tags(self, states: FrozenSet[int]) -> Tuple[int, ...]:
        return tuple(sorted(self.accept_tag[s] for s in states if s in self.accept_tag))

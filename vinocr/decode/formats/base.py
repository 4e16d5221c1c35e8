"""Plate formats as data: the record, the registry and the named groups (presets).

A :class:`PlateFormat` is a regular expression over the plate *as printed* (separators included
where they appear), plus which printed characters are separators that a reader does not output and
which characters are one class on that plate. Region files (``br.py``, ``cn.py``, ...) register
their formats and groups here when :mod:`vinocr.decode.formats` is imported; a plugin can register
more with :func:`register_format` / :func:`register_group` before building a decoder.

Names: a format name (``eu_de``, ``us_ca``, ``eu_nl_sc6``) names one layout; a group name
(``eu``, ``us``, ``eu_nl``, ``cn``, ``all``) names several. Both are accepted wherever formats are
listed (``Decode.formats``), and a decoder reports the format (never the group) that matched.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

from vinocr.decode import regex
from vinocr.decode.ctc import DecodeError


#: Group of every registered format, fallbacks last (computed when asked, so plugins count).
ALL = "all"


class FormatError(DecodeError):
    """A plate format name is unknown, or a format record is malformed."""


@dataclass(frozen=True)
class PlateFormat:
    """One plate layout.

    Attributes:
        name: registry key, a lower-case identifier (``eu_de``); unregistered formats (slot
            patterns such as ``LLLNNNN``) may use any name.
        region: ISO 3166 code of the issuing country or subdivision (``DE``, ``US-CA``); None for
            region-free formats (``generic``).
        regex: the plate as printed, in the syntax of :mod:`vinocr.decode.regex` (a subset of
            Python's ``re``), upper case, separators written where they appear.
        separators: printed characters that are not read (space, hyphen, dot, middle dot ...).
        merge: groups of characters that are one class on this plate (``"0O"``: the plate does not
            distinguish O from 0); the first character of a group is the canonical spelling.
        description: one line for humans (and where the regex simplifies the real rule).
        examples: plates as printed that must match (checked by the tests).
        fallback: a permissive catch-all (listed last in ``all`` so specific formats win).
    """

    name: str
    region: Optional[str]
    regex: str
    separators: str = ""
    merge: Tuple[str, ...] = ()
    description: str = ""
    examples: Tuple[str, ...] = ()
    fallback: bool = False
    _canon: Dict[str, str] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise FormatError(f"format name {self.name!r}: expected a non-empty string")
        seen: Dict[str, str] = {}
        for group in self.merge:
            if len(group) < 2:
                raise FormatError(f"format {self.name}: merge group {group!r} needs at least "
                                  "two characters")
            for c in group:
                if c in seen:
                    raise FormatError(f"format {self.name}: {c!r} is in two merge groups")
                seen[c] = group[0]
        bad = set(self.separators) & set(seen)
        if bad:
            raise FormatError(f"format {self.name}: {''.join(sorted(bad))!r} cannot be both a "
                              "separator and a merged character")
        self._canon.update(seen)
        self.printed_ast  # parse now: a bad regex fails at registration, naming the format

    @functools.cached_property
    def printed_ast(self) -> regex.Node:
        """The regex as written (separators included)."""
        try:
            return regex.parse(self.regex)
        except regex.RegexError as exc:
            raise FormatError(f"format {self.name}: {exc}") from None

    @functools.cached_property
    def read_ast(self) -> regex.Node:
        """The language a reader outputs: separators deleted, merged characters interchangeable."""
        return regex.merge_chars(regex.drop_chars(self.printed_ast, self.separators), self.merge)

    def canonical(self, text: str) -> str:
        """``text`` without separators and with merged characters in their canonical spelling
        (the form to compare in metrics; decoders return it)."""
        return "".join(self._canon.get(c, c) for c in text if c not in self.separators)


_FORMATS: Dict[str, PlateFormat] = {}
_GROUPS: Dict[str, Tuple[str, ...]] = {}


def register_format(fmt: PlateFormat, replace: bool = False) -> PlateFormat:
    """Add ``fmt`` to the registry (``replace`` to overwrite a format of the same name)."""
    if fmt.name != fmt.name.lower() or not fmt.name.isidentifier():
        raise FormatError(f"format name {fmt.name!r}: registered names are lower-case "
                          "identifiers (e.g. eu_de)")
    if fmt.name in _GROUPS or fmt.name == ALL:
        raise FormatError(f"format {fmt.name!r}: the name is already a group")
    if fmt.name in _FORMATS and not replace:
        raise FormatError(f"format {fmt.name!r} is already registered")
    _FORMATS[fmt.name] = fmt
    return fmt


def register_group(name: str, members: Sequence[str], replace: bool = False) -> None:
    """A preset name for several formats or groups (expanded in order, each format once)."""
    if name in _FORMATS or name == ALL:
        raise FormatError(f"group {name!r}: the name is already a format")
    if name in _GROUPS and not replace:
        raise FormatError(f"group {name!r} is already registered")
    unknown = [m for m in members if m not in _FORMATS and m not in _GROUPS]
    if unknown:
        raise FormatError(f"group {name!r}: unknown member {unknown[0]!r}")
    _GROUPS[name] = tuple(members)


def list_formats() -> List[str]:
    """Registered format names, in registration order."""
    return list(_FORMATS)


def list_groups() -> List[str]:
    """Group (preset) names, ``all`` included."""
    return [*_GROUPS, ALL]


def group_members(name: str) -> Optional[Tuple[str, ...]]:
    """The members (format or group names) of the group ``name``; None when it is not a group
    (``all`` is not a stored group either: it is every format)."""
    return _GROUPS.get(name)


def get_format(name: str) -> PlateFormat:
    """The format called ``name`` (not a group)."""
    try:
        return _FORMATS[name]
    except KeyError:
        raise FormatError(_unknown(name)) from None


def _unknown(name: object) -> str:
    return (f"unknown plate format {name!r} (groups: {', '.join(list_groups())}; formats: "
            f"{', '.join(_FORMATS)})")


def _all() -> Tuple[str, ...]:
    specific = [n for n, f in _FORMATS.items() if not f.fallback]
    return (*specific, *(n for n, f in _FORMATS.items() if f.fallback))


def resolve_formats(names: Union[str, Iterable[str]]) -> Tuple[PlateFormat, ...]:
    """Formats named by ``names`` (format or group names), groups expanded in order, duplicates
    dropped. Raises :class:`FormatError` naming the unknown name and the valid ones."""
    if isinstance(names, str):
        names = [names]
    out: Dict[str, PlateFormat] = {}

    def add(name: object, depth: int = 0) -> None:
        if not isinstance(name, str):
            raise FormatError(_unknown(name))
        if name == ALL:
            for n in _all():
                out.setdefault(n, _FORMATS[n])
        elif name in _GROUPS:
            if depth > 20:
                raise FormatError(f"group {name!r} includes itself")
            for m in _GROUPS[name]:
                add(m, depth + 1)
        elif name in _FORMATS:
            out.setdefault(name, _FORMATS[name])
        else:
            raise FormatError(_unknown(name))

    for n in names:
        add(n)
    if not out:
        raise FormatError("no plate format given (e.g. [eu_de, eu_fr], us, all)")
    return tuple(out.values())

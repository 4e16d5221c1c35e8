"""Plate formats as data: the regex compiler against ``re``, the registry, FormatGrammar, and the
format-constrained CTC search against brute-force enumeration (as the VIN/slot tests do)."""
from __future__ import annotations

import itertools
import math
import random
import re
import zlib
from collections import defaultdict
from typing import Dict, List, Sequence, Tuple

import numpy as np
import pytest

from vinocr.charset import load_charset
from vinocr.config.schema import validate_config
from vinocr.decode import (ConstrainedDecoder, FormatGrammar, PlateGrammar, build_decoder,
                           regex as rx)
from vinocr.decode.formats import (FormatError, PlateFormat, get_format, list_formats,
                                   register_format, register_group, resolve_formats)
from vinocr.decode.formats.cn import PROVINCES, SPECIAL_SIGNS
from vinocr.errors import ConfigError, VinocrError

from test_decode import brute_force, char_frame, random_probs, set_frame, spell, text_of

PLATE_CLASSES = load_charset("plate").class_list()


def printed_only(fmt: PlateFormat) -> PlateFormat:
    """The format with nothing ignored or merged: its grammar must be exactly ``re``'s regex."""
    return PlateFormat(fmt.name, fmt.region, fmt.regex)


def near_misses(s: str, universe: Sequence[str], rng: random.Random, n: int) -> List[str]:
    """Strings one edit away from ``s`` (substitution, insertion, deletion)."""
    out = []
    for _ in range(n):
        i = rng.randrange(len(s) + 1)
        op = rng.randrange(3)
        c = rng.choice(universe)
        if op == 0 and i < len(s):
            out.append(s[:i] + c + s[i + 1:])
        elif op == 1:
            out.append(s[:i] + c + s[i:])
        else:
            out.append(s[:i] + s[i + 1:])
    return out


def probe_strings(fmt: PlateFormat, seed: int, n: int = 60) -> List[str]:
    """Members of the printed language, their near misses, and random strings."""
    rng = random.Random(seed)
    universe = sorted(rx.chars_of(fmt.printed_ast) | set(fmt.separators) | set("AZ09"))
    members = [rx.sample(fmt.printed_ast, rng) for _ in range(n)]
    strings = list(members)
    for m in members[:n // 2]:
        strings += near_misses(m, universe, rng, 3)
    for _ in range(n):
        strings.append("".join(rng.choice(universe) for _ in range(rng.randint(0, 10))))
    return strings


# ------------------------------------------------------------------------------------------------
# The compiler against re.fullmatch


@pytest.mark.parametrize("name", list_formats())
def test_printed_grammar_equals_re_fullmatch(name: str) -> None:
    fmt = get_format(name)
    g = FormatGrammar([printed_only(fmt)])
    for s in probe_strings(fmt, seed=zlib.crc32(name.encode())):
        assert g.accepts(s) == bool(re.fullmatch(fmt.regex, s)), (name, s)
    for example in fmt.examples:
        assert re.fullmatch(fmt.regex, example), (name, example)


@pytest.mark.parametrize("name", list_formats())
def test_read_grammar_drops_separators_and_merges_classes(name: str) -> None:
    """As read: separators deleted, merged characters interchangeable. Checked against ``re`` on
    the separator-free pattern, trying every spelling of the merged characters."""
    fmt = get_format(name)
    g = FormatGrammar([fmt])
    read = re.compile(rx.to_pattern(rx.drop_chars(fmt.printed_ast, fmt.separators)))
    groups = [set(m) for m in fmt.merge]

    def spellings(s: str) -> List[str]:
        options = [next((sorted(gr) for gr in groups if c in gr), [c]) for c in s]
        return ["".join(p) for p in itertools.product(*options)]

    for s in probe_strings(fmt, seed=7 + zlib.crc32(name.encode()), n=40):
        printed_ok = bool(re.fullmatch(fmt.regex, s))
        stripped = "".join(c for c in s if c not in fmt.separators)
        if printed_ok:
            assert g.accepts(stripped) and g.accepts(fmt.canonical(s)), (name, s)
            assert name in g.match(fmt.canonical(s))
        expected = any(read.fullmatch(v) for v in spellings(stripped))
        assert g.accepts(stripped) == expected, (name, s)
    for example in fmt.examples:
        assert g.accepts(fmt.canonical(example)), (name, example)


@pytest.mark.parametrize("pattern", ["[AB]{2,3}|1(?:2|AB)*", "A?B+[0-2]{0,2}", "(A|B1)(2?)B",
                                     "[A\\-]{1,}[\\d]", "京[A-C]·?\\d{2}", "(?:AB|A)(?:BA|A)?"])
def test_small_patterns_exhaustively(pattern: str) -> None:
    g = FormatGrammar([PlateFormat("t", None, pattern)])
    alphabet = sorted(g.alphabet | set("AB12"))
    for n in range(6):
        for chars in itertools.product(alphabet, repeat=n):
            s = "".join(chars)
            assert g.accepts(s) == bool(re.fullmatch(pattern, s)), (pattern, s)


@pytest.mark.parametrize("pattern, match", [
    ("A.B", "'.' is not supported"), ("^AB", "not supported"), ("[^A]", "negated"),
    ("\\w+", "escape '\\\\w'"), ("A**", "second quantifier"), ("(?=A)B", "groups"),
    ("A{2", "repeat"), ("(AB", "missing '\\)'"), ("[AB", "missing '\\]'"), ("A{3,1}", "max < min"),
])
def test_regex_errors_are_one_line_and_name_the_pattern(pattern: str, match: str) -> None:
    with pytest.raises(VinocrError, match=match) as info:
        rx.parse(pattern)
    assert pattern in str(info.value) and "\n" not in str(info.value)


def _shortest_completion(g: FormatGrammar, state: int, limit: int = 14) -> int:
    frontier, seen = {state}, {state}
    for depth in range(limit):
        if any(g.is_final(s) for s in frontier):
            return depth
        frontier = {t for s in frontier for t in g.next_chars(s).values()} - seen
        seen |= frontier
    raise AssertionError("no completion")


@pytest.mark.parametrize("names", [["eu_de"], ["eu_nl"], ["cn"], ["in"], ["br", "uk"]])
def test_no_dead_ends_and_exact_min_remaining(names: List[str]) -> None:
    """The Grammar contract: every successor can be completed; min_remaining is the exact
    shortest completion."""
    g = FormatGrammar(names)
    rng = random.Random(3)
    states = [g.start()]
    for _ in range(40):
        state = g.start()
        for _ in range(rng.randint(0, 8)):
            nxt = g.next_chars(state)
            if not nxt:
                break
            state = nxt[rng.choice(sorted(nxt))]
            states.append(state)
    for state in states:
        assert g.min_remaining(state) == _shortest_completion(g, state)
        if not g.is_final(state):
            assert g.next_chars(state), "alive non-final state without successors"


def test_union_reports_the_formats_in_order() -> None:
    nl = FormatGrammar(["eu_nl"])
    assert nl.match("77BBBB") == ("eu_nl_sc6",) and nl.match("BB777B") == ("eu_nl_sc9",)
    us = FormatGrammar(["us"])
    assert us.match("7ABC123") == ("us_ca", "us_any")
    assert us.match("ABC1234")[0] == "us_ny" and us.match("ABC1234")[-1] == "us_any"
    assert FormatGrammar(["br"]).match("BRA2E19") == ("mercosur",)
    everything = FormatGrammar(["all"])
    assert [f.name for f in everything.formats][-2:] == ["us_any", "generic"]  # fallbacks last
    assert everything.match("京A12345") == ("cn_blue",)
    assert everything.match("BAB123")[0] == "eu_de"
    assert not everything.accepts("") and not everything.accepts("京")


def test_plate_grammar_is_a_format_grammar_of_slots() -> None:
    slots = PlateGrammar(["LLLNNNN", "LLLNLNN"])
    br = FormatGrammar(["br"])
    for fmt in (get_format("br_old"), get_format("mercosur")):
        for s in probe_strings(fmt, seed=11, n=40):
            s = fmt.canonical(s)
            assert slots.accepts(s) == br.accepts(s), s
    assert slots.match("ABC1D23") == ("LLLNLNN",)


# ------------------------------------------------------------------------------------------------
# Registry, groups, config


def test_groups_expand_in_order_without_duplicates() -> None:
    names = [f.name for f in resolve_formats(["eu_de", "eu", "br"])]
    assert names[0] == "eu_de" and names.count("eu_de") == 1
    assert "eu_nl_sc14" in names and names[-2:] == ["br_old", "mercosur"]
    assert {f.name for f in resolve_formats("us")} >= {"us_ca", "us_ny", "us_any"}
    assert {f.region for f in resolve_formats("cn")} == {"CN"}
    assert len(resolve_formats("all")) == len(list_formats())


def test_registry_rejects_bad_records() -> None:
    with pytest.raises(FormatError, match="already registered"):
        register_format(PlateFormat("eu_de", "DE", "[A-Z]"))
    with pytest.raises(FormatError, match="already a group"):
        register_format(PlateFormat("eu", None, "[A-Z]"))
    with pytest.raises(FormatError, match="unknown member 'xx_yy'"):
        register_group("mine", ["eu_de", "xx_yy"])
    with pytest.raises(FormatError, match="format bad: pattern"):
        PlateFormat("bad", None, "[A-Z")
    with pytest.raises(FormatError, match="lower-case"):
        register_format(PlateFormat("Bad-Name", None, "[A-Z]"))
    with pytest.raises(FormatError, match="two merge groups"):
        PlateFormat("m", None, "[A-Z0-9]", merge=("0O", "OQ"))


@pytest.mark.parametrize("cfg, match", [
    ({"method": "plate", "formats": ["eu_de", "eu_xx"]},
     r"^decode\.formats: unknown plate format 'eu_xx' \(groups: .*eu.*; formats: .*eu_de"),
    ({"method": "plate", "formats": 3}, r"^decode\.formats: expected a list of format names"),
    ({"method": "plate", "formats": []}, r"^decode\.formats: expected a list"),
])
def test_unknown_format_is_a_one_line_config_error(cfg: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match) as info:
        build_decoder(cfg, "plate")
    assert "\n" not in str(info.value)


def test_schema_checks_formats_under_the_decode_key() -> None:
    with pytest.raises(ConfigError, match=r"^Decode\.formats: unknown plate format 'mars'"):
        validate_config({"Decode": {"method": "plate", "formats": ["mars"]}})
    ok = validate_config({"Decode": {"method": "plate", "formats": ["cn"]},
                          "Global": {"charset": "plate_cn"}})
    assert ok["Decode"]["formats"] == ["cn"]


def test_formats_win_over_patterns_and_patterns_still_work() -> None:
    dec = build_decoder({"method": "plate", "patterns": ["LLLNNNN"], "formats": "eu_de"}, "plate")
    assert isinstance(dec.grammar, FormatGrammar) and not isinstance(dec.grammar, PlateGrammar)
    assert [f.name for f in dec.grammar.formats] == ["eu_de"]
    old = build_decoder({"method": "plate", "patterns": ["LLLNNNN"]}, "plate")
    assert isinstance(old.grammar, PlateGrammar) and old.grammar.patterns == ("LLLNNNN",)


# ------------------------------------------------------------------------------------------------
# Canonical spelling (metrics follow the format)


def test_canonical_text_drops_separators_and_merges() -> None:
    us = FormatGrammar(["us"])
    assert us.canonical("CHICAGO") == "CHICAG0" and us.canonical("8584 HH") == "8584HH"
    assert us.canonical("M0T0RZ") == us.canonical("MOTORZ") == "M0T0RZ"
    assert get_format("eu_de").canonical("B-AB 123") == "BAB123"
    assert get_format("cn_blue").canonical("京A·12345") == "京A12345"
    assert FormatGrammar(["eu_de"]).canonical("B-AB 1O") == "BAB1O"  # no merge outside the US
    # Decoders spell labels as they spell outputs (what validation and vinocr-eval score).
    assert build_decoder({"method": "plate", "formats": "us"}, "plate").canonical(
        "CHICAGO 1") == "CHICAG01"
    for cfg in ({"method": "greedy"}, {"method": "plate"}, {"method": "vin"}):
        assert build_decoder(cfg, "plate").canonical("AB 0O") == "AB 0O"


# ------------------------------------------------------------------------------------------------
# Constrained search vs brute force


def _stripped_totals(probs: np.ndarray, classes: Sequence[str], ignored: str
                     ) -> Dict[Tuple[int, ...], float]:
    """Exact P per class sequence without the ignored classes (summed over the sequences that
    differ only by ignored classes), by enumerating every alignment."""
    total, _ = brute_force(probs)
    out: Dict[Tuple[int, ...], float] = defaultdict(float)
    for lab, p in total.items():
        out[tuple(c for c in lab if classes[c] not in ignored)] += p
    return out


TINY_FORMATS = [
    [PlateFormat("ab", None, "[AB][12]?[AB]")],
    [PlateFormat("x", None, "A[12]{2}"), PlateFormat("y", None, "[12]B|B")],
    [PlateFormat("sep", None, "[12] ?[AB]{1,2}", separators=" ")],
    [PlateFormat("merge", None, "[AB]1|2", merge=("1B",))],
]


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("formats", TINY_FORMATS, ids=lambda fs: "+".join(f.name for f in fs))
def test_format_search_with_large_beam_is_exact(seed: int, formats: List[PlateFormat]) -> None:
    classes = ["", "A", "B", "1", "2", " "]
    rng = np.random.default_rng(300 + seed)
    probs = random_probs(rng, T=5, C=len(classes), scale=2.0)
    grammar = FormatGrammar(formats)
    ignored = "".join(grammar.ignored)
    totals = _stripped_totals(probs, classes, ignored)
    valid = {lab: p for lab, p in totals.items() if grammar.accepts(text_of(classes, lab))}
    dec = ConstrainedDecoder(grammar, classes=classes, beam_size=10_000)
    r = dec.decode(probs)
    assert valid, "tiny case without any valid labelling"
    best = max(valid, key=valid.get)
    assert r.satisfied
    assert r.text == grammar.canonical(text_of(classes, best))
    assert r.log_prob == pytest.approx(math.log(valid[best]), rel=1e-9)
    assert r.formats == grammar.match(r.text) and r.format == r.formats[0] and r.region is None
    assert len(r.char_confidences) == len(r.text)
    small = ConstrainedDecoder(grammar, classes=classes, beam_size=2).decode(probs)
    assert small.text == "" or grammar.accepts(small.text)


def _independent_accepts(text: str, formats: Sequence[PlateFormat]) -> List[str]:
    """Format names whose separator-free, merge-closed pattern ``re`` matches ``text``."""
    return [f.name for f in formats if re.fullmatch(rx.to_pattern(f.read_ast), text)]


@pytest.mark.parametrize("names", [["eu_de"], ["us"], ["cn"], ["eu_nl", "eu_pl"], ["all"]])
def test_decoding_noise_never_leaves_the_chosen_formats(names: List[str]) -> None:
    charset = "plate_cn" if "cn" in names or "all" in names else "plate"
    classes = load_charset(charset).class_list()
    chosen = resolve_formats(names)
    dec = build_decoder({"method": "plate", "formats": names, "beam_size": 4}, charset)
    rng = np.random.default_rng(11)
    found = 0
    for _ in range(6):
        r = dec.decode(random_probs(rng, T=22, C=len(classes), scale=3.0))
        if not r.text:
            assert not r.satisfied and r.format is None
            continue
        found += 1
        matched = _independent_accepts(r.text, chosen)
        assert matched and r.format == matched[0] and list(r.formats) == matched, r.text
        assert r.text == dec.grammar.canonical(r.text)
    assert found


def test_spaces_are_not_read_and_us_reads_zero_for_o() -> None:
    probs = spell("8584 HH", PLATE_CLASSES, T=20)  # the zero-shot reading
    assert build_decoder({"method": "greedy"}, "plate").decode(probs).text == "8584 HH"
    r = build_decoder({"method": "plate", "formats": ["us"]}, "plate").decode(probs)
    assert (r.text, r.format, r.region) == ("8584HH", "us_any", "US")
    chicago = build_decoder({"method": "plate", "formats": "us"}, "plate").decode(
        spell("CHICAGO", PLATE_CLASSES, T=20))
    assert chicago.text == "CHICAG0"


def test_german_plate_fixes_confusions_with_the_format() -> None:
    probs = spell("M AB 1238", PLATE_CLASSES, T=24)
    # the district letter read as a digit, the last digit read as a letter
    set_frame(probs, char_frame(0), {PLATE_CLASSES.index("1"): 0.5, PLATE_CLASSES.index("M"): 0.4})
    set_frame(probs, char_frame(8), {PLATE_CLASSES.index("B"): 0.5, PLATE_CLASSES.index("8"): 0.4})
    assert build_decoder({"method": "greedy"}, "plate").decode(probs).text == "1 AB 123B"
    r = build_decoder({"method": "plate", "formats": ["eu_de"]}, "plate").decode(probs)
    assert (r.text, r.format, r.region, r.satisfied) == ("MAB1238", "eu_de", "DE", True)


def test_chinese_plate_with_the_plate_cn_charset() -> None:
    cs = load_charset("plate_cn")
    assert len(cs) == 72 and all(c in cs for c in PROVINCES + SPECIAL_SIGNS)
    assert FormatGrammar(["cn"]).alphabet <= set(cs.characters)
    classes = cs.class_list()
    probs = spell("皖A8O2K9", classes, T=16)  # O where the serial has no O: a 0 or a D
    set_frame(probs, char_frame(3), {classes.index("O"): 0.5, classes.index("0"): 0.4})
    r = build_decoder({"method": "plate", "formats": "cn"}, "plate_cn").decode(probs)
    assert (r.text, r.format, r.region) == ("皖A802K9", "cn_blue", "CN")

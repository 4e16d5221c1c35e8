"""CTC decoders: greedy, forward probability, prefix beam search, grammar-constrained search."""
from __future__ import annotations

import itertools
import math
import re
from collections import defaultdict
from typing import Dict, List, Sequence, Tuple

import numpy as np
import pytest

from vinocr.charset import load_charset
from vinocr.decode import (BeamSearchDecoder, ConstrainedDecoder, DecodeError, GreedyDecoder,
                           PlateGrammar, VinGrammar, build_decoder, ctc_forced_align,
                           ctc_log_prob, prefix_beam_search)
from vinocr.errors import VinocrError
from vinocr.vin import VIN_ALPHABET, check_digit_ok, validate_vin, with_check_digit

VIN_CLASSES = load_charset("vin").class_list()
PLATE_CLASSES = load_charset("plate").class_list()


# ------------------------------------------------------------------------------------------------
# Helpers


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def random_probs(rng: np.random.Generator, T: int, C: int, scale: float = 2.0) -> np.ndarray:
    return softmax(rng.normal(size=(T, C)) * scale).astype(np.float32)


def collapse(path: Sequence[int]) -> Tuple[int, ...]:
    out: List[int] = []
    prev = 0
    for c in path:
        if c != prev and c != 0:
            out.append(c)
        prev = c
    return tuple(out)


def brute_force(probs: np.ndarray) -> Tuple[Dict[Tuple[int, ...], float],
                                            Dict[Tuple[int, ...], float]]:
    """Exact P(labeling) and best single-path probability per labeling, by enumerating every
    alignment (C ** T paths)."""
    T, C = probs.shape
    p64 = probs.astype(np.float64)
    total: Dict[Tuple[int, ...], float] = defaultdict(float)
    best: Dict[Tuple[int, ...], float] = defaultdict(float)
    for path in itertools.product(range(C), repeat=T):
        p = float(np.prod(p64[np.arange(T), path]))
        lab = collapse(path)
        total[lab] += p
        best[lab] = max(best[lab], p)
    return total, best


def text_of(classes: Sequence[str], labels: Sequence[int]) -> str:
    return "".join(classes[c] for c in labels)


def spell(text: str, classes: Sequence[str], T: int, peak: float = 0.9,
          gap: int = 1) -> np.ndarray:
    """Near-one-hot probabilities spelling ``text``: one frame per character, ``gap`` blank frames
    between characters, blank frames to fill ``T``."""
    C = len(classes)
    index = {c: i for i, c in enumerate(classes) if i}
    rest = (1.0 - peak) / (C - 1)
    probs = np.full((T, C), rest, dtype=np.float64)
    probs[:, 0] = peak
    t = gap
    for ch in text:
        probs[t] = rest
        probs[t, index[ch]] = peak
        t += 1 + gap
    assert t - gap <= T
    return probs


def set_frame(probs: np.ndarray, t: int, weights: Dict[int, float]) -> None:
    """Give frame ``t`` the class probabilities ``weights``; the rest is spread evenly."""
    C = probs.shape[1]
    rest = (1.0 - sum(weights.values())) / (C - len(weights))
    probs[t] = rest
    for c, w in weights.items():
        probs[t, c] = w


def char_frame(text_index: int, gap: int = 1) -> int:
    return gap + text_index * (1 + gap)


# ------------------------------------------------------------------------------------------------
# Greedy


def test_greedy_collapses_repeats_and_drops_blanks() -> None:
    classes = ["", "A", "B"]
    # Frames: A A blank A B B blank -> "AAB"
    probs = np.array([
        [0.1, 0.8, 0.1],
        [0.2, 0.6, 0.2],
        [0.7, 0.2, 0.1],
        [0.1, 0.7, 0.2],
        [0.1, 0.1, 0.8],
        [0.3, 0.1, 0.6],
        [0.9, 0.05, 0.05],
    ], dtype=np.float32)
    r = GreedyDecoder(classes=classes).decode(probs)
    assert r.text == "AAB"
    assert r.char_confidences == pytest.approx([0.7, 0.7, 0.7])  # (.8+.6)/2, .7, (.8+.6)/2
    assert r.confidence == pytest.approx(0.7)
    assert r.satisfied and r.fallback_text is None
    assert r.log_prob == pytest.approx(math.log(brute_force(probs)[0][(1, 1, 2)]), rel=1e-6)


def test_greedy_all_blank_is_empty() -> None:
    probs = np.tile(np.array([[0.9, 0.05, 0.05]], np.float32), (4, 1))
    r = GreedyDecoder(classes=["", "A", "B"]).decode(probs)
    assert r.text == "" and r.char_confidences == [] and r.confidence == 0.0
    assert r.log_prob == pytest.approx(4 * math.log(0.9), rel=1e-6)


def test_greedy_with_charset_and_space() -> None:
    cs = load_charset("plate")
    probs = spell("AB C", cs.class_list()[:-1] + [" "], T=9)
    r = GreedyDecoder(cs).decode(probs)
    assert r.text == "AB C"
    assert len(r.char_confidences) == 4


# ------------------------------------------------------------------------------------------------
# Forward probability and alignment


@pytest.mark.parametrize("seed", range(4))
def test_log_prob_equals_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    probs = random_probs(rng, T=5, C=4)
    total, best = brute_force(probs)
    for labels in [(), (1,), (1, 1), (2, 3), (1, 2, 1), (3, 3, 3), (1, 2, 3, 1)]:
        expected = total.get(labels, 0.0)
        got = ctc_log_prob(np.log(probs.astype(np.float64)), labels)
        if expected == 0.0:
            assert got == -math.inf
        else:
            assert got == pytest.approx(math.log(expected), rel=1e-9, abs=1e-9)
            _, score = ctc_forced_align(np.log(probs.astype(np.float64)), labels)
            assert score == pytest.approx(math.log(best[labels]), rel=1e-9, abs=1e-9)


def test_forced_alignment_is_a_valid_path() -> None:
    rng = np.random.default_rng(7)
    probs = random_probs(rng, T=12, C=5)
    labels = [1, 1, 3, 2]
    positions, score = ctc_forced_align(np.log(probs), labels)
    assert score > -math.inf
    # Every label gets at least one frame, in order, and the path collapses back to the labels.
    path = [0 if k < 0 else labels[k] for k in positions]
    assert list(collapse(path)) == labels
    assert sorted(set(positions.tolist()) - {-1}) == [0, 1, 2, 3]
    assert (np.diff(positions[positions >= 0]) >= 0).all()


def test_impossible_alignment() -> None:
    logp = np.log(np.full((2, 3), 1 / 3))
    assert ctc_log_prob(logp, [1, 1]) == -math.inf  # needs a blank in between: 3 frames
    positions, score = ctc_forced_align(logp, [1, 2, 1])
    assert score == -math.inf and (positions == -1).all()


# ------------------------------------------------------------------------------------------------
# Prefix beam search


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("C", [3, 4])
def test_beam_search_with_large_beam_is_exact(seed: int, C: int) -> None:
    rng = np.random.default_rng(100 + seed)
    T = 6 if C == 3 else 5
    probs = random_probs(rng, T=T, C=C, scale=1.5)
    total, _ = brute_force(probs)
    best = max(total, key=total.get)
    classes = ["", "A", "B", "C"][:C]
    r = BeamSearchDecoder(classes=classes, beam_size=10_000).decode(probs)
    assert r.text == text_of(classes, best)
    assert r.log_prob == pytest.approx(math.log(total[best]), rel=1e-9)
    # The raw search scores are exact too when nothing is pruned.
    beams = prefix_beam_search(np.log(probs.astype(np.float64)), beam_size=10_000)
    for b in beams[:10]:
        assert b.score == pytest.approx(math.log(total[b.labels]), rel=1e-9)


def reference_prefix_beam_search(logp: np.ndarray, beam_size: int, prune: float = -math.inf
                                  ) -> Dict[Tuple[int, ...], float]:
    """Textbook dictionary-based CTC prefix beam search (one Python loop per beam and class);
    extensions by classes below ``prune`` are skipped."""
    beams: Dict[Tuple[int, ...], Tuple[float, float]] = {(): (0.0, -math.inf)}
    for lp in logp:
        nxt: Dict[Tuple[int, ...], List[float]] = defaultdict(lambda: [-math.inf, -math.inf])
        for prefix, (pb, pnb) in beams.items():
            ptot = np.logaddexp(pb, pnb)
            nxt[prefix][0] = np.logaddexp(nxt[prefix][0], ptot + lp[0])
            if prefix:
                nxt[prefix][1] = np.logaddexp(nxt[prefix][1], pnb + lp[prefix[-1]])
            for c in range(1, logp.shape[1]):
                if lp[c] < prune:
                    continue
                new = prefix + (c,)
                src = pb if prefix and prefix[-1] == c else ptot
                nxt[new][1] = np.logaddexp(nxt[new][1], src + lp[c])
        best = sorted(nxt.items(), key=lambda kv: -np.logaddexp(*kv[1]))[:beam_size]
        beams = {k: (v[0], v[1]) for k, v in best}
    return {k: float(np.logaddexp(*v)) for k, v in beams.items()}


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("beam_size, C, prune", [(1, 6, None), (3, 6, None), (8, 6, None),
                                                  (3, 14, None), (5, 14, -2.5)])
def test_vectorised_beam_search_matches_textbook_version(seed: int, beam_size: int, C: int,
                                                         prune: float) -> None:
    # Small beams prune: the vectorised search (with its 2B class preselection when C is large)
    # must keep exactly the textbook beams with exactly their scores.
    rng = np.random.default_rng(300 + seed)
    logp = np.log(random_probs(rng, T=12, C=C, scale=1.5).astype(np.float64))
    expected = reference_prefix_beam_search(logp, beam_size,
                                            -math.inf if prune is None else prune)
    got = {b.labels: b.score
           for b in prefix_beam_search(logp, beam_size=beam_size, prune_logp=prune)}
    assert set(got) == set(expected)
    for k, v in expected.items():
        assert got[k] == pytest.approx(v, rel=1e-9)


def test_beam_search_beats_greedy_when_alignments_add_up() -> None:
    # Classic example: best path is blank-blank (""), but "A" has more total probability.
    probs = np.array([[0.55, 0.45, 0.0], [0.55, 0.45, 0.0]])  # P("")=.3025, P("A")=.6975
    g = GreedyDecoder(classes=["", "A", "B"]).decode(probs)
    b = BeamSearchDecoder(classes=["", "A", "B"], beam_size=4).decode(probs)
    assert g.text == ""
    assert b.text == "A"
    assert b.log_prob > g.log_prob


def test_beam_pruning_threshold_keeps_result_on_peaky_input() -> None:
    probs = spell("AB1", PLATE_CLASSES, T=8)
    r = BeamSearchDecoder(classes=PLATE_CLASSES, beam_size=8, prune_logp=-5.0).decode(probs)
    assert r.text == "AB1"


# ------------------------------------------------------------------------------------------------
# Constrained decoding vs brute force


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("patterns", [["LN"], ["LN", "NLL"], ["A", "NN"]])
def test_constrained_with_large_beam_is_exact(seed: int, patterns: List[str]) -> None:
    classes = ["", "A", "B", "1", "2"]
    rng = np.random.default_rng(200 + seed)
    probs = random_probs(rng, T=6, C=5, scale=2.0)
    total, _ = brute_force(probs)
    regex = re.compile("|".join("".join({"L": "[AB]", "N": "[12]", "A": "[AB12]"}[s] for s in p)
                                for p in patterns))
    valid = {lab: p for lab, p in total.items() if regex.fullmatch(text_of(classes, lab))}
    best = max(valid, key=valid.get)
    dec = ConstrainedDecoder(PlateGrammar(patterns), classes=classes, beam_size=10_000)
    r = dec.decode(probs)
    assert r.satisfied
    assert r.text == text_of(classes, best)
    assert r.log_prob == pytest.approx(math.log(valid[best]), rel=1e-9)
    assert len(r.char_confidences) == len(r.text)
    # A small beam may miss the optimum but never leaves the grammar.
    small = ConstrainedDecoder(PlateGrammar(patterns), classes=classes, beam_size=2).decode(probs)
    assert small.text == "" or regex.fullmatch(small.text)


def test_compiled_grammar_class_view() -> None:
    classes = ["", "A", "B", "1", "2"]
    dec = ConstrainedDecoder(PlateGrammar(["LN"]), classes=classes)
    g = dec.compiled
    assert g.allowed([]) == {1, 2}
    assert g.allowed([1]) == {3, 4}
    assert g.allowed([1, 3]) == set()
    assert g.accept([2, 4]) and not g.accept([2]) and not g.accept([3, 1])


# ------------------------------------------------------------------------------------------------
# VIN grammar


def test_vin_grammar_rules() -> None:
    g = VinGrammar("auto")
    assert g.accepts("1M8GDM9AXKP042788")
    assert not g.accepts("1M8GDM9A1KP042788")  # North American, wrong check digit
    assert g.accepts("SAL1A2A40SA606661")  # European: check digit optional under auto
    assert not VinGrammar("always").accepts("SAL1A2A40SA606661")
    assert VinGrammar("never").accepts("1M8GDM9A1KP042788")
    assert not g.accepts("1M8GDM9AXKP04278")  # 16 characters
    assert not g.accepts("1M8GDM9AXKP0427880")
    assert g.allowed_chars("IM8") == set()  # I is never a VIN character
    # Last position: only characters completing the check sum (all transliterate to 8 here).
    assert g.allowed_chars("1M8GDM9AXKP04278") == {"8", "H", "Y"}
    # Position 9 of a North American VIN must be a digit or X.
    assert g.allowed_chars("1M8GDM9A") == set("0123456789X")
    year = VinGrammar("never", year_rule=True)
    assert not {"U", "Z", "0"} & year.allowed_chars("WBA3A5C51")
    assert year.allowed_chars("WBA3A5C51") == set("ABCDEFGHJKLMNPRSTVWXY123456789")


def test_vin_grammar_never_offers_a_dead_end() -> None:
    # Every allowed character at every position keeps the prefix completable.
    g = VinGrammar("always")
    rng = np.random.default_rng(3)
    for _ in range(30):
        prefix = ""
        while len(prefix) < 17:
            allowed = sorted(g.allowed_chars(prefix))
            assert allowed, prefix
            prefix += allowed[rng.integers(len(allowed))]
        assert check_digit_ok(prefix)


@pytest.mark.parametrize("mode", ["auto", "always", "never"])
def test_vin_decoding_on_noise_never_returns_an_invalid_vin(mode: str) -> None:
    dec = build_decoder({"method": "vin", "beam_size": 16, "check_digit": mode,
                         "year_rule": mode == "always"}, "vin")
    for seed in range(60):
        rng = np.random.default_rng(1000 + seed)
        probs = random_probs(rng, T=40, C=35, scale=3.0)
        r = dec.decode(probs)
        if not r.satisfied:
            assert r.text == "" and r.fallback_text is not None
            continue
        require = {"auto": None, "always": True, "never": False}[mode]
        assert validate_vin(r.text, require_check_digit=require).valid, r.text
        if mode == "always":
            assert check_digit_ok(r.text)
            assert r.text[9] not in "UZ0"
        assert len(r.char_confidences) == 17
        assert all(0.0 <= c <= 1.0 for c in r.char_confidences)
        assert 0.0 <= r.confidence <= 1.0
        assert r.log_prob <= 0.0


def test_vin_decoding_on_noisy_planted_vins() -> None:
    # Real VINs under heavy noise: outputs stay valid, and the check digit rule repairs reads.
    dec = build_decoder({"method": "vin", "check_digit": "always", "beam_size": 16}, "vin")
    greedy = GreedyDecoder("vin")
    vins = ["1M8GDM9AXKP042788", "SAL1A2A40SA606662", "1HGCM82633A004352",
            "WBA3A5C51CF256651", "JHMCM56557C404453"]
    right_greedy = right_constrained = 0
    for seed in range(20):
        rng = np.random.default_rng(2000 + seed)
        vin = vins[seed % len(vins)]
        logits = np.log(spell(vin, VIN_CLASSES, T=40, peak=0.6)) + rng.normal(0, 1.0, (40, 35))
        probs = softmax(logits).astype(np.float32)
        r = dec.decode(probs)
        assert r.text == "" or check_digit_ok(r.text), r.text
        right_constrained += r.text == vin
        right_greedy += greedy.decode(probs).text == vin
    assert right_constrained > right_greedy  # 11 vs 4 with these seeds
    assert right_constrained >= 8


def test_empty_input() -> None:
    empty = np.zeros((0, 35), np.float32)
    for decoder in [GreedyDecoder("vin"), BeamSearchDecoder("vin"),
                    build_decoder({"method": "vin"}, "vin")]:
        r = decoder.decode(empty)
        assert r.text == "" and r.char_confidences == [] and r.confidence == 0.0


def test_vin_recovers_corrupted_check_digit() -> None:
    vin = "1M8GDM9AXKP042788"
    probs = spell(vin, VIN_CLASSES, T=40)
    t = char_frame(8)
    set_frame(probs, t, {VIN_CLASSES.index("7"): 0.5, VIN_CLASSES.index("X"): 0.4})
    greedy = GreedyDecoder("vin").decode(probs)
    assert greedy.text == vin[:8] + "7" + vin[9:]
    assert not check_digit_ok(greedy.text)
    r = build_decoder({"method": "vin"}, "vin").decode(probs.astype(np.float32))
    assert r.satisfied and r.text == vin
    assert r.char_confidences[8] == pytest.approx(0.4, abs=1e-6)


def test_vin_check_digit_optional_in_europe_unless_always() -> None:
    vin = "SAL1A2A40SA606662"
    probs = spell(vin, VIN_CLASSES, T=40)
    # Corrupt a serial digit: the check digit still says 2, the frame prefers 3.
    set_frame(probs, char_frame(16), {VIN_CLASSES.index("3"): 0.5, VIN_CLASSES.index("2"): 0.4})
    auto = build_decoder({"method": "vin", "check_digit": "auto"}, "vin").decode(probs)
    always = build_decoder({"method": "vin", "check_digit": "always"}, "vin").decode(probs)
    assert auto.text == vin[:-1] + "3"  # not required outside North America: keep what is read
    assert always.text == vin


def test_vin_too_few_frames_falls_back() -> None:
    probs = spell("1M8GDM9AX", VIN_CLASSES, T=12, gap=0)  # 12 frames cannot hold 17 chars
    r = build_decoder({"method": "vin"}, "vin").decode(probs)
    assert r.text == "" and not r.satisfied
    assert r.fallback_text == "1M8GDM9AX"
    assert r.confidence == 0.0 and r.char_confidences == [] and r.log_prob == -math.inf


def test_vin_on_a_large_class_list() -> None:
    # A PP-OCR-like head: VIN characters at scattered indices among many others (incl. lower case
    # letters, I, O, Q) that the VIN grammar must never emit.
    rng = np.random.default_rng(5)
    others = [chr(0x4E00 + i) for i in range(250)] + list("abcdefghijklmnopqrstuvwxyzIOQ")
    chars = others + list(VIN_ALPHABET)
    rng.shuffle(chars)
    classes = ["", *chars, " "]
    vin = with_check_digit("1HGCM82603A004352")
    probs = spell(vin, classes, T=40)
    # Position 2 is read as the non-VIN "O" ... and the serial's "0" as a lower-case "o".
    set_frame(probs, char_frame(1), {classes.index("O"): 0.6, classes.index("H"): 0.3})
    set_frame(probs, char_frame(11), {classes.index("o"): 0.6, classes.index("0"): 0.3})
    r = build_decoder({"method": "vin", "beam_size": 8}, classes=classes).decode(probs)
    assert r.text == vin and r.satisfied
    with pytest.raises(DecodeError, match="classes"):
        build_decoder({"method": "vin"}, "vin").decode(probs)


# ------------------------------------------------------------------------------------------------
# Plates


def test_plate_layout_fixes_letter_digit_confusions() -> None:
    plate = "ABC1234"
    probs = spell(plate, PLATE_CLASSES, T=16)
    # Digit slot read as I, letter slot read as 0.
    set_frame(probs, char_frame(3), {PLATE_CLASSES.index("I"): 0.5, PLATE_CLASSES.index("1"): 0.4})
    set_frame(probs, char_frame(1), {PLATE_CLASSES.index("8"): 0.5, PLATE_CLASSES.index("B"): 0.4})
    assert GreedyDecoder("plate").decode(probs).text == "A8CI234"
    r = build_decoder({"method": "plate", "patterns": ["LLLNNNN"]}, "plate").decode(probs)
    assert r.text == plate and r.satisfied


def test_plate_mercosur_and_brazilian_layouts() -> None:
    probs = spell("BOA2E19", PLATE_CLASSES, T=16)
    set_frame(probs, char_frame(1), {PLATE_CLASSES.index("0"): 0.5, PLATE_CLASSES.index("O"): 0.4})
    set_frame(probs, char_frame(4), {PLATE_CLASSES.index("E"): 0.5, PLATE_CLASSES.index("3"): 0.4})
    dec = build_decoder({"method": "plate"}, "plate")  # default: LLLNNNN and LLLNLNN
    assert dec.decode(probs).text == "BOA2E19"  # Mercosur: E stays a letter
    brazil = build_decoder({"method": "plate", "patterns": "LLLNNNN"}, "plate")
    assert brazil.decode(probs).text == "BOA2319"


def test_plate_grammar_rejects_bad_patterns() -> None:
    with pytest.raises(VinocrError, match="unknown slot 'X'"):
        PlateGrammar(["LLX"])
    with pytest.raises(VinocrError):
        PlateGrammar([])


# ------------------------------------------------------------------------------------------------
# Factory, inputs, results


def test_build_decoder_methods() -> None:
    assert isinstance(build_decoder(None, "vin"), GreedyDecoder)
    assert isinstance(build_decoder({"method": "beam", "beam_size": 4}, "vin"), BeamSearchDecoder)
    vin = build_decoder({"method": "vin", "check_digit": "always", "year_rule": True,
                         "patterns": ["LLL"]}, "vin")  # another method's key is ignored
    assert isinstance(vin, ConstrainedDecoder) and isinstance(vin.grammar, VinGrammar)
    assert vin.grammar.check_digit == "always" and vin.grammar.year_rule
    plate = build_decoder({"method": "plate", "patterns": ["LLLNLNN"]}, "plate")
    assert plate.grammar.patterns == ("LLLNLNN",)


@pytest.mark.parametrize("cfg, match", [
    ({"metod": "vin"}, r"decode: unknown key 'metod' \(valid: .*method"),
    ({"method": "viterbi"}, r"decode.method: unknown method 'viterbi' \(valid: greedy, beam"),
    ({"method": "vin", "check_digit": "sometimes"}, r"decode.check_digit: .*'sometimes'.*auto"),
    ({"method": "beam", "beam_size": 0}, r"decode.beam_size"),
    ({"method": "beam", "prune_logp": 3}, r"decode.prune_logp"),
    ({"method": "vin", "year_rule": "yes"}, r"decode.year_rule"),
    ({"method": "plate", "patterns": ["LLLNNNX"]}, r"decode.patterns: 'LLLNNNX'.*slot 'X'"),
])
def test_build_decoder_errors_name_the_key(cfg: dict, match: str) -> None:
    with pytest.raises(VinocrError, match=match) as info:
        build_decoder(cfg, "vin")
    assert "\n" not in str(info.value)


def test_input_checks() -> None:
    dec = GreedyDecoder("vin")
    with pytest.raises(DecodeError, match="35"):
        dec.decode(np.full((10, 30), 1 / 30, np.float32))
    with pytest.raises(DecodeError, match="logits"):
        dec.decode(np.random.default_rng(0).normal(size=(10, 35)))
    with pytest.raises(DecodeError, match="shape"):
        dec.decode(np.zeros(35))
    with pytest.raises(DecodeError):
        GreedyDecoder(classes=["", "AB"])


def test_batch_and_log_input() -> None:
    rng = np.random.default_rng(11)
    batch = np.stack([spell(with_check_digit(v), VIN_CLASSES, T=40)
                      for v in ["1HGCM82633A004352", "5YJ3E1EA7KF317000"]]).astype(np.float32)
    batch = np.clip(batch + rng.uniform(0, 0.01, batch.shape), 0, 1)
    batch /= batch.sum(-1, keepdims=True)
    for decoder in [GreedyDecoder("vin"), BeamSearchDecoder("vin", beam_size=4),
                    build_decoder({"method": "vin"}, "vin")]:
        results = decoder.decode(batch)
        assert isinstance(results, list) and len(results) == 2
        assert [r.text for r in results] == [with_check_digit("1HGCM82633A004352"),
                                             with_check_digit("5YJ3E1EA7KF317000")]
        for r in results:
            assert len(r.char_confidences) == len(r.text)
            assert all(0.0 <= c <= 1.0 for c in r.char_confidences)
            assert r.confidence == pytest.approx(float(np.mean(r.char_confidences)))
        from_log = decoder.decode(np.log(batch[0]), log_input=True)
        assert from_log.text == results[0].text
        assert from_log.log_prob == pytest.approx(results[0].log_prob, rel=1e-5)


def test_compare_decoders_tool_synthetic(capsys: pytest.CaptureFixture, tmp_path) -> None:
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "tools" / "compare_decoders.py"
    spec = importlib.util.spec_from_file_location("compare_decoders", path)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    saved = tmp_path / "syn.npz"
    assert tool.main(["--synthetic", "6", "--noise", "0.5", "--beam-size", "4",
                      "--save-synthetic", str(saved)]) == 0
    out = capsys.readouterr().out
    assert "SYNTHETIC" in out and "| greedy |" in out and "check digit always" in out
    assert tool.main(["--probs", str(saved)]) == 0
    out = capsys.readouterr().out
    assert "model outputs from" in out and "N=6" in out
    assert tool.main(["--probs", str(tmp_path / "missing.npz")]) == 2

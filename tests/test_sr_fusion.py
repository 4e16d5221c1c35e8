"""vinocr.sr.fusion (multi-frame track recognition) and vinocr.sr.submission (LRLPR-26 file format),
on hand-made CTC matrices: no model, no Paddle."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest

from vinocr.decode import build_decoder
from vinocr.errors import ConfigError, VinocrError
from vinocr.sr.fusion import (METHODS, TrackResult, fuse_logprobs, recognise_track,
                              resample_time, vote)
from vinocr.sr.submission import format_line, read_submission, write_submission

CLASSES = ["", "A", "B", "C", "D"]
IDX = {c: i for i, c in enumerate(CLASSES)}


def frame(steps: List[Dict[str, float]]) -> np.ndarray:
    """[T, C] probabilities: each step a {char: p} dict ('' = blank); the rest of the mass is
    spread evenly over the other classes."""
    out = np.zeros((len(steps), len(CLASSES)))
    for t, step in enumerate(steps):
        rest = 1.0 - sum(step.values())
        others = [c for c in CLASSES if c not in step]
        for c in others:
            out[t, IDX[c]] = rest / len(others)
        for c, p in step.items():
            out[t, IDX[c]] = p
    return out


@pytest.fixture
def greedy():
    return build_decoder({"method": "greedy"}, classes=CLASSES)


def three_frames() -> List[np.ndarray]:
    """Truth 'AB' (A, blank, B). Frames 1 and 3 misread B as C, frame 2 misreads A as C:
    greedy gives 'AC', 'CB', 'AC' (two different wrong strings; the vote follows the majority
    to the wrong 'AC'), but the summed log-probabilities favour A and B clearly."""
    blank = {"": 0.96}
    f1 = frame([{"A": 0.9}, blank, {"B": 0.44, "C": 0.54}])
    f2 = frame([{"A": 0.40, "C": 0.55}, blank, {"B": 0.9, "C": 0.05}])
    f3 = frame([{"A": 0.9}, blank, {"B": 0.44, "C": 0.54}])
    return [f1, f2, f3]


def test_logprob_fusion_fixes_frames_that_are_each_wrong(greedy):
    frames = three_frames()
    texts = [greedy.decode_one(f).text for f in frames]
    assert texts == ["AC", "CB", "AC"]
    assert "AB" not in texts
    fused = fuse_logprobs(frames)
    assert fused.shape == frames[0].shape
    assert (fused <= 0).all()
    np.testing.assert_allclose(np.exp(fused).sum(axis=1), 1.0, atol=1e-9)
    res = recognise_track(frames, greedy, "logprob")
    assert isinstance(res, TrackResult)
    assert (res.text, res.method) == ("AB", "logprob")
    assert [t for t, _ in res.frames] == texts
    assert 0.0 <= res.confidence <= 1.0
    assert recognise_track(frames, greedy, "vote").text == "AC"
    assert recognise_track(frames, greedy, "single").text == "AC"
    assert res.to_dict()["frames"][1][0] == "CB"


def test_logprob_fusion_with_plate_decoder():
    """The layout decoder reads fused log-probabilities (log_input=True) and keeps the layout."""
    plate = build_decoder({"method": "plate"}, charset="plate")
    classes = plate.classes
    truth = "ABC1234"
    rng = np.random.default_rng(0)
    frames = []
    for k in range(3):
        T = 2 * len(truth) + 1
        logits = rng.normal(0, 0.3, (T, len(classes)))
        logits[0::2, 0] += 4.0  # blanks between characters
        for p, ch in enumerate(truth):
            logits[2 * p + 1, classes.index(ch)] += 2.0
        # Each frame has one character position where a wrong character wins.
        wrong = [2, 4, 6][k]
        logits[2 * wrong + 1, classes.index("8" if truth[wrong].isdigit() else "Q")] += 2.6
        e = np.exp(logits - logits.max(1, keepdims=True))
        frames.append(e / e.sum(1, keepdims=True))
    res = recognise_track(frames, plate, "logprob")
    assert all(t != truth for t, _ in res.frames)
    assert res.text == truth
    assert recognise_track(frames, plate, "vote").text == truth


def test_frames_with_different_lengths(greedy):
    short = frame([{"A": 0.9}, {"": 0.9}, {"B": 0.9}])
    # The same reading stretched to twice as many time steps.
    long_ = frame([{"A": 0.9}, {"A": 0.9}, {"": 0.9}, {"": 0.9}, {"B": 0.9}, {"B": 0.9}])
    fused = fuse_logprobs([short, long_])
    assert fused.shape == (6, len(CLASSES))
    np.testing.assert_allclose(np.exp(fused).sum(axis=1), 1.0, atol=1e-9)
    assert recognise_track([short, long_], greedy).text == "AB"
    # Resampling keeps probability rows normalised and is the identity at equal length.
    up = resample_time(short, 7)
    assert up.shape == (7, len(CLASSES))
    np.testing.assert_allclose(up.sum(axis=1), 1.0)
    np.testing.assert_array_equal(resample_time(short, 3), short)
    with pytest.raises(VinocrError, match="classes"):
        fuse_logprobs([short, short[:, :3]])
    with pytest.raises(VinocrError, match="no frames"):
        fuse_logprobs([])
    with pytest.raises(VinocrError, match="logits"):
        fuse_logprobs([short - 1.0])


def test_vote_majority_per_position():
    text, conf = vote([("ABC1234", 0.9), ("ABC1284", 0.8), ("ABD1234", 0.7)])
    assert text == "ABC1234"
    assert 0.0 < conf < 0.9
    # Only texts of the modal length vote.
    assert vote([("ABC1234", 0.5), ("ABC123", 0.99), ("ABC1234", 0.5), ("X", 1.0)])[0] == "ABC1234"
    # Unanimous frames of confidence c give c.
    assert vote([("AB", 0.8)] * 3) == ("AB", pytest.approx(0.8))
    assert vote([("AB", 1.0)] * 2) == ("AB", pytest.approx(1.0))
    # Empty texts never vote; all empty -> ('', 0).
    assert vote([("", 0.9), ("AB", 0.3)])[0] == "AB"
    assert vote([("", 0.9), ("", 0.1)]) == ("", 0.0)
    assert vote([]) == ("", 0.0)


def test_vote_ties():
    # One vote each at position 2: the more confident frame wins ...
    assert vote([("ABC", 0.5), ("ABD", 0.9)])[0] == "ABD"
    # ... and at equal confidence the earliest frame.
    assert vote([("ABC", 0.7), ("ABD", 0.7)])[0] == "ABC"
    assert vote([("ABD", 0.7), ("ABC", 0.7)])[0] == "ABD"
    # Length ties: summed confidence, then earliest.
    assert vote([("AB", 0.2), ("ABC", 0.9)])[0] == "ABC"
    assert vote([("AB", 0.5), ("ABC", 0.5)])[0] == "AB"
    # Zero confidences still vote by count.
    assert vote([("AB", 0.0), ("AC", 0.0), ("AC", 0.0)]) == ("AC", 0.0)


def test_confidence_in_unit_interval(greedy):
    rng = np.random.default_rng(3)
    for _ in range(50):
        results = [("".join(rng.choice(list("AB"), rng.integers(0, 4))), float(rng.uniform(-1, 2)))
                   for _ in range(int(rng.integers(1, 6)))]
        _, conf = vote(results)
        assert 0.0 <= conf <= 1.0
    for _ in range(10):
        frames = [rng.dirichlet(np.ones(len(CLASSES)) * 0.3, size=int(rng.integers(3, 9)))
                  for _ in range(3)]
        for method in METHODS:
            res = recognise_track(frames, greedy, method)
            assert 0.0 <= res.confidence <= 1.0
            assert len(res.frames) == 3


def test_unknown_method(greedy):
    with pytest.raises(ConfigError, match="sequence, logprob, vote, single"):
        recognise_track(three_frames(), greedy, "mean")


# ------------------------------------------------------------------------------- submission
def test_format_line():
    assert format_line("track_00001", "ABC1234", 0.9876) == "track_00001,ABC1234;0.9876"
    assert format_line("track_00001", "ABC1234", 0.98756) == "track_00001,ABC1234;0.9876"
    assert format_line("t", "ABC1234", 0.12344) == "t,ABC1234;0.1234"
    assert format_line("t", "ABC1234", 0.99996) == "t,ABC1234;1.0000"
    assert format_line("t", "ABC1234", 1.7) == "t,ABC1234;1.0000"
    assert format_line("t", "ABC1234", -0.2) == "t,ABC1234;0.0000"
    assert format_line("t", "", 0) == "t,;0.0000"
    for bad_id in ("track,1", "track;1", "track\n1", ""):
        with pytest.raises(VinocrError, match="track id"):
            format_line(bad_id, "ABC1234", 0.5)
    for bad_text in ("AB,C", "AB;C", "AB\rC"):
        with pytest.raises(VinocrError, match="text"):
            format_line("t", bad_text, 0.5)
    with pytest.raises(VinocrError, match="NaN"):
        format_line("t", "ABC1234", float("nan"))


def test_write_and_read_submission(tmp_path: Path):
    rows = [("track_00001", "ABC1234", 0.98764), ("track_00002", "BRA2E19", 0.5)]
    path = write_submission(tmp_path / "sub" / "submission.txt", rows)
    assert path.read_text(encoding="utf-8") == ("track_00001,ABC1234;0.9876\n"
                                                "track_00002,BRA2E19;0.5000\n")
    assert os.listdir(path.parent) == ["submission.txt"]  # no temporary file left behind
    assert read_submission(path) == [("track_00001", "ABC1234", 0.9876),
                                     ("track_00002", "BRA2E19", 0.5)]
    # A failing write leaves the old file intact and no temporary file.
    with pytest.raises(VinocrError, match="twice"):
        write_submission(path, rows + [("track_00001", "XYZ9999", 0.1)])
    with pytest.raises(VinocrError, match="track id"):
        write_submission(path, [("bad,id", "ABC1234", 0.1)])
    assert os.listdir(path.parent) == ["submission.txt"]
    assert len(read_submission(path)) == 2


@pytest.mark.parametrize("content, line, message", [
    ("t1,ABC1234;0.5\nt2,ABC1234\n", 2, "expected"),
    ("t1,ABC1234;0.5\n\nt2,AB,C;0.5\n", 3, "expected"),
    ("t1,ABC1234;high\n", 1, "not a number"),
    ("t1,ABC1234;1.5\n", 1, "outside"),
    ("t1,ABC1234;0.5\nt1,ABC1234;0.5\n", 2, "already on line 1"),
    (",ABC1234;0.5\n", 1, "empty track id"),
])
def test_read_submission_errors(tmp_path: Path, content: str, line: int, message: str):
    path = tmp_path / "s.txt"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(VinocrError, match=message) as info:
        read_submission(path)
    assert f"{path}:{line}:" in str(info.value)


def test_read_submission_missing(tmp_path: Path):
    with pytest.raises(VinocrError, match="not found"):
        read_submission(tmp_path / "nope.txt")


# ---- sequence-level fusion ------------------------------------------------------------

def _brute_ctc(probs: np.ndarray, label: List[int]) -> float:
    """log P(label) by enumerating every CTC path (tiny T only)."""
    import itertools

    t_len, c_len = probs.shape
    total = 0.0
    for path in itertools.product(range(c_len), repeat=t_len):
        collapsed = [c for i, c in enumerate(path) if c != 0 and (i == 0 or c != path[i - 1])]
        if collapsed == label:
            total += float(np.prod([probs[t, c] for t, c in enumerate(path)]))
    return float(np.log(total)) if total > 0 else -np.inf


@pytest.mark.parametrize("label", [[1], [1, 2], [1, 1], [2, 1, 2], []])
def test_ctc_log_likelihood_matches_path_enumeration(label):
    from vinocr.sr.alignment import ctc_log_likelihood

    rng = np.random.default_rng(len(label))
    probs = rng.dirichlet(np.ones(3), size=5)
    ours = ctc_log_likelihood(np.log(probs), label)
    assert ours == pytest.approx(_brute_ctc(probs, label), rel=1e-9)


def test_sequence_fusion_agrees_across_frames_whose_spikes_are_offset(greedy):
    """Truth 'AB'. Two frames read it right, but with their spikes one time step apart; a
    third frame reads 'AC'. Each frame's CTC likelihood marginalises over its own alignment, so
    the offset costs nothing."""
    blank = {"": 0.97}
    f1 = frame([{"A": 0.97}, blank, {"B": 0.97}, blank, blank])
    f2 = frame([blank, {"A": 0.97}, blank, {"B": 0.97}, blank])
    f3 = frame([{"A": 0.9}, blank, {"C": 0.6, "B": 0.35}, blank, blank])
    frames = [f1, f2, f3]
    assert [greedy.decode_one(f).text for f in frames] == ["AB", "AB", "AC"]
    res = recognise_track(frames, greedy, "sequence")
    assert (res.text, res.method) == ("AB", "sequence")
    assert 0.5 < res.confidence <= 1.0
    # frames that all agree confidently give a confidence near 1; an all-blank track gives ""
    assert recognise_track([f1, f1], greedy, "sequence").confidence > 0.9
    empty = frame([blank] * 5)
    assert recognise_track([empty, empty], greedy, "sequence").text == ""


def test_precomputed_frame_results_give_the_same_track_result(greedy):
    frames = three_frames()
    given = [(d.text, d.confidence) for d in map(greedy.decode_one, frames)]
    for method in METHODS:
        assert recognise_track(frames, greedy, method, frame_results=given) == \
            recognise_track(frames, greedy, method)
    with pytest.raises(VinocrError, match="2 frame results for 3 frames"):
        recognise_track(frames, greedy, "vote", frame_results=given[:2])

"""Evaluation metrics (hand-computed), alignment, per-position accuracy, VIN validity, visuals."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from vinocr.engine.evaluation import align, evaluate_texts
from vinocr.engine.visuals import confusion_matrix_image, error_grid, save_png

VALID = "1M8GDM9AXKP042788"
INVALID = "1M8GDM9AXKP042789"  # check digit (position 9, 'X') no longer matches


def test_hand_computed_three_samples() -> None:
    labels = ["ABC", "ABD", "XY"]
    preds = ["ABC", "ABE", "X"]
    result = evaluate_texts(preds, labels, confidences=[0.9, 0.8, 0.3])
    assert result.n == 3
    assert result.seq_acc == pytest.approx(1 / 3)
    # NED per sample: 0, 1/3 (one substitution over 3), 1/2 (one deletion over 2).
    assert result.ned == pytest.approx((0 + 1 / 3 + 1 / 2) / 3)
    assert result.char_acc == pytest.approx(1 - (0 + 1 / 3 + 1 / 2) / 3)
    assert result.cer == pytest.approx(2 / 8)  # 2 edits over 8 label characters
    assert result.per_position_acc is None  # label lengths differ
    assert result.check_digit_valid_rate is None
    assert result.confusion == {("A", "A"): 2, ("B", "B"): 2, ("C", "C"): 1, ("D", "E"): 1,
                                ("X", "X"): 1, ("Y", ""): 1}
    assert result.top_confusions() == [(("D", "E"), 1), (("Y", ""), 1)]
    assert result.top_confusions(1) == [(("D", "E"), 1)]
    assert result.mean_confidence == pytest.approx((0.9 + 0.8 + 0.3) / 3)
    assert result.confidence_gap == pytest.approx(0.9 - (0.8 + 0.3) / 2)
    assert result.worst == [1, 2]  # the 0.8-confident mistake comes first
    doc = result.to_dict()
    json.dumps(doc)  # JSON-able
    assert doc["top_confusions"] == [["D", "E", 1], ["Y", "", 1]]
    assert doc["n_errors"] == 2
    line = result.summary_line()
    assert "seq_acc=0.3333" in line and "\n" not in line and "D→E×1" in line


def test_worst_order_and_confidence_edge_cases() -> None:
    labels = ["AAAA", "BBBB", "CCCC", "DDDD"]
    preds = ["AAAB", "BBBB", "XXXX", "DDD"]
    confident = evaluate_texts(preds, labels, confidences=[0.2, 0.9, 0.7, 0.5])
    assert confident.worst == [2, 3, 0]
    # Without confidences: most wrong first (NED 1.0, then 0.25 each, ties by index).
    plain = evaluate_texts(preds, labels)
    assert plain.worst == [2, 0, 3]
    assert plain.confidence_gap is None and plain.mean_confidence is None
    # All correct: no wrong side, so no gap.
    assert evaluate_texts(["A"], ["A"], confidences=[0.5]).confidence_gap is None
    empty = evaluate_texts([], [])
    assert empty.n == 0 and empty.seq_acc == 0.0 and empty.worst == []
    with pytest.raises(ValueError):
        evaluate_texts(["A"], ["A", "B"])
    with pytest.raises(ValueError):
        evaluate_texts(["A"], ["A"], confidences=[0.1, 0.2])


@pytest.mark.parametrize("label,pred,expected", [
    ("ABC", "AXC", [("A", "A"), ("B", "X"), ("C", "C")]),             # substitution
    ("ABC", "AC", [("A", "A"), ("B", ""), ("C", "C")]),               # deletion
    ("ABC", "AXBC", [("A", "A"), ("", "X"), ("B", "B"), ("C", "C")]),  # insertion
    ("", "AB", [("", "A"), ("", "B")]),
    ("AB", "", [("A", ""), ("B", "")]),
    ("", "", []),
])
def test_alignment(label: str, pred: str, expected: list) -> None:
    assert align(label, pred) == expected


def test_alignment_cost_matches_edit_distance() -> None:
    from vinocr.metrics import edit_distance

    rng = np.random.default_rng(0)
    for _ in range(200):
        a = "".join(rng.choice(list("AB8"), rng.integers(0, 7)))
        b = "".join(rng.choice(list("AB8"), rng.integers(0, 7)))
        pairs = align(a, b)
        assert "".join(t for t, _ in pairs) == a and "".join(p for _, p in pairs) == b
        assert sum(t != p for t, p in pairs) == edit_distance(a, b)


def test_per_position_fixed_length() -> None:
    labels = ["AB12", "CD34", "EF56"]
    preds = ["AB13", "C", "EF56XYZ"]  # wrong last char; truncated prediction; over-long one
    result = evaluate_texts(preds, labels)
    assert result.per_position_acc == pytest.approx([1.0, 2 / 3, 2 / 3, 1 / 3])
    # Position-wise, not aligned: a dropped first character makes every position wrong.
    shifted = evaluate_texts(["BCD"], ["ABCD"])
    assert shifted.per_position_acc == [0.0, 0.0, 0.0, 0.0]


def test_vin_check_digit_rate() -> None:
    result = evaluate_texts([VALID, INVALID, VALID[:-1], VALID], [VALID] * 4, vin=True)
    assert result.check_digit_valid_rate == pytest.approx(2 / 4)
    assert result.per_position_acc is not None and len(result.per_position_acc) == 17
    assert result.per_position_acc[16] == pytest.approx(2 / 4)  # '9' wrong, one missing
    assert "vin_valid=0.5000" in result.summary_line()


def test_confusion_matrix_image() -> None:
    confusion = {("8", "8"): 10, ("B", "B"): 10, ("B", "8"): 3, ("0", "0"): 5, ("1", ""): 1}
    img = confusion_matrix_image(confusion)
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
    assert img.shape[0] > 100 and img.shape[1] > 100
    assert img.std() > 5  # something is drawn, not a blank canvas

    # One off-diagonal pair must change the picture compared with a purely diagonal matrix.
    diagonal = confusion_matrix_image({("A", "A"): 5, ("B", "B"): 5})
    with_error = confusion_matrix_image({("A", "A"): 5, ("B", "B"): 5, ("A", "B"): 5})
    assert diagonal.shape == with_error.shape
    assert np.abs(diagonal.astype(int) - with_error.astype(int)).sum() > 0

    many = {(chr(65 + i % 26) + str(i // 26), chr(65 + i % 26) + str(i // 26)): 1
            for i in range(60)}
    assert confusion_matrix_image(many, max_chars=10).dtype == np.uint8
    empty = confusion_matrix_image({})
    assert empty.dtype == np.uint8 and empty.ndim == 3


def test_error_grid_and_png(tmp_path: Path) -> None:
    crops = [np.full((32, 100, 3), 200, np.uint8), np.zeros((20, 300), np.uint8),
             np.random.default_rng(0).random((40, 60, 3)).astype(np.float32)]
    grid = error_grid(crops, ["ABC", "XYZ", "12"], ["A8C", "XY", "123"],
                      confidences=[0.87, 0.5, 0.1], cols=2, cell_height=48)
    assert grid.dtype == np.uint8 and grid.ndim == 3 and grid.shape[2] == 3
    assert grid.shape[0] > 2 * 48 and grid.shape[1] > 2 * 48  # two rows, two columns
    # Wrong characters are drawn in red: some strongly red pixels exist.
    red = (grid[:, :, 0] > 150) & (grid[:, :, 1] < 80) & (grid[:, :, 2] < 80)
    assert red.any()
    one_col = error_grid(crops, ["ABC", "XYZ", "12"], ["A8C", "XY", "123"], cols=1)
    assert one_col.shape[0] > grid.shape[0]
    assert error_grid([], [], []).dtype == np.uint8

    out = save_png(tmp_path / "sub" / "grid.png", grid)
    back = cv2.imread(str(out), cv2.IMREAD_COLOR)
    assert back is not None and back.shape == grid.shape
    np.testing.assert_array_equal(back[:, :, ::-1], grid)  # RGB in, RGB out (cv2 reads BGR)
    with pytest.raises(ValueError):
        save_png(tmp_path / "bad.png", grid.astype(np.float32))

"""Evaluation metrics (hand-computed), alignment, per-position accuracy, VIN validity, visuals."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from vinocr.engine.evaluation import align, evaluate_texts
from vinocr.engine.visuals import confusion_matrix_image, error_grid, save_png
from vinocr.metrics import ECE_BINS, accuracy_at_coverage, expected_calibration_error

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
    # ECE bins (15): 0.9 -> bin 13 (right), 0.8 -> bin 12 (wrong), 0.3 -> bin 4 (wrong).
    assert result.ece == pytest.approx((0.1 + 0.8 + 0.3) / 3)
    # ceil(0.9 * 3) = ceil(0.95 * 3) = 3: every read is kept.
    assert result.acc_at_90_coverage == pytest.approx(1 / 3)
    assert result.acc_at_95_coverage == pytest.approx(1 / 3)
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
    assert plain.ece is None and plain.acc_at_90_coverage is None
    # All correct: no wrong side, so no gap.
    assert evaluate_texts(["A"], ["A"], confidences=[0.5]).confidence_gap is None
    empty = evaluate_texts([], [])
    assert empty.n == 0 and empty.seq_acc == 0.0 and empty.worst == []
    assert empty.ece is None and empty.acc_at_95_coverage is None
    with pytest.raises(ValueError):
        evaluate_texts(["A"], ["A", "B"])
    with pytest.raises(ValueError):
        evaluate_texts(["A"], ["A"], confidences=[0.1, 0.2])


def test_ece_calibrated_and_overconfident() -> None:
    # Calibrated: 8 of 10 right at 0.8 (bin 12), 2 of 4 right at 0.5 (bin 7).
    conf = [0.8] * 10 + [0.5] * 4
    ok = [True] * 8 + [False] * 2 + [True, False, True, False]
    assert expected_calibration_error(conf, ok) == pytest.approx(0.0, abs=1e-12)
    # Overconfident: bin 14 (0.95) is right 2/4 -> |0.5 - 0.95| * 4/6 = 0.3;
    # bin 9 (0.65) is right 1/2 -> |0.5 - 0.65| * 2/6 = 0.05.
    conf = [0.95, 0.95, 0.95, 0.95, 0.65, 0.65]
    ok = [True, True, False, False, True, False]
    assert expected_calibration_error(conf, ok) == pytest.approx(0.35)
    # Errors in opposite directions do not cancel across bins: 0.9 (bin 13) always wrong,
    # 0.1 (bin 1) always right -> 0.9 * 2/4 + 0.9 * 2/4, although mean conf = accuracy = 0.5.
    assert expected_calibration_error([0.9, 0.9, 0.1, 0.1],
                                      [False, False, True, True]) == pytest.approx(0.9)
    assert ECE_BINS == 15
    # 1.0 is in the last bin, 0.0 in the first; n = 1 and empty input.
    assert expected_calibration_error([1.0], [False]) == pytest.approx(1.0)
    assert expected_calibration_error([0.0], [True]) == pytest.approx(1.0)
    assert expected_calibration_error([0.7], [True]) == pytest.approx(0.3)
    assert expected_calibration_error([], []) is None
    with pytest.raises(ValueError):
        expected_calibration_error([0.5], [True, False])


def test_accuracy_at_coverage() -> None:
    conf = [0.9, 0.2, 0.99, 0.5, 0.7, 0.7, 0.3, 0.95, 0.6, 0.8]
    ok = [True, False, True, False, False, True, True, True, True, True]
    # Most confident first: i2 T, i7 T, i0 T, i9 T, i4 F, i5 T (tie with i4: index order),
    # i8 T, i3 F, i6 T, i1 F.
    assert accuracy_at_coverage(conf, ok, 0.90) == pytest.approx(7 / 9)  # ceil(9.0) = 9
    assert accuracy_at_coverage(conf, ok, 0.95) == pytest.approx(7 / 10)  # ceil(9.5) = 10
    assert accuracy_at_coverage(conf, ok, 0.5) == pytest.approx(4 / 5)  # the tie keeps i4
    assert accuracy_at_coverage(conf, ok, 0.4) == pytest.approx(1.0)
    assert accuracy_at_coverage(conf, ok, 1.0) == pytest.approx(0.7)
    assert accuracy_at_coverage([0.3], [True], 0.9) == 1.0  # n = 1: the one read is kept
    assert accuracy_at_coverage([0.3], [False], 0.95) == 0.0
    assert accuracy_at_coverage([], [], 0.9) is None
    with pytest.raises(ValueError):
        accuracy_at_coverage(conf, ok, 0.0)
    with pytest.raises(ValueError):
        accuracy_at_coverage([0.5], [], 0.9)


def test_calibration_ignores_nan_confidences() -> None:
    r = evaluate_texts(["A", "B", "C"], ["A", "B", "X"], confidences=[float("nan"), 0.8, 0.4])
    # Over the two valid confidences: bin 12 right (0.2), bin 6 wrong (0.4).
    assert r.ece == pytest.approx((0.2 + 0.4) / 2)
    assert r.acc_at_90_coverage == pytest.approx(1 / 2)  # ceil(1.8) = 2 of 2
    single = evaluate_texts(["A"], ["A"], confidences=[0.75])
    assert single.ece == pytest.approx(0.25) and single.acc_at_95_coverage == 1.0
    assert evaluate_texts(["A"], ["A"], confidences=[float("nan")]).ece is None


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


def test_province_signs_are_drawn_as_characters_not_boxes() -> None:
    """A font without Chinese glyphs draws every sign as the same box: two different signs would
    give the same picture, and a reviewer could not see which province was misread."""
    crop = [np.full((24, 94, 3), 128, np.uint8)]
    a = error_grid(crop, ["皖A12345"], ["京A12345"])
    b = error_grid(crop, ["苏A12345"], ["浙A12345"])
    assert a.shape == b.shape and np.abs(a.astype(int) - b.astype(int)).sum() > 0
    m1 = confusion_matrix_image({("皖", "皖"): 5, ("皖", "京"): 1, ("京", "京"): 5})
    m2 = confusion_matrix_image({("苏", "苏"): 5, ("苏", "浙"): 1, ("浙", "浙"): 5})
    assert m1.shape == m2.shape and np.abs(m1.astype(int) - m2.astype(int)).sum() > 0


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

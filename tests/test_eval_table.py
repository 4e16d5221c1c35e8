"""vinocr-eval's numbers on a tiny case checkable by hand."""
from pathlib import Path

import numpy as np
import pytest

from conftest import make_label_dir
from vinocr.charset import load_charset
from vinocr.cli.eval import evaluate_one, evaluate_tracks, format_table, table_row
from vinocr.data import LabelFileDataset
from vinocr.engine.evaluation import mcnemar_exact_p, paired_comparison
from vinocr.engine.model_loading import LoadedModel


class ScriptedModel:
    """Returns one-hot CTC outputs spelling the given texts, in call order."""

    def __init__(self, texts, charset):
        self.texts, self.cs = list(texts), charset

    def predict_proba(self, images):
        import paddle

        n, t = images.shape[0], images.shape[3] // 8
        out = np.full((n, t, self.cs.num_classes), 1e-6, dtype="float32")
        for row in range(n):
            ids = self.cs.encode(self.texts.pop(0))
            frames = [0] * t
            for k, c in enumerate(ids):
                frames[2 * k] = c          # character, then a blank frame
            for f, c in enumerate(frames):
                out[row, f, c] = 1.0
        return paddle.to_tensor(out / out.sum(-1, keepdims=True))


def test_eval_numbers_by_hand(tmp_path: Path):
    labels = ["AB123", "CD456", "EF789", "GH012"]
    make_label_dir(tmp_path, labels)
    cs = load_charset("plate")
    # 3 exact, 1 with one substitution (GH012 -> GH812): 1 edit over 20 characters
    model = ScriptedModel(["AB123", "CD456", "EF789", "GH812"], cs)
    loaded = LoadedModel("scripted", model, cs, {})
    ev = evaluate_one(loaded, LabelFileDataset(tmp_path / "labels.txt", charset=cs),
                      {"method": "greedy"}, [3, 48, 96], batch_size=3)
    r = ev["result"]
    assert ev["preds"] == ["AB123", "CD456", "EF789", "GH812"]
    assert r.n == 4 and r.seq_acc == pytest.approx(0.75)
    assert r.char_acc == pytest.approx(1 - 0.2 / 4)      # mean NED: (0 + 0 + 0 + 1/5) / 4
    assert r.cer == pytest.approx(1 / 20)
    assert r.per_position_acc == pytest.approx([1, 1, 0.75, 1, 1])
    assert r.top_confusions(1) == [(("0", "8"), 1)]
    # one-hot outputs: confidence 1 on right and wrong alike, so the gap is 0; all four reads sit
    # in the top ECE bin, right 3/4 at confidence 1: ECE 0.25. ceil(0.9 * 4) = ceil(0.95 * 4) = 4
    # reads kept: accuracy 0.75 at either coverage.
    assert r.ece == pytest.approx(0.25, abs=1e-4)
    assert r.acc_at_90_coverage == r.acc_at_95_coverage == pytest.approx(0.75)
    table = format_table([table_row("scripted", "labels.txt", r, 1.5)])
    header, _, row = table.splitlines()
    assert header.startswith("| model | dataset | n | seq_acc | char_acc | ned | cer | "
                             "check_digit_valid_rate | confidence_gap | ece | acc@90%cov | "
                             "acc@95%cov | per_position_acc |")
    assert row == ("| scripted | labels.txt | 4 | 0.7500 | 0.9500 | 0.0500 | 0.0500 | - | 0.0000 | "
                   "0.2500 | 0.7500 | 0.7500 | 1.00 1.00 0.75 1.00 1.00 | - | 1.5000 | - | - | - |")
    # a second model on the same samples: fixes GH012, breaks AB123 and CD456
    second = paired_comparison(ev["preds"], ["AB128", "CD450", "EF789", "GH012"], labels)
    assert (second.n, second.gained, second.lost) == (4, 1, 2)
    assert second.p_value == pytest.approx(1.0)  # 1 vs 2 of 3 disagreements: chance
    # same_as_first: 1 of the 4 texts (EF789) is identical to the first model's
    row = format_table([table_row("second", "labels.txt", r, 1.5, second, 0.25)]).splitlines()[2]
    assert row.endswith("| +1/-2 | 1 | 0.2500 |")


def test_mcnemar_exact_p_values():
    assert mcnemar_exact_p(10, 0) == pytest.approx(2 * 0.5 ** 10)
    assert mcnemar_exact_p(0, 10) == mcnemar_exact_p(10, 0)
    assert mcnemar_exact_p(5, 5) == 1.0 and mcnemar_exact_p(0, 0) == 1.0
    # n = 13, k = 1: 2 * (1 + 13) / 2**13
    assert mcnemar_exact_p(12, 1) == pytest.approx(2 * 14 / 2 ** 13)
    with pytest.raises(ValueError):
        mcnemar_exact_p(-1, 3)
    with pytest.raises(ValueError, match="predictions for"):
        paired_comparison(["A"], ["A", "B"], ["A", "B"])


class ScriptedTracks:
    """Tracks of 5 blank frames each with their plate texts (the model is scripted)."""

    def __init__(self, texts):
        self.tracks = [type("Track", (), {"text": t})() for t in texts]

    def load_track(self, j):
        return {"lr": [np.zeros((16, 48, 3), dtype=np.uint8) for _ in range(5)]}


def test_eval_tracks_scores_the_fused_read_per_track():
    """A track counts as read when its fused text is right, however many frames misread it:
    ABC1234 is right on 3 of 5 frames (fused right), BRA2E19 on none (fused wrong)."""
    cs = load_charset("plate")
    frames = ["ABC1234", "ABC1284", "ABC1234", "A8C1234", "ABC1234",
              "BRA2E18", "BRA2E18", "BRA2E18", "BRA2F18", "BRA2E18"]
    loaded = LoadedModel("scripted", ScriptedModel(frames, cs), cs, {})
    ev = evaluate_tracks(loaded, ScriptedTracks(["ABC1234", "BRA2E19"]), {"method": "greedy"},
                         [3, 48, 160], batch_size=10, method="sequence")
    assert ev["preds"] == ["ABC1234", "BRA2E18"] and ev["labels"] == ["ABC1234", "BRA2E19"]
    assert ev["result"].n == 2 and ev["result"].seq_acc == pytest.approx(0.5)
    assert ev["frame_acc"] == pytest.approx(3 / 10)
    row = table_row("scripted", "tracks", ev["result"], 1.0, frame_acc=ev["frame_acc"])
    assert row["frame_acc"] == pytest.approx(0.3)

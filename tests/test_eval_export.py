"""vinocr-eval tables and vinocr-export on a tiny trained run, through the command line."""
import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import paddle
import pytest

from conftest import assert_close_rel, make_label_dir, tiny_config
from vinocr.engine.trainer import Trainer

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("ev")
    rng = np.random.default_rng(1)
    labels = ["".join(rng.choice(list("ABC0123"), 4)) for _ in range(12)]
    make_label_dir(root, labels[:8], name="train.txt", subdir="tr")
    make_label_dir(root, labels[8:], name="test.txt", subdir="te")
    # the shared tiny CRNN run, trained on train.txt only (test.txt stays unseen)
    cfg = tiny_config(root, root / "run", epochs=1, Eval__dataset=None)
    Trainer(cfg).fit()
    return root


def test_eval_table_and_artifacts(trained: Path):
    out = trained / "eval"
    res = subprocess.run([sys.executable, str(REPO / "tools/eval.py"), "--models",
                          str(trained / "run"), str(trained / "run/latest"), "--data",
                          str(trained / "test.txt"), str(trained / "train.txt"), "--out",
                          str(out)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]
    rows = list(csv.DictReader((out / "table.csv").open()))
    assert len(rows) == 4 and {r["n"] for r in rows} == {"4", "8"}
    assert all(0.0 <= float(r["char_acc"]) <= 1.0 for r in rows)
    # the second model is compared with the first on each dataset, sample by sample
    for first, second in ((rows[0], rows[2]), (rows[1], rows[3])):
        assert first["vs_first"] == "" and first["dataset"] == second["dataset"]
        gained, lost = (int(x) for x in second["vs_first"].lstrip("+").split("/-"))
        n = int(second["n"])
        assert (gained - lost) / n == pytest.approx(float(second["seq_acc"]) -
                                                    float(first["seq_acc"]))
        assert 0.0 < float(second["p_vs_first"]) <= 1.0
    assert "| model | dataset |" in (out / "table.md").read_text()
    # confidence columns: ECE in [0, 1]; at n = 4 and 8, 95% coverage (ceil(3.8) = 4,
    # ceil(7.6) = 8) keeps every read, so it is the plain sequence accuracy
    assert "| confidence_gap | ece | acc@90%cov | acc@95%cov |" in (out / "table.md").read_text()
    for r in rows:
        assert 0.0 <= float(r["ece"]) <= 1.0 and 0.0 <= float(r["acc@90%cov"]) <= 1.0
        assert float(r["acc@95%cov"]) == pytest.approx(float(r["seq_acc"]))
    assert (out / "errors_m0_d0.csv").is_file()
    bad = subprocess.run([sys.executable, str(REPO / "tools/eval.py"), "--models",
                          str(trained / "nope"), "--data", str(trained / "test.txt")],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr


def test_export_matches_checkpoint(trained: Path):
    out = trained / "exported"
    res = subprocess.run([sys.executable, str(REPO / "tools/export.py"), "--checkpoint",
                          str(trained / "run"), "--out", str(out)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]
    import yaml

    from vinocr.engine.model_loading import load_trained
    from vinocr.export import load_predictor, run_paddle_predictor

    doc = yaml.safe_load((out / "inference.yml").read_text())
    assert doc["PostProcess"]["character_dict"][:3] == ["0", "1", "2"]
    assert doc["vinocr"]["decode"] == {"method": "greedy"}
    x = np.random.default_rng(0).uniform(-1, 1, (2, 3, 48, 96)).astype("float32")
    model = load_trained(str(trained / "run")).model
    ref = model.predict_proba(paddle.to_tensor(x)).numpy()
    predictor = load_predictor(out)
    got = run_paddle_predictor(predictor, x)
    assert_close_rel(got, ref, rtol=1e-4, logits=model(paddle.to_tensor(x)).numpy(),
                     what="exported predictor probabilities")

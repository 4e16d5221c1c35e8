"""vinocr.predict.Recognizer, vinocr-predict and vinocr-bench on a tiny trained, exported CRNN."""
from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import cv2
import numpy as np
import paddle
import pytest

from conftest import VALID_VINS, assert_close_rel, text_image, tiny_config, write_png
from vinocr.charset import load_charset
from vinocr.errors import VinocrError
from vinocr.predict import RecognitionResult, Recognizer

REPO = Path(__file__).resolve().parents[1]
IMAGE_SHAPE = (3, 48, 96)


def _has_onnx_export() -> bool:
    try:
        from vinocr.export.onnx import export_onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.fixture(scope="module")
def exported(data: Path, tmp_path_factory) -> Dict[str, Path]:
    """A 1-epoch tiny CRNN run on the shared plate data, exported (and with ONNX when possible)."""
    from vinocr.cli.export import main as export_main
    from vinocr.engine.trainer import Trainer

    root = tmp_path_factory.mktemp("pred")
    Trainer(tiny_config(data, root / "run", epochs=1)).fit()
    # "exp": Paddle files only (--no-onnx), so the default backend is Paddle there;
    # "exp_onnx": the default export, with inference.onnx.
    assert export_main(["--checkpoint", str(root / "run"), "--out", str(root / "exp"),
                        "--no-onnx", "--log-level", "WARNING"]) == 0
    dirs = {"root": root, "run": root / "run", "exp": root / "exp"}
    if _has_onnx_export():
        assert export_main(["--checkpoint", str(root / "run"), "--out", str(root / "exp_onnx"),
                            "--log-level", "WARNING"]) == 0
        dirs["exp_onnx"] = root / "exp_onnx"
    return dirs


@pytest.fixture(scope="module")
def rec(exported) -> Recognizer:
    return Recognizer.from_dir(exported["exp"])


@pytest.fixture(scope="module")
def narrow(tmp_path_factory) -> Path:
    """Crops no wider than the model input's aspect (48 x 96), in several sizes."""
    root = tmp_path_factory.mktemp("narrow")
    rng = np.random.default_rng(3)
    lines = []
    for i, (h, w) in enumerate([(32, 38), (48, 96), (40, 61), (20, 33), (64, 100), (30, 24)]):
        img = cv2.resize(text_image("A7B", seed=i), (w, h))
        img = np.clip(img.astype(int) + rng.integers(-10, 10, img.shape), 0, 255).astype(np.uint8)
        write_png(root / f"im/{i}.png", img)
        lines.append(f"im/{i}.png\tA7B")
    (root / "labels.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root / "labels.txt"


def _record_inputs(recognizer: Recognizer) -> List[np.ndarray]:
    """Make ``recognizer``'s engine keep a copy of every batch it receives."""
    seen: List[np.ndarray] = []
    run = recognizer.backend.run

    def recording(batch: np.ndarray) -> np.ndarray:
        seen.append(np.array(batch, copy=True))
        return run(batch)

    recognizer.backend.run = recording  # type: ignore[method-assign]
    return seen


def _dygraph_logits(run: Path, images) -> np.ndarray:
    """The trained model's logits for ``images`` (paths or BGR arrays), one crop at a time:
    their magnitude sets how far probabilities from other kernels or batchings may drift."""
    from vinocr.engine.model_loading import load_trained
    from vinocr.data.preprocess import resize_norm

    model = load_trained(str(run)).model
    with paddle.no_grad():
        return np.concatenate([model(paddle.to_tensor(resize_norm(
            cv2.imread(str(im)) if isinstance(im, (str, Path)) else im, IMAGE_SHAPE)[0][None]))
            .numpy().ravel() for im in images])


# ------------------------------------------------------------------------------- library API
def test_import_vinocr_does_not_import_paddle():
    code = ("import sys, vinocr\nassert 'paddle' not in sys.modules\n"
            "from vinocr import Recognizer, RecognitionResult\n"
            "assert Recognizer.__module__ == 'vinocr.predict'\n"
            "assert 'paddle' not in sys.modules, 'vinocr.predict imported paddle'\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert res.returncode == 0, res.stderr[-2000:]
    import vinocr

    with pytest.raises(AttributeError):
        vinocr.NoSuchName  # noqa: B018


def test_training_and_export_preprocessing_identical(exported, narrow, data):
    """What RecognitionSamples (augmentation off) trains on == what the predictor is fed."""
    from vinocr.data.loader import RecognitionSamples
    from vinocr.data.registry import open_dataset

    rec = Recognizer.from_dir(exported["exp"])
    assert rec.image_shape == IMAGE_SHAPE
    # Crops that fit the input width: the default (paddleocr-style dynamic width) path, batch 1
    # and as one padded batch.
    samples = RecognitionSamples(open_dataset(narrow, charset="plate"), "plate", IMAGE_SHAPE,
                                 max_text_length=8, augment=None)
    paths = [str(samples.dataset.path_of(i)) for i in range(len(samples))]
    seen = _record_inputs(rec)
    for i, path in enumerate(paths):
        rec.predict(path)
        assert seen[-1].shape == (1,) + IMAGE_SHAPE
        assert seen[-1].dtype == np.float32
        assert np.array_equal(seen[-1][0], samples[i][0]), paths[i]
    seen.clear()
    rec.predict(paths, batch_size=len(paths))
    assert len(seen) == 1
    order = sorted(range(len(paths)), key=lambda i: cv2.imread(paths[i]).shape[1] /
                   cv2.imread(paths[i]).shape[0])  # predict() batches by aspect ratio
    for row, i in zip(seen[0], order):
        assert np.array_equal(row, samples[i][0])
    # Wider crops (the training set's): by default, the same squeeze as training.
    fixed = Recognizer.from_dir(exported["exp"])
    train = RecognitionSamples(open_dataset(data / "train.txt", charset="plate"), "plate",
                               IMAGE_SHAPE, max_text_length=8, augment=None)
    seen = _record_inputs(fixed)
    fixed.predict([train.dataset.load_image(i) for i in range(4)])
    assert all(np.array_equal(seen[0][i], train[i][0]) for i in range(4))
    # paddleocr's rule keeps their aspect instead: a wider input than training's.
    dynamic = Recognizer.from_dir(exported["exp"], dynamic_width=True)
    assert dynamic.preprocess([train.dataset.load_image(0)]).shape[3] > IMAGE_SHAPE[2]


def test_recognizer_matches_dygraph(exported, data, rec):
    from vinocr.engine.model_loading import load_trained
    from vinocr.data.preprocess import resize_norm
    from vinocr.data.registry import open_dataset
    from vinocr.decode import build_decoder

    loaded = load_trained(str(exported["run"]))
    decoder = build_decoder({"method": "greedy"}, charset=loaded.charset)
    ds = open_dataset(data / "val.txt")
    images = [ds.load_image(i) for i in range(len(ds))] + [text_image("B12", seed=9)]
    with paddle.no_grad():
        probs = [loaded.model.predict_proba(paddle.to_tensor(resize_norm(im, IMAGE_SHAPE)[0][None]))
                 .numpy()[0] for im in images]
    ref = [decoder.decode(p) for p in probs]
    got = rec.predict(images, batch_size=1)
    assert [r.text for r in got] == [r.text for r in ref]
    assert_close_rel([r.confidence for r in got], [r.confidence for r in ref], rtol=1e-4,
                     logits=_dygraph_logits(exported["run"], images), what="confidences")
    # Batched (same-size crops of val plus a narrower one): texts do not depend on batching.
    assert [r.text for r in rec.predict(images, batch_size=16)] == [r.text for r in ref]


def test_result_object(rec, data, exported):
    path = data / "va/00000.png"
    one = rec.predict(path)
    assert isinstance(one, RecognitionResult)
    assert rec.predict(str(path)) == one == rec.predict(cv2.imread(str(path)))
    grey = rec.predict(cv2.imread(str(path), cv2.IMREAD_GRAYSCALE))
    assert isinstance(grey, RecognitionResult)
    assert len(one.char_confidences) == len(one.text)
    assert all(0.0 <= c <= 1.0 for c in one.char_confidences)
    expected = float(np.mean(one.char_confidences)) if one.text else 0.0
    assert one.confidence == pytest.approx(expected, abs=1e-6)
    d = one.to_dict()
    assert set(d) == {"text", "confidence", "char_confidences"}  # plate charset: no VIN fields
    json.dumps(d)
    many = rec.predict([path, path])
    assert isinstance(many, list) and [m.text for m in many] == [one.text, one.text]
    # a batch of 2 may run other kernels than a batch of 1
    assert_close_rel([m.confidence for m in many], [one.confidence] * 2, rtol=1e-4,
                     logits=_dygraph_logits(exported["run"], [path]), what="batched confidence")
    assert rec.predict([]) == []
    with pytest.raises(VinocrError):
        rec.predict(np.zeros((4, 5, 6, 7), np.uint8))
    with pytest.raises(VinocrError):
        rec.predict(data / "missing.png")
    with pytest.raises(VinocrError):
        rec.predict(123)  # type: ignore[arg-type]


def test_from_dir_decode_override_and_errors(exported, tmp_path):
    from vinocr.decode import BeamSearchDecoder, GreedyDecoder

    exp = exported["exp"]
    assert isinstance(Recognizer.from_dir(exp).decoder, GreedyDecoder)
    beam = Recognizer.from_dir(exp, decode={"method": "beam", "beam_size": 4})
    assert isinstance(beam.decoder, BeamSearchDecoder)
    assert isinstance(Recognizer.from_dir(exp, decode="beam").decoder, BeamSearchDecoder)
    with pytest.raises(VinocrError, match="method"):
        Recognizer.from_dir(exp, decode={"method": "nope"})
    with pytest.raises(VinocrError, match="not found"):
        Recognizer.from_dir(tmp_path / "nope")
    with pytest.raises(VinocrError, match="inference.yml"):
        Recognizer.from_dir(tmp_path)
    with pytest.raises(VinocrError, match="backend"):
        Recognizer.from_dir(exp, backend="tensorrt")
    with pytest.raises(VinocrError, match="inference.onnx"):
        Recognizer.from_dir(exp, backend="onnxruntime")


class _OneHotBackend:
    """A fake engine spelling fixed texts: each character on one frame, blanks between."""

    name = "fake"
    fixed_width = None

    def __init__(self, texts: List[str], charset) -> None:
        self.texts, self.charset = texts, charset

    def run(self, batch: np.ndarray) -> np.ndarray:
        T = 2 * max(len(t) for t in self.texts) + 1
        out = np.full((len(batch), T, self.charset.num_classes), 0.01 / self.charset.num_classes,
                      np.float32)
        for n in range(len(batch)):
            ids = self.charset.encode(self.texts[n % len(self.texts)])
            cls = [0] * T
            cls[1:2 * len(ids):2] = ids
            for t, c in enumerate(cls):
                out[n, t, c] += 0.99
        return out / out.sum(-1, keepdims=True)


def test_vin_fields():
    vin = load_charset("vin")
    na_bad = VALID_VINS[0][:8] + "1" + VALID_VINS[0][9:]   # North America: check digit required
    eu_bad = VALID_VINS[3][:8] + "0" + VALID_VINS[3][9:]   # Europe: check digit optional
    texts = [VALID_VINS[0], na_bad, eu_bad, "1HGCM8263"]
    rec = Recognizer(_OneHotBackend(texts, vin), vin, IMAGE_SHAPE)
    img = text_image("X" * 17)
    res = rec.predict([img] * 4, batch_size=4)
    assert [r.text for r in res] == texts
    assert [r.vin_valid for r in res] == [True, False, True, False]
    assert [r.check_digit_ok for r in res] == [True, False, False, False]
    # 1M8GDM9AXKP042788: position 10 'K', position 7 a digit -> the 1980-2009 cycle.
    assert [r.model_year for r in res] == [1989, 1989, 2012, None]
    assert set(res[0].to_dict()) == {"text", "confidence", "char_confidences", "vin_valid",
                                     "check_digit_ok", "model_year"}
    assert all(0.9 < c <= 1.0 for c in res[0].char_confidences)


def test_vin_export_from_dir(tmp_path):
    """An exported VIN-charset model reports the VIN fields; the VIN decoder only spells VINs."""
    from conftest import TINY_CRNN
    from vinocr.export import export_inference
    from vinocr.models.factory import model_from_config

    paddle.seed(0)
    model, _ = model_from_config({"name": "crnn", "pretrained": None, "params": TINY_CRNN}, "vin")
    export_inference(model, tmp_path / "vin", "vin", (3, 48, 160),
                     {"decode": {"method": "greedy"}, "charset": "vin"})
    img = text_image(VALID_VINS[1])
    greedy = Recognizer.from_dir(tmp_path / "vin")
    assert greedy.is_vin
    r = greedy.predict(img)
    assert isinstance(r.vin_valid, bool) and isinstance(r.check_digit_ok, bool)
    constrained = Recognizer.from_dir(tmp_path / "vin", decode="vin").predict(img)
    assert constrained.text == "" or constrained.vin_valid


# ------------------------------------------------------------------------------------ CLIs
def _predict_cli(argv: List[str]) -> int:
    from vinocr.cli.predict import main

    return main(argv)


def test_predict_cli_folder(exported, data, rec, tmp_path):
    folder = data / "va"
    expected = rec.predict(sorted(folder.glob("*.png")))
    out = tmp_path / "p.json"
    assert _predict_cli(["--model", str(exported["exp"]), str(folder), "--out", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert [Path(r["path"]).name for r in rows] == sorted(p.name for p in folder.glob("*.png"))
    assert [r["text"] for r in rows] == [r.text for r in expected]
    assert all("label" not in r and "vin_valid" not in r for r in rows)
    assert all(len(r["char_confidences"]) == len(r["text"]) for r in rows)
    out_csv = tmp_path / "p.csv"
    assert _predict_cli(["--model", str(exported["exp"]), str(folder), "--format", "csv",
                         "--out", str(out_csv), "--batch-size", "3"]) == 0
    table = list(csv.DictReader(out_csv.open(encoding="utf-8")))
    assert list(table[0]) == ["path", "text", "confidence", "char_confidences"]
    assert [r["text"] for r in table] == [r.text for r in expected]
    assert all(len(r["char_confidences"].split()) == len(r["text"]) for r in table)
    # Through the script, to stdout: Paddle's native oneDNN chatter must not reach the JSON.
    res = subprocess.run([sys.executable, str(REPO / "tools/predict.py"), "--model",
                          str(exported["exp"]), str(folder / "00000.png")],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]
    assert json.loads(res.stdout)[0]["text"] == expected[0].text


def test_predict_cli_label_file(exported, data, rec, tmp_path, capsys):
    images = sorted((data / "tr").glob("*.png"))[:6]
    preds = [r.text for r in rec.predict(images)]
    lines, correct = [], []
    for i, (path, pred) in enumerate(zip(images, preds)):
        if i % 2 == 0 and pred:
            label, ok = pred.lower(), True  # plate labels are upper-cased before comparing
        else:
            label, ok = ("AAAAA" if pred != "AAAAA" else "BBBBB"), False
        lines.append(f"{path.relative_to(data)}\t{label}")
        correct.append(ok)
    assert any(correct) and not all(correct), preds
    label_file = data / "pred_labels.txt"
    label_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "l.json"
    assert _predict_cli(["--model", str(exported["exp"]), str(label_file), str(data / "va"),
                         "--out", str(out)]) == 0
    assert f"accuracy: {sum(correct)}/6" in capsys.readouterr().err
    rows = json.loads(out.read_text())
    assert len(rows) == 6 + 4
    assert [r["correct"] for r in rows[:6]] == correct
    assert [r["label"] for r in rows[:6]] == [ln.split("\t")[1] for ln in lines]
    assert all("label" not in r for r in rows[6:])
    out_csv = tmp_path / "l.csv"
    assert _predict_cli(["--model", str(exported["exp"]), str(label_file), "--format", "csv",
                         "--out", str(out_csv)]) == 0
    table = list(csv.DictReader(out_csv.open(encoding="utf-8")))
    assert [r["correct"] == "True" for r in table] == correct
    assert [r["text"] for r in table] == preds


def test_predict_cli_errors(exported, tmp_path, capsys):
    assert _predict_cli(["--model", str(exported["exp"]), str(tmp_path / "nope.png")]) == 2
    assert "nope.png: input not found" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert _predict_cli(["--model", str(exported["exp"]), str(tmp_path / "empty")]) == 2
    assert "no images" in capsys.readouterr().err
    assert _predict_cli(["--model", str(tmp_path), str(tmp_path / "empty")]) == 2


def test_bench_cli(exported, capsys):
    from vinocr.cli.bench import main

    assert main(["--model", str(exported["exp"]), "--runs", "3"]) == 0
    out = capsys.readouterr().out
    assert "| backend | threads | batch | p50 ms | p95 ms | images/s |" in out
    rows = [ln for ln in out.splitlines() if ln.startswith("| paddle")]
    assert [tuple(c.strip() for c in ln.split("|")[2:4]) for ln in rows] == \
        [("1", "1"), ("1", "16"), ("2", "1"), ("2", "16")]
    assert all(float(ln.split("|")[4]) > 0 for ln in rows)
    assert "onnxruntime: skipped (no inference.onnx" in out


@pytest.mark.skipif(not _has_onnx_export(), reason="needs vinocr.export.onnx and onnxruntime")
def test_onnxruntime_backend(exported, data, rec, capsys):
    images = sorted((data / "va").glob("*.png")) + sorted((data / "tr").glob("*.png"))[:3]
    ort_rec = Recognizer.from_dir(exported["exp_onnx"], backend="onnxruntime", threads=2)
    got, ref = ort_rec.predict(images), rec.predict(images)
    assert [r.text for r in got] == [r.text for r in ref]
    assert_close_rel([r.confidence for r in got], [r.confidence for r in ref], rtol=1e-4,
                     logits=_dygraph_logits(exported["run"], images),
                     what="onnxruntime confidences")
    from vinocr.cli.bench import main

    assert main(["--model", str(exported["exp_onnx"]), "--runs", "3", "--threads", "1",
                 "--batch-sizes", "2"]) == 0
    out = capsys.readouterr().out
    rows = {ln.split("|")[1].strip(): ln for ln in out.splitlines() if ln.startswith("| ")}
    # the default engine is marked; the stock rapidocr ONNX is timed in the same run and every
    # other row states its speed-up over it
    assert "| onnxruntime (default) | 1 | 2 |" in out and "| paddle (oneDNN) | 1 | 2 |" in out
    assert rows["rapidocr ONNX (stock)"].rstrip(" |").endswith("-")
    for name in ("onnxruntime (default)", "paddle (oneDNN)"):
        assert float(rows[name].split("|")[-2].strip().rstrip("x")) > 0
    assert "onnxruntime-int8: skipped (no inference_int8.onnx" in out


@pytest.mark.skipif(not _has_onnx_export(), reason="needs vinocr.export.onnx and onnxruntime")
def test_auto_backend_prefers_onnxruntime(exported, monkeypatch):
    from vinocr.predict import resolve_backend

    assert Recognizer.from_dir(exported["exp_onnx"]).backend.name == "onnxruntime"
    assert Recognizer.from_dir(exported["exp"]).backend.name == "paddle"  # no inference.onnx
    assert resolve_backend(exported["exp_onnx"], "paddle") == "paddle"
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # not installed: Paddle it is
    assert resolve_backend(exported["exp_onnx"]) == "paddle"


def test_plate_format_fields_in_results_and_csv():
    from vinocr.charset import load_charset
    from vinocr.cli.predict import csv_text

    plate = load_charset("plate")
    texts = ["ABC1234", "BRA2E19"]
    rec = Recognizer(_OneHotBackend(texts, plate), plate, IMAGE_SHAPE,
                     decode={"method": "plate", "formats": ["br"], "beam_size": 4})
    res = rec.predict([text_image("X" * 7)] * 2, batch_size=2)
    assert [(r.text, r.format, r.region) for r in res] == [("ABC1234", "br_old", "BR"),
                                                          ("BRA2E19", "mercosur", "BR")]
    assert res[0].to_dict()["formats"] == ["br_old"]
    header = csv_text([r.to_dict() | {"path": "a.png"} for r in res], vin=False,
                      labelled=False).splitlines()[0]
    assert header.endswith("format,region")
    # without plate formats the JSON keeps its old keys
    greedy = Recognizer(_OneHotBackend(texts, plate), plate, IMAGE_SHAPE)
    assert "format" not in greedy.predict(text_image("X" * 7)).to_dict()

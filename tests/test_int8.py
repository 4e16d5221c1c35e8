"""int8 export (``vinocr-export --int8``): what it writes and records, that vinocr and stock
paddleocr run it, how close it stays to fp32, and the calibration-data guards.

The model is the real pretrained PP-OCRv4 (with the VIN head), calibrated on rendered VIN crops and
compared on other rendered crops, so the test exercises the network users quantise (depthwise
convs, SVTR neck). Tolerances are loose on purpose: int8 error is a property of the method, and
onnxruntime's int8 kernels differ between CPUs with and without VNNI.
"""
import shutil
from pathlib import Path
from typing import List, Tuple

import cv2
import numpy as np
import pytest
import yaml

from test_export_compat import env, greedy, paddleocr_batch, paddleocr_results  # noqa: F401
from vinocr.errors import VinocrError

REPO = Path(__file__).resolve().parents[1]
CONFIG = str(REPO / "configs/vin/ppocrv4_mobile.yml")


def _labelled(seed: int, n: int) -> List[Tuple[np.ndarray, str]]:
    from vinocr.data.synth import random_vin, render_vin

    out = []
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        vin = random_vin(rng)
        image, _ = render_vin(vin, rng)
        out.append((image, vin))
    return out


def _render(seed: int, n: int) -> List[np.ndarray]:
    return [image for image, _ in _labelled(seed, n)]


def _write_label_file(folder: Path, name: str, seed: int, n: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for i, (image, vin) in enumerate(_labelled(seed, n)):
        cv2.imwrite(str(folder / f"{name}_{i:03d}.png"), image)
        lines.append(f"{name}_{i:03d}.png\t{vin}")
    path = folder / f"{name}.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def int8_dir(env, tmp_path_factory) -> Path:  # noqa: F811 - env is the shared fixture
    from vinocr.cli.export import main

    data = tmp_path_factory.mktemp("calib")
    train = _write_label_file(data, "train", 1, 40)
    out = tmp_path_factory.mktemp("int8") / "model"
    # -o overrides the config of the pretrained model (here its recorded decoder)
    assert main(["--checkpoint", "pretrained", "-c", CONFIG, "-o", "Decode.beam_size=4",
                 "--out", str(out), "--int8", "--calib", str(train), "--calib-size", "32",
                 "--log-level", "WARNING"]) == 0
    return out


def test_int8_export_is_recorded(int8_dir):
    import onnx

    doc = yaml.safe_load((int8_dir / "inference.yml").read_text(encoding="utf-8"))
    assert doc["vinocr"]["decode"]["beam_size"] == 4
    info = doc["vinocr"]["int8"]
    assert info["file"] == "inference_int8.onnx" and info["format"] == "QDQ"
    assert info["weights"] == "int8, per channel" and info["calibration"]["crops"] == 32
    assert info["calibration"]["source"].endswith("train.txt")
    assert "inference_int8.onnx" in doc["vinocr"]["files"]  # size + sha256, checked on load
    # fp32 files stay as they were beside it
    assert (int8_dir / "inference.onnx").is_file() and (int8_dir / "inference.pdiparams").is_file()
    model = onnx.load(str(int8_dir / "inference_int8.onnx"))
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("QuantizeLinear") > 30
    # per-channel weights: weight DequantizeLinear nodes carry one scale per output channel
    inits = {i.name: i for i in model.graph.initializer}
    scales = [inits[n.input[1]] for n in model.graph.node if n.op_type == "DequantizeLinear"
              and n.input[1] in inits and len(inits[n.input[1]].dims) == 1
              and inits[n.input[1]].dims[0] > 1]
    assert scales, "no per-channel weight scales"
    # the output softmax stays float: a uint8 probability would read every class < 1/255 as 0
    producer = {o: n for n in model.graph.node for o in n.output}
    assert producer[model.graph.output[0].name].op_type == "Softmax"


def test_int8_runs_and_stays_close_to_fp32(int8_dir):
    from vinocr.predict import Recognizer

    images = _render(2, 24)  # not the calibration crops
    fp32 = Recognizer.from_dir(int8_dir, backend="onnxruntime", decode="greedy")
    int8 = Recognizer.from_dir(int8_dir, backend="onnxruntime-int8", decode="greedy")
    assert int8.backend.name == "onnxruntime-int8"
    a, b = fp32.frame_probs(images), int8.frame_probs(images)
    diff = np.concatenate([np.abs(x - y).ravel() for x, y in zip(a, b)])
    top = np.concatenate([x.argmax(-1) == y.argmax(-1) for x, y in zip(a, b)])
    # Stated tolerance (probabilities are in [0, 1]): mean absolute difference <= 0.03 and >= 75%
    # of frames with the same top class. Measured on an AVX-512 VNNI CPU: 0.008 and 87%; with the
    # softmax quantised to uint8 (the bug _head_nodes prevents) the mean difference was 0.05.
    assert diff.mean() <= 0.03, f"mean |p_int8 - p_fp32| = {diff.mean():.3f}"
    assert top.mean() >= 0.75, f"only {100 * top.mean():.1f}% of frames agree"
    for r in int8.predict(images):
        assert 0.0 <= r.confidence <= 1.0
    # the VIN decoder runs on int8 probabilities and only returns grammar-valid texts
    vin = Recognizer.from_dir(int8_dir, backend="onnxruntime-int8", decode="vin")
    assert all(r.text == "" or r.vin_valid for r in vin.predict(images))


def test_damaged_int8_file_is_named(int8_dir, tmp_path):
    from vinocr.predict import Recognizer

    d = tmp_path / "model"
    shutil.copytree(int8_dir, d)
    with open(d / "inference_int8.onnx", "r+b") as fh:
        fh.truncate(1000)
    with pytest.raises(VinocrError, match="inference_int8.onnx"):
        Recognizer.from_dir(d, backend="onnxruntime-int8")
    # the fp32 forms of the same directory still load
    assert Recognizer.from_dir(d).backend.name == "onnxruntime"


def test_stock_paddleocr_runs_int8(int8_dir, tmp_path):
    # paddleocr's engine='onnxruntime' reads model_dir/inference.onnx: the int8 file under that
    # name, beside the same inference.yml, is all it needs.
    from vinocr.export.onnx import onnx_session

    only = tmp_path / "int8_for_paddleocr"
    only.mkdir()
    shutil.copy(int8_dir / "inference_int8.onnx", only / "inference.onnx")
    shutil.copy(int8_dir / "inference.yml", only / "inference.yml")
    images = _render(3, 4)
    got = paddleocr_results(only, images, engine="onnxruntime")
    session = onnx_session(int8_dir / "inference_int8.onnx")
    probs = session.run(None, {session.get_inputs()[0].name: paddleocr_batch(images)})[0]
    assert [t for t, _ in got] == [t for t, _ in greedy(probs)]


def test_calibration_guards(env, tmp_path, capsys):  # noqa: F811
    from vinocr.cli.export import main

    data = tmp_path / "data"
    test_split = _write_label_file(data, "test", 4, 20)
    base = ["--checkpoint", "pretrained", "-c", CONFIG, "--log-level", "WARNING"]
    # a test split never calibrates (it would tune the model to the data that measures it)
    assert main(base + ["--out", str(tmp_path / "a"), "--int8", "--calib", str(test_split)]) == 2
    err = capsys.readouterr().err
    assert "named like a test split" in err and "test.txt" in err
    assert not (tmp_path / "a").exists()  # refused before anything was written
    with pytest.raises(SystemExit):  # -o without -c has nothing to override
        main(["--checkpoint", "pretrained", "--out", str(tmp_path / "b"), "-o", "Global.x=1"])
    assert "-o needs -c" in capsys.readouterr().err
    # --int8 needs --calib; --calib alone is a mistake too
    with pytest.raises(SystemExit) as exc:
        main(base + ["--out", str(tmp_path / "b"), "--int8"])
    assert exc.value.code == 2 and "--int8 needs --calib" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(base + ["--out", str(tmp_path / "b"), "--calib", str(test_split)])
    assert main(base + ["--out", str(tmp_path / "c"), "--int8", "--calib",
                        str(tmp_path / "missing.txt")]) == 2
    assert "missing.txt: no such file" in capsys.readouterr().err
    few = _write_label_file(data, "few", 5, 5)
    assert main(base + ["--out", str(tmp_path / "d"), "--int8", "--calib", str(few)]) == 2
    assert "at least 16 crops" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()

"""Command-line faults: option values that make no sense, vinocr-predict and vinocr-eval scoring the
same samples, Ctrl-C during multi-worker synthesis, pickles opened only on request, and pretrained
weights that leave the model (mostly) at its random init."""
from __future__ import annotations

import csv
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List

import numpy as np
import paddle
import pytest

from conftest import TINY_CRNN, text_image, tiny_config, write_png
from vinocr.errors import VinocrError

REPO = Path(__file__).resolve().parents[1]
IMAGE_SHAPE = (3, 48, 96)


# ------------------------------------------------------------------------------------ helpers
def usage_error(main: Callable[[List[str]], int], argv: List[str],
                capsys: pytest.CaptureFixture) -> str:
    """Run ``main(argv)``; it must stop in argparse (exit 2) with one error line and no
    traceback. Returns that line."""
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1, err
    return errors[0]


def crnn_state(num_classes: int, seed: int = 0) -> Dict[str, np.ndarray]:
    from vinocr.models import build_model

    paddle.seed(seed)
    model = build_model("crnn", num_classes, **TINY_CRNN)
    return {k: v.numpy() for k, v in model.state_dict().items()}


def crnn_arch(pretrained: str, **extra) -> Dict:
    return {"name": "crnn", "pretrained": pretrained, "params": dict(TINY_CRNN), **extra}


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    """An (untrained) tiny CRNN exported with the plate charset: cheap and deterministic."""
    from vinocr.export import export_inference
    from vinocr.models.factory import model_from_config

    root = tmp_path_factory.mktemp("faults")
    paddle.seed(0)
    model, _ = model_from_config({"name": "crnn", "pretrained": None, "params": TINY_CRNN},
                                 "plate")
    return export_inference(model, root / "exp", "plate", IMAGE_SHAPE,
                            {"decode": {"method": "greedy"}, "charset": "plate"})


# --------------------------------------------------------------- 1. option values that make no sense
@pytest.mark.parametrize("value", ["0", "-2"])
def test_eval_batch_size_must_be_positive(exported, tmp_path, value, capsys):
    from vinocr.cli.eval import main

    write_png(tmp_path / "im/0.png", text_image("AB123"))
    (tmp_path / "labels.txt").write_text("im/0.png\tAB123\n", encoding="utf-8")
    line = usage_error(main, ["--models", str(exported), "--data", str(tmp_path / "labels.txt"),
                              "--batch-size", value], capsys)
    assert line.startswith("vinocr-eval: error: argument --batch-size: must be >= 1")


@pytest.mark.parametrize("prog, argv, option", [
    ("bench", ["--model", "M", "--warmup", "-1"], "--warmup"),
    ("data", ["validate", "D", "--length", "0"], "--length"),
    ("data", ["validate", "D", "--length", "17", "-3"], "--length"),
    ("data", ["split", "D", "--out", "O", "--fractions", "0.8", "nan", "0.1"], "--fractions"),
    ("data", ["split", "D", "--out", "O", "--fractions", "0.8", "-0.1", "0.3"], "--fractions"),
    ("export", ["--checkpoint", "C", "--out", "O", "--onnx", "--atol", "nan"], "--atol"),
    ("export", ["--checkpoint", "C", "--out", "O", "--onnx", "--atol=-1e-4"], "--atol"),
    ("pretrained", ["info", "W.safetensors", "--keys", "-1"], "--keys"),
])
def test_cli_numeric_options_rejected_by_argparse(prog, argv, option, tmp_path, capsys):
    import importlib

    main = importlib.import_module(f"vinocr.cli.{prog}").main
    argv = [str(tmp_path / a) if a in ("M", "D", "O", "C", "W.safetensors") else a for a in argv]
    line = usage_error(main, argv, capsys)
    assert f"argument {option}" in line


def test_positive_int_message_for_negative_values():
    import argparse

    from vinocr.cli.common import positive_int

    with pytest.raises(argparse.ArgumentTypeError, match="must be >= 1, got -2"):
        positive_int("-2")


@pytest.mark.parametrize("argv", [["vin", "--n", "2", "--out", "X", "--seed", "-1"],
                                  ["vin", "--n", "2", "--out", "X", "--delimiter-prob", "nan"],
                                  ["vin", "--n", "2", "--out", "X", "--workers", "0"]])
def test_synth_numeric_options(argv, tmp_path, capsys):
    from vinocr.cli.synth import main

    argv = [str(tmp_path / a) if a == "X" else a for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("vinocr-synth: error: argument") and len(err.splitlines()) == 1
    assert not (tmp_path / "X").exists()


# ------------------------------------------------------ 2. vinocr-predict scores what vinocr-eval does
def test_predict_and_eval_score_the_same_samples(exported, tmp_path, capsys):
    from vinocr.cli.eval import main as eval_main
    from vinocr.cli.predict import main as predict_main
    from vinocr.predict import Recognizer

    images = [write_png(tmp_path / f"im/{i}.png", text_image(t, seed=i))
              for i, t in enumerate(["AB123", "CD456", "EF789", "GH012", "XY999", "ZZ111"])]
    preds = [r.text for r in Recognizer.from_dir(exported).predict(images)]
    assert all(preds), preds
    # 2 right, 2 wrong, 2 with characters the plate charset does not have
    labels = [preds[0], preds[1].lower(), "AAAAA" if preds[2] != "AAAAA" else "BBBBB",
              "BBBBB" if preds[3] != "BBBBB" else "CCCCC", preds[4] + "#", "ÄB12"]
    label_file = tmp_path / "labels.txt"
    label_file.write_text("".join(f"im/{i}.png\t{l}\n" for i, l in enumerate(labels)),
                          encoding="utf-8")
    capsys.readouterr()
    assert eval_main(["--models", str(exported), "--data", str(label_file),
                      "--out", str(tmp_path / "ev")]) == 0
    row = next(csv.DictReader((tmp_path / "ev/table.csv").open(encoding="utf-8")))
    assert int(row["n"]) == 4 and float(row["seq_acc"]) == pytest.approx(0.5)
    capsys.readouterr()
    out = tmp_path / "p.json"
    assert predict_main(["--model", str(exported), str(label_file), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "accuracy: 2/4 = 0.5000" in err
    skipped = [line for line in err.splitlines() if "not scored" in line]
    assert len(skipped) == 1 and "2 of 6" in skipped[0]
    assert "outside charset 'plate'" in skipped[0] and "labels.txt:5" in skipped[0]
    import json

    rows = json.loads(out.read_text(encoding="utf-8"))
    assert len(rows) == 6  # every listed image is still predicted
    assert [r.get("correct") for r in rows] == [True, True, False, False, None, None]
    assert [r["label"] for r in rows] == labels
    assert "outside charset" in rows[4]["skipped"] and "skipped" not in rows[0]


# ------------------------------------------------------------- 3. Ctrl-C during multi-worker synth
def _ctrl_c_synth(argv: List[str], started: Callable[[], bool]) -> subprocess.CompletedProcess:
    """Run ``vinocr-synth argv`` in its own process group, wait until ``started()`` (workers
    are producing), give it ~3 s more, then signal SIGINT to the whole group as a terminal's
    Ctrl-C does (parent and workers)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-m", "vinocr.cli.synth", *argv, "--workers", "2",
                             "--log-level", "WARNING"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None and not started():
            time.sleep(0.2)
        assert proc.poll() is None, proc.communicate()
        time.sleep(3)
        os.killpg(proc.pid, signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def _interrupted_cleanly(res: subprocess.CompletedProcess, out: Path) -> None:
    import json

    assert res.returncode == 130, res.stderr
    assert "Traceback" not in res.stderr, res.stderr
    assert res.stderr.strip() == "vinocr-synth: interrupted", res.stderr
    assert json.loads((out / "synth.json").read_text(encoding="utf-8"))["complete"] is False


def test_synth_ctrl_c_with_workers(tmp_path):
    out = tmp_path / "synth"
    images = out / "images"
    res = _ctrl_c_synth(["vin", "--n", "200000", "--out", str(out)],
                        lambda: images.is_dir() and any(images.iterdir()))
    _interrupted_cleanly(res, out)
    # the label file is written last: none, so the images do not pass for a dataset
    assert not (out / "labels.txt").exists()
    assert not (out / "labels.txt.tmp").exists()
    # the interrupted folder is ours: --overwrite may replace it
    import json

    from vinocr.data.synth.writer import generate_vin_dataset

    generate_vin_dataset(out, 3, overwrite=True)
    assert len((out / "labels.txt").read_text().splitlines()) == 3
    assert json.loads((out / "synth.json").read_text())["complete"] is True


def test_synth_plates_ctrl_c_leaves_only_complete_tracks(tmp_path):
    import json

    out = tmp_path / "plates"
    res = _ctrl_c_synth(["plates", "--tracks", "20000", "--out", str(out)],
                        lambda: any(out.glob("Scenario-A/*/track_*/annotations.json")))
    _interrupted_cleanly(res, out)
    tracks = sorted(out.glob("Scenario-A/*/track_*"))
    assert tracks
    for track in tracks:  # every track left is whole: annotations.json is written last
        assert json.loads((track / "annotations.json").read_text(encoding="utf-8"))


# ---------------------------------------------------------------- 4. pickles only on request
class _Payload:
    """Unpickling this creates a file: the kind of code a .pdparams can run when opened."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.fixture
def evil(tmp_path) -> Path:
    path = tmp_path / "evil.pdparams"
    path.write_bytes(pickle.dumps({"w": _Payload(tmp_path / "pwned")}))
    return path


@pytest.mark.parametrize("command", ["info", "convert"])
def test_pretrained_cli_refuses_pickles_without_flag(command, evil, tmp_path, capsys):
    from vinocr.cli.pretrained import main

    argv = [command, str(evil)] + ([str(tmp_path / "out.safetensors")] if command == "convert"
                                   else [])
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("vinocr-pretrained: error:")
    assert "pickle" in err and "--trust-pickle" in err
    assert not (tmp_path / "pwned").exists()
    assert not (tmp_path / "out.safetensors").exists()


def test_pretrained_cli_reads_pickles_with_flag(tmp_path, capsys):
    from vinocr.cli.pretrained import main
    from vinocr.models.weights import load_state_file

    state = crnn_state(10)
    paddle.save({k: paddle.to_tensor(v) for k, v in state.items()}, str(tmp_path / "m.pdparams"))
    assert main(["info", str(tmp_path / "m.pdparams"), "--trust-pickle"]) == 0
    assert f"{len(state)} tensors" in capsys.readouterr().out
    assert main(["convert", str(tmp_path / "m.pdparams"), str(tmp_path / "m.safetensors"),
                 "--trust-pickle"]) == 0
    again = load_state_file(tmp_path / "m.safetensors")  # safetensors: no flag needed
    assert set(again) == set(state)
    assert main(["info", str(tmp_path / "m.safetensors")]) == 0


def test_architecture_pretrained_pickle_needs_trust_pickle(evil, tmp_path):
    from vinocr.models.factory import model_from_config

    with pytest.raises(VinocrError, match="Architecture.trust_pickle") as exc:
        model_from_config(crnn_arch(str(evil)), "plate")
    assert "\n" not in str(exc.value)
    assert not (tmp_path / "pwned").exists()
    state = crnn_state(38)
    paddle.save({k: paddle.to_tensor(v) for k, v in state.items()}, str(tmp_path / "m.pdparams"))
    with pytest.raises(VinocrError, match="trust_pickle"):
        model_from_config(crnn_arch(str(tmp_path / "m.pdparams")), "plate")
    _, report = model_from_config(crnn_arch(str(tmp_path / "m.pdparams"), trust_pickle=True),
                                  "plate")
    assert report.clean and len(report.loaded) == len(state)


def test_config_declares_trust_pickle(data, tmp_path):
    assert tiny_config(data, tmp_path / "run")["Architecture"]["trust_pickle"] is False
    cfg = tiny_config(data, tmp_path / "run", Architecture__trust_pickle=True)
    assert cfg["Architecture"]["trust_pickle"] is True


# ------------------------------------------------ 5. pretrained weights that leave parameters missing
def test_config_declares_allow_missing(data, tmp_path):
    assert tiny_config(data, tmp_path / "run")["Architecture"]["allow_missing"] is False
    cfg = tiny_config(data, tmp_path / "run", Architecture__allow_missing=True)
    assert cfg["Architecture"]["allow_missing"] is True


def test_pretrained_without_matching_weights_is_an_error(tmp_path):
    from vinocr.models.factory import model_from_config
    from vinocr.models.weights import WeightsError, save_state_file

    path = save_state_file({"foo.weight": np.zeros((3, 3), "float32")}, tmp_path / "x.safetensors")
    with pytest.raises(WeightsError) as exc:
        model_from_config(crnn_arch(str(path)), "plate")
    message = str(exc.value)
    assert "\n" not in message and "0 loaded" in message
    assert f"{len(crnn_state(38))} missing" in message
    assert "backbone." in message and "Architecture.allow_missing" in message
    model, report = model_from_config(crnn_arch(str(path), allow_missing=True), "plate")
    assert not report.loaded and report.missing


def test_partially_matching_pretrained_names_the_missing_keys(tmp_path):
    from vinocr.models.factory import model_from_config
    from vinocr.models.weights import WeightsError, save_state_file

    state = crnn_state(38)
    gone = sorted(k for k in state if k.startswith("head.rnn."))
    path = save_state_file({k: v for k, v in state.items() if k not in gone},
                           tmp_path / "part.safetensors")
    with pytest.raises(WeightsError, match=f"{len(state) - len(gone)} loaded, {len(gone)} "
                                           "missing") as exc:
        model_from_config(crnn_arch(str(path)), "plate")
    assert gone[0] in str(exc.value) or any(k in str(exc.value) for k in gone)


def test_new_charset_head_still_starts_fresh(tmp_path):
    """The CTC head legitimately differs when the dictionary changes: not an error."""
    from vinocr.models.factory import model_from_config
    from vinocr.models.weights import save_state_file

    path = save_state_file(crnn_state(10), tmp_path / "ten.safetensors")
    _, report = model_from_config(crnn_arch(str(path)), "plate")
    assert {k for k, _, _ in report.skipped} == {"head.fc.weight", "head.fc.bias"}
    # with the dictionary beside the file and head_transfer off, the head is dropped: also fine
    (tmp_path / "ten.dict.txt").write_text("\n".join("ABCDEFGH"), encoding="utf-8")
    _, report = model_from_config(crnn_arch(str(path), head_transfer=False), "plate")
    assert report is not None


def test_dropped_head_and_training_only_branches_start_fresh(tmp_path):
    """PP-OCRv4: a head dropped by head_transfer: false, and a GTC branch (training only, never
    in deploy weights) may start from scratch without allow_missing."""
    from vinocr.models import build_model
    from vinocr.models.factory import model_from_config
    from vinocr.models.weights import HEAD_BIAS, HEAD_WEIGHT, save_state_file

    paddle.seed(0)
    source = build_model("ppocrv4_mobile", 20, neck_depth=1)
    path = save_state_file({k: v.numpy() for k, v in source.state_dict().items()},
                           tmp_path / "v4.safetensors")
    (tmp_path / "v4.dict.txt").write_text("\n".join("ABCDEFGHJKLMNPRSTU"), encoding="utf-8")
    arch = {"name": "ppocrv4_mobile", "pretrained": str(path), "params": {"neck_depth": 1}}
    _, report = model_from_config(dict(arch, head_transfer=False), "vin")
    assert report.missing == [HEAD_WEIGHT, HEAD_BIAS]
    _, report = model_from_config(dict(arch, params={"neck_depth": 1, "gtc": True}), "vin")
    assert report.missing and all(k.startswith("head.") and "gtc" in k for k in report.missing)


def test_trainer_refuses_pretrained_without_matching_weights(data, tmp_path):
    from vinocr.engine.trainer import Trainer
    from vinocr.models.weights import WeightsError, save_state_file

    path = save_state_file({"foo.weight": np.zeros((3, 3), "float32")}, tmp_path / "x.safetensors")
    with pytest.raises(WeightsError, match="0 loaded"):
        Trainer(tiny_config(data, tmp_path / "run", Architecture__pretrained=str(path)))


def test_repeated_overrides_all_apply():
    # Before: `-o A=1 -o B=2` silently dropped A=1 (argparse nargs="+" without extend).
    from vinocr.cli.finetune import build_parser

    args = build_parser().parse_args(["-c", "x.yml", "-o", "Train.epochs=1", "Global.seed=3",
                                      "-o", "Train.batch_size=8"])
    assert args.opt == ["Train.epochs=1", "Global.seed=3", "Train.batch_size=8"]
    assert build_parser().parse_args(["-c", "x.yml"]).opt == []

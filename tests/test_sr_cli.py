"""The SR command line end to end on tiny models: vinocr-train-sr (all stages, resume),
vinocr-eval-sr (the tables), vinocr-export-sr and vinocr-predict --sr --rec --tracks."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from conftest import tiny_config, write_synthetic_tracks

PLATES = {"Scenario-A/Brazilian/track_00001": ("ABC1234", "Brazilian"),
          "Scenario-A/Mercosur/track_00002": ("BRA2E19", "Mercosur"),
          "Scenario-A/Brazilian/track_00003": ("XYZ9876", "Brazilian")}


@pytest.fixture(scope="module")
def tracks(tmp_path_factory) -> Path:
    return write_synthetic_tracks(tmp_path_factory.mktemp("sr_cli_tracks"), PLATES, seed=3)


@pytest.fixture(scope="module")
def rec_run(data, tmp_path_factory) -> Path:
    """A tiny CRNN plate recogniser trained for one epoch by the normal trainer (the SR trainer
    must back-propagate through a recurrent recogniser too)."""
    from vinocr.engine.trainer import Trainer

    run = tmp_path_factory.mktemp("sr_cli_rec") / "rec"
    Trainer(tiny_config(data, run, epochs=1)).fit()
    return run


@pytest.fixture(scope="module")
def sr_config(tracks, rec_run, tmp_path_factory) -> Path:
    cfg = {
        "Global": {"run_dir": str(tmp_path_factory.mktemp("sr_cli") / "sr"), "visualdl": True,
                   "grid_every_epochs": 1, "log_every_steps": 1},
        "Generator": {"params": {"num_feat": 8, "growth": 4, "num_blocks": 1}},
        "OCR": {"model": str(rec_run)},
        "Data": {"train": str(tracks), "val": str(tracks)},
        "Stages": {"stage1": {"epochs": 1}, "stage2": {"epochs": 1},
                   "stage3": {"epochs": 1, "lr_scale": 0.1, "ocr_lr_scale": 0.1}},
        "Train": {"batch_size": 4, "max_steps_per_epoch": 2},
        "Decode": {"method": "plate", "beam_size": 4},
    }
    path = tmp_path_factory.mktemp("sr_cli_cfg") / "sr.yml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def sr_run(sr_config) -> Path:
    from vinocr.cli.train_sr import main

    assert main(["-c", str(sr_config), "--stage", "all"]) == 0
    return Path(yaml.safe_load(sr_config.read_text())["Global"]["run_dir"])


def test_train_sr_writes_every_stage_and_resolved_config(sr_run):
    for name in ("stage1_epoch_1", "stage2_epoch_1", "stage3_epoch_1", "best", "latest"):
        assert (sr_run / name / "state.json").is_file(), name
    assert (sr_run / "config.yml").is_file()
    history = json.loads((sr_run / "training_history.json").read_text())
    assert [h["stage"] for h in history] == [1, 2, 3]
    assert "train_layout" in history[1] and "val_word_acc" in history[2]
    assert any((sr_run / "visualdl").iterdir())


def test_train_sr_resume_runs_only_what_is_left(sr_run, sr_config, tmp_path):
    import shutil

    from vinocr.cli.train_sr import main

    run = tmp_path / "copy"
    shutil.copytree(sr_run, run)
    shutil.rmtree(run / "stage3_epoch_1")
    assert main(["-c", str(sr_config), "-o", f"Global.run_dir={run}", "--stage", "all",
                 "--resume", str(run / "stage2_epoch_1")]) == 0
    history = json.loads((run / "training_history.json").read_text())
    assert [h["stage"] for h in history] == [1, 2, 3]
    assert (run / "stage3_epoch_1" / "state.json").is_file()


def test_train_sr_errors_are_one_line(sr_config, tmp_path, capsys):
    from vinocr.cli.train_sr import main

    assert main(["-c", str(sr_config), "-o", "OCR.model=null"]) == 2
    assert "OCR.model: required" in capsys.readouterr().err
    assert main(["-c", str(sr_config), "-o", "Loss.gama=1"]) == 2
    assert "unknown key 'Loss.gama'" in capsys.readouterr().err
    assert main(["-c", str(sr_config), "--stage", "5"]) == 2
    assert "--stage" in capsys.readouterr().err
    assert main(["-c", str(sr_config), "-o", f"Data.train={tmp_path / 'none'}"]) == 2
    assert "not found" in capsys.readouterr().err


def test_eval_sr_table_has_every_row_and_column(sr_run, rec_run, tracks, tmp_path, capsys):
    from vinocr.cli.eval_sr import main

    # latest = after stage 3 (best/ may be an earlier stage on this untrained toy run)
    assert main(["--sr", str(sr_run / "latest"), "--data", str(tracks), "--out",
                 str(tmp_path), "--lr-ocr", str(rec_run)]) == 0
    table = (tmp_path / "table.md").read_text()
    assert "track, sequence log-prob sum" in table and "PSNR" in table
    rows = json.loads((tmp_path / "results.json").read_text())["rows"]
    names = [(r["input"], r["recogniser"]) for r in rows]
    assert names == [("bicubic LR", "OCR (HR)"), ("bicubic LR", "OCR (LR-trained)"),
                     ("bicubic LR", "OCR (joint with SR (1 frame))"),
                     ("SR (1 frame)", "OCR (HR)"), ("SR (1 frame)", "OCR (joint, stage 3)"),
                     ("HR", "OCR (HR)")]
    for r in rows:
        for key in ("frame_word_acc", "track_single", "track_logprob", "track_vote", "track_sequence"):
            assert 0.0 <= r[key] <= 1.0
    assert rows[0]["psnr"] is not None and rows[-1]["psnr"] is None
    import cv2

    grid = cv2.imread(str(tmp_path / "examples.png"))
    assert grid is not None and grid.shape[0] > 3 * 32   # one LR | SR | HR row per track


def test_export_sr_and_predict_chain_write_a_submission(sr_run, tracks, tmp_path):
    from vinocr.cli.export_sr import main as export_main
    from vinocr.cli.predict import main as predict_main
    from vinocr.sr.submission import read_submission

    sr_dir, rec_dir = tmp_path / "sr", tmp_path / "rec"
    assert export_main([str(sr_run), "--out", str(sr_dir), "--rec-out", str(rec_dir)]) == 0
    assert (sr_dir / "sr.yml").is_file() and (rec_dir / "inference.yml").is_file()
    sub = tmp_path / "submission.txt"
    assert predict_main(["--sr", str(sr_dir), "--rec", str(rec_dir), "--tracks", str(tracks),
                         "--submission", str(sub), "--quiet"]) == 0
    rows = read_submission(sub)
    assert sorted(r[0] for r in rows) == ["track_00001", "track_00002", "track_00003"]
    assert all(0.0 <= r[2] <= 1.0 for r in rows)


def test_train_sr_into_an_existing_run_needs_resume_or_overwrite(sr_run, sr_config):
    from vinocr.cli.train_sr import main

    before = (sr_run / "latest" / "state.json").read_text()
    assert main(["-c", str(sr_config), "--stage", "1"]) == 2
    assert (sr_run / "latest" / "state.json").read_text() == before


def test_multi_frame_sr_trains_evaluates_and_reads_tracks(sr_run, sr_config, tracks, tmp_path,
                                                          capsys):
    """Generator.frames: 5 end to end: every input stacks a track's frames, eval-sr and the
    exported model read whole tracks, and single crops are refused with one line."""
    from vinocr.cli.eval_sr import main as eval_main
    from vinocr.cli.export_sr import main as export_main
    from vinocr.cli.predict import main as predict_main
    from vinocr.cli.train_sr import main as train_main
    from vinocr.sr.checkpoint_io import load_sr_checkpoint

    run = tmp_path / "mf"
    assert train_main(["-c", str(sr_config), "-o", f"Global.run_dir={run}", "Generator.frames=5",
                       "Global.visualdl=false", "--stage", "1,3"]) == 0
    ck = load_sr_checkpoint(run / "latest", with_ocr=False)
    assert ck.generator.frames == 5 and ck.generator.conv_first.weight.shape[1] == 15
    # One table for a single-frame and a multi-frame generator on the same tracks.
    assert eval_main(["--sr", str(sr_run / "latest"), str(run / "latest"), "--data", str(tracks), "--out",
                      str(tmp_path / "ev")]) == 0
    rows = json.loads((tmp_path / "ev" / "results.json").read_text())["rows"]
    names = [(r["input"], r["recogniser"]) for r in rows]
    assert ("SR (1 frame)", "OCR (joint, stage 3)") in names
    assert ("SR (5 frames)", "OCR (joint, stage 3)") in names
    assert names[0] == ("bicubic LR", "OCR (HR)") and names[-1] == ("HR", "OCR (HR)")
    sr_dir, rec_dir = tmp_path / "sr", tmp_path / "rec"
    assert export_main([str(run / "latest"), "--out", str(sr_dir), "--rec-out",
                        str(rec_dir)]) == 0
    sub = tmp_path / "submission.txt"
    assert predict_main(["--sr", str(sr_dir), "--rec", str(rec_dir), "--tracks", str(tracks),
                         "--submission", str(sub), "--quiet"]) == 0
    assert len(sub.read_text().splitlines()) == 3
    capsys.readouterr()
    frame = next(tracks.glob("Scenario-A/*/track_*/lr-001.png"))
    assert predict_main(["--sr", str(sr_dir), "--rec", str(rec_dir), str(frame)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--tracks" in err[0]


def test_builtin_pair_packages_predicts_and_seeds_training(sr_run, sr_config, tracks, tmp_path,
                                                          monkeypatch, capsys):
    """tools/package_builtin_sr.py -> vinocr/sr/builtin: float16 weights that load strictly,
    `vinocr-predict --sr builtin --tracks` with no other model (exported once into the cache),
    and `OCR.model: builtin` / `Generator.pretrained: builtin` for a user's own fine-tune."""
    import subprocess
    import sys

    import numpy as np
    import paddle

    from vinocr.cli.predict import main as predict_main
    from vinocr.cli.train_sr import main as train_main
    from vinocr.engine.checkpoint import load_checkpoint
    from vinocr.sr import builtin
    from vinocr.sr.checkpoint_io import load_sr_checkpoint

    (tmp_path / "cmd.txt").write_text("vinocr-train-sr -c sr.yml --stage all\n")
    (tmp_path / "fig.yml").write_text("track_sequence: 0.5\n")
    pkg = tmp_path / "pkg"
    tool = [sys.executable, str(Path(__file__).resolve().parents[1] / "tools"
                                / "package_builtin_sr.py"),
            str(sr_run / "latest"), "--version", "test-1", "--description", "tiny",
            "--commands", str(tmp_path / "cmd.txt"), "--figures", str(tmp_path / "fig.yml"),
            "--out", str(pkg)]
    done = subprocess.run(tool, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    again = subprocess.run(tool, capture_output=True, text=True)  # never replaced silently
    assert again.returncode == 1 and "--overwrite" in again.stderr
    info = yaml.safe_load((pkg / "builtin.yml").read_text())
    assert info["version"] == "test-1" and info["held_out"] == {"track_sequence": 0.5}
    assert "vinocr-train-sr" in info["trained_with"]

    monkeypatch.setattr(builtin, "BUILTIN_DIR", pkg)
    monkeypatch.setenv("VINOCR_CACHE_DIR", str(tmp_path / "cache"))
    # float16 on disk, float32 models; each weight within float16 rounding of the original
    original = load_checkpoint(sr_run / "latest").model_state
    shipped = load_sr_checkpoint("builtin")
    for name, value in shipped.generator.state_dict().items():
        ref = original[f"generator.{name}"]
        assert value.dtype == paddle.float32
        np.testing.assert_allclose(value.numpy(), ref, rtol=1e-3,
                                   atol=1e-3 * float(np.abs(ref).max()))
    sub = tmp_path / "submission.txt"
    assert predict_main(["--sr", "builtin", "--tracks", str(tracks), "--submission", str(sub),
                         "--quiet"]) == 0
    assert len(sub.read_text().splitlines()) == 3
    exports = list((tmp_path / "cache" / "sr-builtin").iterdir())
    assert len(exports) == 1 and (exports[0] / "complete").is_file()
    stamp = (exports[0] / "sr" / "inference.pdiparams").stat().st_mtime_ns
    assert predict_main(["--sr", "builtin", "--tracks", str(tracks), "--submission", str(sub),
                         "--quiet"]) == 0
    assert (exports[0] / "sr" / "inference.pdiparams").stat().st_mtime_ns == stamp  # reused

    run = tmp_path / "ft"
    assert train_main(["-c", str(sr_config), "-o", f"Global.run_dir={run}", "OCR.model=builtin",
                       "Generator.pretrained=builtin", "Global.visualdl=false",
                       "Stages.stage3.epochs=0", "--stage", "1"]) == 0
    assert (run / "latest" / "state.json").is_file()
    capsys.readouterr()
    assert train_main(["-c", str(sr_config), "-o", f"Global.run_dir={tmp_path / 'ft2'}",
                       "Generator.pretrained=builtin", "Generator.frames=5", "--stage", "1"]) == 2
    err = capsys.readouterr().err
    assert "Generator.pretrained" in err and "frames" in err

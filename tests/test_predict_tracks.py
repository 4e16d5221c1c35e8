"""Track recognition end to end: synthetic LRLPR-26 tracks, a tiny exported plate recogniser
(untrained: the texts are arbitrary, the plumbing is what is tested), optional SR, fusion, and the
submission file written by ``vinocr-predict --tracks``."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import cv2
import numpy as np
import pytest

from conftest import assert_close_rel

paddle = pytest.importorskip("paddle")

from vinocr.errors import ConfigError, VinocrError  # noqa: E402
from vinocr.predict import Recognizer  # noqa: E402
from vinocr.sr.pipeline import TrackRecognizer, chain  # noqa: E402
from vinocr.sr.submission import read_submission  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TRACKS = {"Scenario-A/Brazilian/track_00001": ("ABC1234", "Brazilian"),
          "Scenario-A/Mercosur/track_00002": ("BRA2E19", "Mercosur"),
          "Scenario-B/Brazilian/track_00003": ("XYZ9876", "Brazilian")}


@pytest.fixture(scope="module")
def tracks_root(tmp_path_factory) -> Path:
    from conftest import write_synthetic_tracks

    return write_synthetic_tracks(tmp_path_factory.mktemp("lrlpr"), TRACKS, seed=7)


@pytest.fixture(scope="module")
def plate_model(tmp_path_factory) -> Path:
    """A tiny untrained CRNN over the plate charset, exported with the layout-aware decoder."""
    from conftest import TINY_CRNN
    from vinocr.export import export_inference
    from vinocr.models.factory import model_from_config

    out = tmp_path_factory.mktemp("rec") / "plate"
    paddle.seed(0)
    model, _ = model_from_config({"name": "crnn", "pretrained": None, "params": TINY_CRNN},
                                 "plate")
    export_inference(model, out, "plate", (3, 32, 96),
                     {"decode": {"method": "plate", "beam_size": 4}, "charset": "plate"})
    return out


@pytest.fixture(scope="module")
def rec(plate_model) -> Recognizer:
    return Recognizer.from_dir(plate_model)


@pytest.fixture(scope="module")
def sr_model(tmp_path_factory) -> Path:
    from vinocr.export.sr import export_sr
    from vinocr.sr.generator import build_generator

    paddle.seed(0)
    out = tmp_path_factory.mktemp("sr") / "sr"
    export_sr(build_generator("small", scale=2), out, lr_shape=(16, 48))
    return out


class _Upscale:
    """A stand-in SR model: bicubic x2, recording how many images it was given."""

    def __init__(self) -> None:
        self.calls: List[int] = []

    def sr(self, images: List[np.ndarray]) -> List[np.ndarray]:
        self.calls.append(len(images))
        return [cv2.resize(im, (im.shape[1] * 2, im.shape[0] * 2), interpolation=cv2.INTER_CUBIC)
                for im in images]


def _lr_frames(root: Path, rel: str) -> List[np.ndarray]:
    from vinocr.data.lrlpr import LrlprTracks

    return LrlprTracks(root / rel, frames="lr").load_track(0)["lr"]


def test_frame_probs_match_predict(rec, tracks_root):
    frames = _lr_frames(tracks_root, "Scenario-A/Brazilian/track_00001")
    probs = rec.frame_probs(frames, batch_size=2)
    assert len(probs) == len(frames) == 5
    assert all(p.ndim == 2 and p.shape[1] == rec.charset.num_classes for p in probs)
    decoded = [rec.decoder.decode_one(p) for p in probs]
    assert [d.text for d in decoded] == [r.text for r in rec.predict(frames)]


def test_track_recognizer(rec, tracks_root):
    frames = _lr_frames(tracks_root, "Scenario-A/Mercosur/track_00002")
    up = _Upscale()
    res = TrackRecognizer(rec, sr=up, frames=3).recognise(frames)
    assert up.calls == [3] and len(res.frames) == 3 and res.method == "sequence"
    assert 0.0 <= res.confidence <= 1.0
    # The plate decoder applies to the fused output too: a valid layout (or nothing).
    assert res.text == "" or len(res.text) == 7
    single = TrackRecognizer(rec, sr=up, method="single").recognise(frames)
    assert up.calls[-1] == 1 and len(single.frames) == 1
    assert single.text == chain(up, rec, frames[:1])[0].text
    voted = TrackRecognizer(rec, method="vote").recognise(frames)
    assert len(voted.frames) == 5
    with pytest.raises(ConfigError, match="sequence, logprob, vote, single"):
        TrackRecognizer(rec, method="best")
    with pytest.raises(ConfigError, match="frames"):
        TrackRecognizer(rec, frames=0)
    with pytest.raises(VinocrError, match="at least one frame"):
        TrackRecognizer(rec).recognise([])


def test_recognise_many_equals_one_by_one(rec, tracks_root):
    # Frames of several tracks share the recogniser's batches; the results must not change.
    tracks = [_lr_frames(tracks_root, rel) for rel in
              ("Scenario-A/Brazilian/track_00001", "Scenario-A/Mercosur/track_00002")]
    for method in ("sequence", "logprob", "single"):
        fuser = TrackRecognizer(rec, method=method, frames=4)
        many = fuser.recognise_many(tracks)
        one = [fuser.recognise(t) for t in tracks]
        assert [r.text for r in many] == [r.text for r in one]
        assert [len(r.frames) for r in many] == [len(r.frames) for r in one]
        assert_close_rel([r.confidence for r in many], [r.confidence for r in one], rtol=1e-4,
                         what=f"{method} confidences")
    with pytest.raises(VinocrError, match="at least one frame"):
        TrackRecognizer(rec).recognise_many([tracks[0], []])


def _predict(argv: List[str]) -> int:
    from vinocr.cli.predict import main

    return main(argv)


def _check_submission(path: Path) -> Dict[str, float]:
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(TRACKS)
    rows = read_submission(path)
    assert sorted(r[0] for r in rows) == ["track_00001", "track_00002", "track_00003"]
    for line, (track_id, text, conf) in zip(lines, rows):
        assert line == f"{track_id},{text};{conf:.4f}"
        assert text == "" or len(text) == 7
    return {r[0]: r[2] for r in rows}


def test_predict_cli_tracks(plate_model, tracks_root, tmp_path, capsys):
    sub = tmp_path / "out" / "submission.txt"
    assert _predict(["--rec", str(plate_model), "--tracks", str(tracks_root),
                     "--submission", str(sub), "--quiet"]) == 0
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "track accuracy: " in captured.err and "/3 = " in captured.err
    _check_submission(sub)

    sub2 = tmp_path / "vote.txt"
    assert _predict(["--model", str(plate_model), "--tracks", str(tracks_root / "Scenario-A"),
                     "--submission", str(sub2), "--fusion", "vote", "--frames", "2"]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["track"] for r in records] == ["track_00001", "track_00002"]
    assert all(r["method"] == "vote" and len(r["frames"]) == 2 for r in records)
    assert [r["label"] for r in records] == ["ABC1234", "BRA2E19"]
    assert all(isinstance(r["correct"], bool) for r in records)
    assert len(sub2.read_text().splitlines()) == 2


def test_predict_cli_tracks_without_labels(plate_model, tracks_root, tmp_path, capsys):
    # A blind test set: annotations without plate_text still get a submission line per track,
    # and only the labelled tracks are scored.
    import shutil

    blind = tmp_path / "blind"
    shutil.copytree(tracks_root, blind)
    annotations = sorted(blind.rglob("annotations.json"))
    for ann in annotations[1:]:
        doc = json.loads(ann.read_text())
        doc.pop("plate_text", None)
        doc.pop("text", None)
        ann.write_text(json.dumps(doc))
    sub = tmp_path / "blind.txt"
    assert _predict(["--rec", str(plate_model), "--tracks", str(blind), "--submission", str(sub),
                     "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "3 tracks" in err and "/1 = " in err
    assert len(_check_submission(sub)) == 3


def test_predict_cli_tracks_errors(plate_model, tracks_root, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert _predict(["--rec", str(plate_model), "--tracks", str(tmp_path / "empty"),
                     "--submission", str(tmp_path / "s.txt")]) == 2
    err = capsys.readouterr().err.strip()
    assert "no track folders" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "s.txt").exists()
    (tmp_path / "notsr").mkdir()
    assert _predict(["--rec", str(plate_model), "--tracks", str(tracks_root), "--sr",
                     str(tmp_path / "notsr"), "--submission", str(tmp_path / "s.txt")]) == 2
    assert "no sr.yml" in capsys.readouterr().err
    # Two tracks with one id: the submission could not tell them apart.
    import shutil

    dup = tmp_path / "dup"
    for scenario in ("Scenario-A", "Scenario-B"):
        shutil.copytree(tracks_root / "Scenario-A/Brazilian/track_00001",
                        dup / scenario / "Brazilian/track_00001")
    assert _predict(["--rec", str(plate_model), "--tracks", str(dup),
                     "--submission", str(tmp_path / "s.txt")]) == 2
    assert "appears twice" in capsys.readouterr().err
    img = tracks_root / "Scenario-A/Brazilian/track_00001/lr-001.png"
    assert _predict(["--rec", str(plate_model), str(img), "--sr", str(tmp_path / "nope")]) == 2
    assert "SR model directory not found" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        _predict(["--rec", str(plate_model), str(img), "--tracks", str(tracks_root)])
    with pytest.raises(SystemExit):
        _predict(["--rec", str(plate_model), str(img), "--fusion", "vote"])
    with pytest.raises(SystemExit):
        _predict(["--rec", str(plate_model)])


def _predict_subprocess(argv: List[str]) -> subprocess.CompletedProcess:
    """``vinocr-predict`` in a child process: a crash in the native SR engine then fails this
    test with its stderr instead of taking the whole test session down."""
    return subprocess.run([sys.executable, "-m", "vinocr.cli.predict", *argv],
                          capture_output=True, text=True, cwd=str(REPO), timeout=300)


def test_predict_cli_with_sr(plate_model, sr_model, tracks_root, tmp_path):
    sub = tmp_path / "sr_submission.txt"
    res = _predict_subprocess(["--rec", str(plate_model), "--sr", str(sr_model), "--tracks",
                               str(tracks_root), "--submission", str(sub), "--quiet"])
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout == ""
    _check_submission(sub)
    # Single images: SR then recognition, one JSON record per image on stdout.
    img = tracks_root / "Scenario-A/Brazilian/track_00001/lr-001.png"
    res = _predict_subprocess(["--rec", str(plate_model), "--sr", str(sr_model), str(img)])
    assert res.returncode == 0, res.stderr[-3000:]
    rows = json.loads(res.stdout)
    assert [Path(r["path"]).name for r in rows] == ["lr-001.png"]
    assert rows[0]["text"] == "" or len(rows[0]["text"]) == 7
    # The same as the library chain (loaded here only now that the child process survived it).
    from vinocr.data.base import read_image
    from vinocr.export.sr import SRPredictor

    sr = SRPredictor.from_dir(sr_model)
    expected = chain(sr, Recognizer.from_dir(plate_model), [read_image(img)])[0]
    assert (rows[0]["text"], rows[0]["confidence"]) == (expected.text,
                                                        pytest.approx(expected.confidence))
    tracks = TrackRecognizer(Recognizer.from_dir(plate_model), sr=sr)
    lr = _lr_frames(tracks_root, "Scenario-A/Brazilian/track_00001")
    assert tracks.recognise(lr).text == next(r[1] for r in read_submission(sub)
                                             if r[0] == "track_00001")

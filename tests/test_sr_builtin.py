"""The SR pair shipped inside the package (vinocr/resources/sr/plate_br): present in what setup.py
installs, small, documented, loadable strictly, and usable with no network and no training:
`vinocr-predict --sr builtin --tracks DIR` on fresh synthetic tracks."""
from __future__ import annotations

import re
import socket
from pathlib import Path

import numpy as np
import pytest
import yaml

from vinocr.sr import builtin

REPO = Path(__file__).resolve().parents[1]


def test_the_package_installs_every_builtin_file():
    files = sorted(p.name for p in builtin.BUILTIN_DIR.iterdir())
    assert {"state.json", "model.safetensors", "builtin.yml"} <= set(files)
    setup = (REPO / "setup.py").read_text()
    globs = re.findall(r'"(resources/sr/[^"]+)"', setup)
    assert globs, "setup.py package_data does not list the built-in SR weights"
    pkg = REPO / "vinocr"
    installed = {p for g in globs for p in pkg.glob(g)}
    assert {builtin.BUILTIN_DIR / f for f in files} <= installed


def test_builtin_is_small_versioned_and_says_how_it_was_made():
    size = (builtin.BUILTIN_DIR / "model.safetensors").stat().st_size
    assert size <= 10 * 1024 * 1024
    info = builtin.builtin_info()
    assert info["version"] and "vinocr-train-sr" in info["trained_with"]
    assert "vinocr-finetune" in info["trained_with"]  # the HR recogniser it started from
    held_out = info["held_out"]
    assert held_out["tracks"] >= 300 and 0.0 <= held_out["track_accuracy"] <= 1.0


def test_builtin_loads_strictly_and_super_resolves(tmp_path):
    from vinocr.sr.checkpoint_io import load_sr_checkpoint

    ck = load_sr_checkpoint("builtin")
    assert ck.ocr is not None and ck.charset is not None
    info = builtin.builtin_info()
    assert ck.generator.arch_kwargs == info["generator"]
    from vinocr.export.sr import SRPredictor

    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (18, 42, 3), dtype=np.uint8) for _ in range(5)]
    out = SRPredictor.from_generator(ck.generator)(frames)
    assert len(out) == 5 and out[0].shape == (32, 96, 3) and out[0].dtype == np.uint8


def test_predict_sr_builtin_reads_tracks_offline(tmp_path, monkeypatch, capsys):
    from vinocr.cli.predict import main
    from vinocr.data.synth import generate_plate_tracks
    from vinocr.sr.submission import read_submission

    def no_network(*args, **kwargs):
        raise AssertionError("the built-in SR pair tried to open a network connection")

    monkeypatch.setattr(socket, "socket", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setenv("VINOCR_CACHE_DIR", str(tmp_path / "cache"))
    tracks = generate_plate_tracks(tmp_path / "tracks", n_tracks=4, seed=99)
    sub = tmp_path / "submission.txt"
    assert main(["--sr", "builtin", "--tracks", str(tracks), "--submission", str(sub),
                 "--quiet"]) == 0
    rows = read_submission(sub)
    assert len(rows) == 4
    # Brazilian / Mercosur layouts: the shipped recogniser decodes with the plate grammar.
    assert all(re.fullmatch(r"[A-Z]{3}[0-9][A-Z0-9][0-9]{2}", text) for _, text, _ in rows)
    assert "track accuracy" in capsys.readouterr().err

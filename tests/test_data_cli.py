"""`vinocr-data` stats, make-lmdb, augment and preview-aug through the command line."""
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

from conftest import make_label_dir, make_track
from vinocr.data import LabelFileDataset, LmdbDataset

REPO = Path(__file__).resolve().parents[1]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "tools/data.py"), *args],
                          capture_output=True, text=True)


def test_stats_reports_counts_lengths_chars_sizes(label_dir):
    root, labels = label_dir
    res = run("stats", str(root), "--json")
    assert res.returncode == 0, res.stderr
    stats = json.loads(res.stdout)
    assert stats["samples"] == len(labels) and stats["length_histogram"] == {"17": len(labels)}
    assert sum(stats["char_frequency"].values()) == 17 * len(labels)
    assert stats["image_sizes"]["height"]["median"] == 32
    table = run("stats", str(root))
    assert "label length histogram" in table.stdout and "image sizes" in table.stdout


def test_stats_on_tracks(tmp_path: Path):
    make_track(tmp_path / "t", "ABC1234", "Brazilian")
    res = run("stats", str(tmp_path / "t"), "--frames", "both", "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["samples"] == 4


def test_make_lmdb_round_trip(label_dir, tmp_path: Path):
    root, labels = label_dir
    res = run("make-lmdb", str(root / "labels.txt"), "--out", str(tmp_path / "db"))
    assert res.returncode == 0, res.stderr
    db = LmdbDataset(tmp_path / "db")
    src = LabelFileDataset(root / "labels.txt")
    assert db.labels() == labels and np.array_equal(db[3].image, src[3].image)
    again = run("make-lmdb", str(root / "labels.txt"), "--out", str(tmp_path / "db"))
    assert again.returncode == 2 and "--overwrite" in again.stderr


def test_offline_augment_originals_plus_copies(label_dir, tmp_path: Path):
    root, labels = label_dir
    res = run("augment", str(root), "--out", str(tmp_path / "aug"), "--augs-per-sample", "2",
              "--preset", "vin", "--seed", "3")
    assert res.returncode == 0, res.stderr
    out = LabelFileDataset(tmp_path / "aug/labels.txt")
    assert len(out) == 3 * len(labels)
    assert sorted(out.labels()) == sorted(labels * 3)


def test_augment_refuses_test_split(tmp_path: Path, vin_labels):
    make_label_dir(tmp_path / "splits", vin_labels[:3], name="test.txt")
    res = run("augment", str(tmp_path / "splits/test.txt"), "--out", str(tmp_path / "x"),
              "--augs-per-sample", "1")
    assert res.returncode == 2 and "test split" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "x").exists()


def test_preview_aug_writes_png(label_dir, tmp_path: Path):
    root, _ = label_dir
    out = tmp_path / "grid.png"
    res = run("preview-aug", str(root), "--out", str(out), "--n", "3", "--per-row", "4",
              "--preset", "alpr")
    assert res.returncode == 0, res.stderr
    grid = cv2.imread(str(out))
    assert grid is not None and grid.shape[0] >= 3 * 48

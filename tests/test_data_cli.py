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


def test_unwritable_output_is_one_line_error(label_dir):
    root, _ = label_dir
    for args in (("make-lmdb", str(root), "--out", "/proc/vinocr_x"),
                 ("split", str(root), "--out", str(root / "labels.txt" / "x")),
                 ("preview-aug", str(root), "--out", "/proc/vinocr_x/p.png")):
        res = run(*args)
        assert res.returncode == 2, (args, res.stderr)
        assert "Traceback" not in res.stderr and res.stderr.strip().count("\n") == 0


def test_bad_numbers_rejected_by_argument_parser(label_dir, tmp_path: Path):
    root, _ = label_dir
    for args in (("split", str(root), "--out", str(tmp_path / "s"), "--seed", "-1"),
                 ("preview-aug", str(root), "--out", str(tmp_path / "p.png"), "--n", "0"),
                 ("split", str(root), "--out", str(tmp_path / "s"), "--names", "a,../b,c"),
                 ("split", str(root), "--out", str(tmp_path / "s"), "--fractions", "1", "nan", "1")):
        res = run(*args)
        assert res.returncode == 2 and "Traceback" not in res.stderr, (args, res.stderr)
    assert not (tmp_path / "b.txt").exists()


def test_strict_flag_fails_on_first_bad_label(tmp_path: Path):
    lf = make_label_dir(tmp_path / "d", ["ABC123", "AB-123"])
    assert run("stats", str(lf), "--charset", "plate").returncode == 0
    res = run("stats", str(lf), "--charset", "plate", "--strict")
    assert res.returncode == 2 and "labels.txt:2" in res.stderr


def test_augment_refuses_split_folder_containing_test(tmp_path: Path, vin_labels):
    make_label_dir(tmp_path / "splits", vin_labels[:3], name="train.txt", subdir="a")
    make_label_dir(tmp_path / "splits", vin_labels[3:5], name="test.txt", subdir="b")
    res = run("augment", str(tmp_path / "splits"), "--out", str(tmp_path / "o"),
              "--augs-per-sample", "1")
    assert res.returncode == 2 and "test split" in res.stderr


def test_track_conversions_keep_rectification(tmp_path: Path):
    make_track(tmp_path / "t", "ABC1234", "Brazilian")
    from vinocr.data import LrlprTracks
    tracks = LrlprTracks(tmp_path / "t", frames="lr")
    assert run("make-lmdb", str(tmp_path / "t"), "--out", str(tmp_path / "db")).returncode == 0
    assert run("split", str(tmp_path / "t"), "--out", str(tmp_path / "s"),
               "--fractions", "1", "0", "0").returncode == 0
    db = LmdbDataset(tmp_path / "db")
    split = LabelFileDataset(tmp_path / "s/train.txt")
    for i in range(len(tracks)):
        assert db[i].image.shape == tracks[i].image.shape  # rectified, not the raw 24x64 frame
    assert sorted(im.shape for im, _, _ in split) == sorted(im.shape for im, _, _ in tracks)


def test_bad_track_corners_reported_by_validate(tmp_path: Path):
    track = make_track(tmp_path / "t", "ABC1234", "Brazilian")
    ann = json.loads((track / "annotations.json").read_text())
    ann["corners"]["lr-001.png"] = [[0, 0], [1e7, 0], [1e7, 1e5], [0, 1e5]]
    (track / "annotations.json").write_text(json.dumps(ann))
    res = run("validate", str(tmp_path / "t"), "--charset", "plate", "--length", "7")
    assert res.returncode == 1 and "outside the" in res.stdout
    (track / "annotations.json").write_text(json.dumps(ann).replace("10000000.0", "NaN"))
    res = run("validate", str(tmp_path / "t"), "--charset", "plate")
    assert res.returncode == 2 and "finite" in res.stderr


def test_image_quality_measures_what_it_names():
    from vinocr.data.stats import image_quality

    rng = np.random.default_rng(0)
    flat = np.full((60, 180), 120.0)
    noisy = np.clip(flat + rng.normal(0, 6.0, flat.shape), 0, 255).astype(np.uint8)
    q = image_quality(cv2.cvtColor(noisy, cv2.COLOR_GRAY2BGR))
    assert abs(q["noise"] - 6.0) < 0.15 * 6.0          # Immerkaer's estimate of the sigma
    assert abs(q["brightness"] - 120) < 1 and q["height"] == 60 and q["width"] == 180
    text = np.full((40, 120, 3), 230, np.uint8)
    cv2.putText(text, "ABC1234", (4, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.9, (20, 20, 20), 2)
    sharp, blurred = image_quality(text), image_quality(cv2.GaussianBlur(text, (0, 0), 1.5))
    assert blurred["sharpness"] < 0.7 * sharp["sharpness"]
    assert blurred["contrast"] <= sharp["contrast"] and sharp["contrast"] > 150


def test_stats_quality_on_synthetic_tracks(tmp_path: Path):
    from vinocr.data.synth import generate_plate_tracks

    generate_plate_tracks(tmp_path / "t", n_tracks=4, seed=1)
    res = run("stats", str(tmp_path / "t"), "--charset", "plate", "--quality", "--json")
    assert res.returncode == 0, res.stderr
    quality = json.loads(res.stdout)["quality"]
    assert quality["images"] == 20
    assert set(quality["frames"]) == {"height", "width", "brightness", "contrast", "sharpness",
                                      "noise"}
    assert quality["tracks"]["tracks"] == 4
    grid = tmp_path / "grid.png"
    table = run("stats", str(tmp_path / "t"), "--charset", "plate", "--quality", "--grid",
                str(grid))
    assert "image quality (20 images" in table.stdout and "track consistency" in table.stdout
    picture = cv2.imread(str(grid))
    assert picture is not None and picture.shape[0] == 4 * (64 + 4)  # one row per track
    again = run("stats", str(tmp_path / "t"), "--charset", "plate", "--grid", str(grid))
    assert again.returncode != 0 and "exists" in again.stderr

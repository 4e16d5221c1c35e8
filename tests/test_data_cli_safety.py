"""`vinocr-data` and bad output paths, test splits and tiny images.

- augment, split and validate never write onto their input (label file, images or dataset folder),
  however the path is spelt (relative, ``a/../a``, a symlink), even with ``--overwrite``;
- they refuse an output that already exists unless ``--overwrite`` is given;
- augment refuses a test split, also through symlinks and for split folders whose ``split.json``
  names the test split;
- validate reports images too small to hold text, and ``--export-fixed`` drops them.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import List, Tuple

import numpy as np
import pytest

from conftest import make_label_dir, write_png
from vinocr.cli.data import main
from vinocr.data import LabelFileDataset, LmdbDataset

PLATES = ["ABC1234", "XYZ9876", "QWE4567", "RTY1357", "UIO2468", "PAS8642", "DFG1122", "HJK3344"]


def run(capsys, *argv: object) -> Tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def assert_refused(rc: int, err: str, *needles: str) -> None:
    """Exit status 2 and one ``vinocr-data: error:`` line holding every needle (warnings logged
    while opening the dataset may come before it)."""
    assert rc == 2, err
    errors = [line for line in err.splitlines() if line.startswith("vinocr-data: error:")]
    assert "Traceback" not in err and len(errors) == 1, err
    for needle in needles:
        assert needle in errors[0], err


def dataset_with_bad_line(root: Path) -> Path:
    """A label file whose last line names a missing image (an invalid line validate drops)."""
    lf = make_label_dir(root, PLATES)
    lf.write_text(lf.read_text(encoding="utf-8") + "images/missing.png\tABC9999\n",
                  encoding="utf-8")
    return lf


# ------------------------------------------------------------------- outputs onto the input
@pytest.mark.parametrize("spelling", ["same", "relative", "dotdot", "symlink"])
@pytest.mark.parametrize("overwrite", [False, True])
def test_validate_export_fixed_onto_input_label_file_refused(tmp_path: Path, capsys,
                                                             monkeypatch, spelling: str,
                                                             overwrite: bool):
    lf = dataset_with_bad_line(tmp_path / "d")
    before = lf.read_text(encoding="utf-8")
    if spelling == "same":
        out = str(lf)
    elif spelling == "relative":
        monkeypatch.chdir(tmp_path)
        out = "d/labels.txt"
    elif spelling == "dotdot":
        out = str(tmp_path / "d" / ".." / "d" / "labels.txt")
    else:
        os.symlink(lf, tmp_path / "alias.txt")
        out = str(tmp_path / "alias.txt")
    rc, _, err = run(capsys, "validate", lf, "--charset", "plate", "--export-fixed", out,
                     *(["--overwrite"] if overwrite else []))
    assert_refused(rc, err, "would overwrite the input label file", str(lf.resolve()),
                   "--export-fixed")
    assert lf.read_text(encoding="utf-8") == before  # the invalid line is still there


def test_validate_json_onto_input_refused(tmp_path: Path, capsys):
    lf = dataset_with_bad_line(tmp_path / "d")
    before = lf.read_text(encoding="utf-8")
    rc, _, err = run(capsys, "validate", lf, "--charset", "plate", "--json", lf, "--overwrite")
    assert_refused(rc, err, "would overwrite the input label file", "--json")
    assert lf.read_text(encoding="utf-8") == before


@pytest.mark.parametrize("overwrite", [False, True])
def test_split_onto_input_label_file_refused(tmp_path: Path, capsys, vin_labels: List[str],
                                             overwrite: bool):
    lf = make_label_dir(tmp_path / "s", vin_labels, name="train.txt")
    before = lf.read_text(encoding="utf-8")
    os.symlink(tmp_path / "s", tmp_path / "alias")
    for out in (tmp_path / "s", tmp_path / "alias", tmp_path / "s" / ".." / "s"):
        rc, _, err = run(capsys, "split", lf, "--out", out,
                         *(["--overwrite"] if overwrite else []))
        assert_refused(rc, err, "would overwrite the input label file", str(lf.resolve()),
                       "--out")
    assert lf.read_text(encoding="utf-8") == before
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == ["images", "train.txt"]


@pytest.mark.parametrize("overwrite", [False, True])
def test_augment_onto_input_label_file_refused(tmp_path: Path, capsys, overwrite: bool):
    lf = dataset_with_bad_line(tmp_path / "d")
    before = lf.read_text(encoding="utf-8")
    images_before = sorted(p.name for p in (tmp_path / "d" / "images").iterdir())
    for out in (tmp_path / "d", tmp_path / "d" / ".." / "d"):
        rc, _, err = run(capsys, "augment", lf, "--out", out, "--augs-per-sample", "1",
                         *(["--overwrite"] if overwrite else []))
        assert_refused(rc, err, "would overwrite the input label file", str(lf.resolve()))
    assert lf.read_text(encoding="utf-8") == before
    assert sorted(p.name for p in (tmp_path / "d" / "images").iterdir()) == images_before


def test_augment_into_the_input_images_folder_refused(tmp_path: Path, capsys):
    """`--out` whose images/ folder holds the input's images: never, even with --overwrite."""
    lf = make_label_dir(tmp_path / "d", PLATES, name="train.txt")
    rc, _, err = run(capsys, "augment", lf, "--out", tmp_path / "d", "--augs-per-sample", "1",
                     "--overwrite")
    assert_refused(rc, err, "input", str((tmp_path / "d" / "images").resolve()))
    assert not (tmp_path / "d" / "labels.txt").exists()
    assert len(list((tmp_path / "d" / "images").iterdir())) == len(PLATES)


@pytest.mark.parametrize("command", ["validate", "split", "augment"])
def test_output_inside_the_input_folder_refused(tmp_path: Path, capsys, command: str):
    """A folder dataset is whatever label files it holds: writing into it changes the input."""
    make_label_dir(tmp_path / "d", PLATES)
    args = {"validate": ["--charset", "plate", "--export-fixed", tmp_path / "d" / "clean.txt"],
            "split": ["--out", tmp_path / "d"],
            "augment": ["--out", tmp_path / "d" / "aug", "--augs-per-sample", "1"]}[command]
    rc, _, err = run(capsys, command, tmp_path / "d", *args, "--overwrite")
    assert_refused(rc, err, "input folder", str((tmp_path / "d").resolve()))
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["images", "labels.txt"]


def test_lmdb_outputs_onto_the_input_lmdb_refused(tmp_path: Path, capsys):
    lf = make_label_dir(tmp_path / "d", PLATES)
    assert run(capsys, "make-lmdb", lf, "--out", tmp_path / "db")[0] == 0
    for argv in (("make-lmdb", tmp_path / "db", "--out", tmp_path / "db", "--overwrite"),
                 ("validate", tmp_path / "db", "--charset", "plate", "--export-fixed",
                  tmp_path / "db", "--overwrite")):
        rc, _, err = run(capsys, *argv)
        assert_refused(rc, err, "input", str((tmp_path / "db").resolve()))
    assert LmdbDataset(tmp_path / "db").labels() == PLATES


# ------------------------------------------------------------------------ existing outputs
def test_validate_export_fixed_needs_overwrite(tmp_path: Path, capsys):
    lf = dataset_with_bad_line(tmp_path / "d")
    for out in (tmp_path / "fixed.txt", tmp_path / "fixed_db"):
        assert run(capsys, "validate", lf, "--charset", "plate", "--export-fixed", out)[0] == 1
        rc, _, err = run(capsys, "validate", lf, "--charset", "plate", "--export-fixed", out)
        assert_refused(rc, err, str(out), "exists", "--overwrite")
        rc, _, _ = run(capsys, "validate", lf, "--charset", "plate", "--export-fixed", out,
                       "--overwrite")
        assert rc == 1
    assert LabelFileDataset(tmp_path / "fixed.txt").labels() == PLATES
    # --overwrite replaces the LMDB instead of writing records over the old ones.
    assert LmdbDataset(tmp_path / "fixed_db").labels() == PLATES


def test_validate_json_report_needs_overwrite(tmp_path: Path, capsys):
    lf = dataset_with_bad_line(tmp_path / "d")
    report = tmp_path / "report.json"
    assert run(capsys, "validate", lf, "--charset", "plate", "--json", report)[0] == 1
    rc, _, err = run(capsys, "validate", lf, "--charset", "plate", "--json", report)
    assert_refused(rc, err, str(report), "--overwrite")
    assert run(capsys, "validate", lf, "--charset", "plate", "--json", report,
               "--overwrite")[0] == 1
    assert json.loads(report.read_text())["total"] == len(PLATES) + 1


@pytest.mark.parametrize("lmdb", [False, True])
def test_split_into_existing_output_needs_overwrite(tmp_path: Path, capsys,
                                                    vin_labels: List[str], lmdb: bool):
    lf = make_label_dir(tmp_path / "d", vin_labels)
    extra = ["--lmdb"] if lmdb else []
    out = tmp_path / "splits"
    assert run(capsys, "split", lf, "--out", out, *extra)[0] == 0
    rc, _, err = run(capsys, "split", lf, "--out", out, *extra)
    assert_refused(rc, err, str(out), "exists", "--overwrite")
    rc, _, err = run(capsys, "split", lf, "--out", out, "--seed", "3", *extra, "--overwrite")
    assert rc == 0, err
    reader = LmdbDataset if lmdb else LabelFileDataset
    names = [f"{n}" if lmdb else f"{n}.txt" for n in ("train", "val", "test")]
    assert sorted(lbl for n in names for lbl in reader(out / n).labels()) == sorted(vin_labels)


def test_augment_into_existing_output_needs_overwrite(tmp_path: Path, capsys):
    lf = make_label_dir(tmp_path / "d", PLATES)
    out = tmp_path / "aug"
    assert run(capsys, "augment", lf, "--out", out, "--augs-per-sample", "1")[0] == 0
    rc, _, err = run(capsys, "augment", lf, "--out", out, "--augs-per-sample", "2")
    assert_refused(rc, err, str(out), "exists", "--overwrite")
    assert len(LabelFileDataset(out / "labels.txt")) == 2 * len(PLATES)
    rc, _, err = run(capsys, "augment", lf, "--out", out, "--augs-per-sample", "2", "--overwrite")
    assert rc == 0, err
    assert len(LabelFileDataset(out / "labels.txt")) == 3 * len(PLATES)


# ---------------------------------------------------------------------------- test splits
def test_augment_refuses_symlink_to_test_split(tmp_path: Path, capsys):
    splits = tmp_path / "splits"
    make_label_dir(splits, PLATES[:3], name="test.txt")
    os.symlink("test.txt", splits / "mine.txt")                  # same folder, relative link
    os.symlink(splits / "mine.txt", tmp_path / "train.txt")      # a chain from elsewhere
    for path in (splits / "mine.txt", tmp_path / "train.txt"):
        rc, _, err = run(capsys, "augment", path, "--out", tmp_path / "aug",
                         "--augs-per-sample", "1")
        assert_refused(rc, err, "test split", str(path))
        assert not (tmp_path / "aug").exists()


def test_augment_refuses_symlinked_test_lmdb(tmp_path: Path, capsys):
    lf = make_label_dir(tmp_path / "d", PLATES)
    assert run(capsys, "make-lmdb", lf, "--out", tmp_path / "splits" / "test")[0] == 0
    os.symlink(tmp_path / "splits" / "test", tmp_path / "train_db")
    rc, _, err = run(capsys, "augment", tmp_path / "train_db", "--out", tmp_path / "aug",
                     "--augs-per-sample", "1")
    assert_refused(rc, err, "test split")
    assert not (tmp_path / "aug").exists()


def test_split_manifest_names_the_test_split(tmp_path: Path, capsys, vin_labels: List[str]):
    lf = make_label_dir(tmp_path / "d", vin_labels)
    out = tmp_path / "s"
    rc, _, err = run(capsys, "split", lf, "--out", out, "--names", "train,dev,holdout",
                     "--test-split", "holdout", "--fractions", "0.5", "0.25", "0.25")
    assert rc == 0, err
    manifest = json.loads((out / "split.json").read_text(encoding="utf-8"))
    assert manifest["test_splits"] == ["holdout"]
    assert manifest["files"] == {"train": "train.txt", "dev": "dev.txt", "holdout": "holdout.txt"}
    os.symlink(out / "holdout.txt", tmp_path / "more_training.txt")
    for path in (out / "holdout.txt", tmp_path / "more_training.txt", out):
        rc, _, err = run(capsys, "augment", path, "--out", tmp_path / "aug",
                         "--augs-per-sample", "1")
        assert_refused(rc, err, "test split", "split.json")
        assert not (tmp_path / "aug").exists()
    rc, _, err = run(capsys, "augment", out / "train.txt", "--out", tmp_path / "aug",
                     "--augs-per-sample", "1")
    assert rc == 0, err
    # Without --test-split the split named like a test split is recorded.
    assert run(capsys, "split", lf, "--out", tmp_path / "s2")[0] == 0
    assert json.loads((tmp_path / "s2/split.json").read_text())["test_splits"] == ["test"]
    rc, _, err = run(capsys, "split", lf, "--out", tmp_path / "s3", "--test-split", "nope")
    assert_refused(rc, err, "--test-split", "nope")


# ---------------------------------------------------------------------------- tiny images
def test_images_too_small_for_text_are_invalid(tmp_path: Path, capsys):
    root = tmp_path / "d"
    lf = make_label_dir(root, PLATES)
    rng = np.random.default_rng(0)
    extra = {"dot.png": (1, 1), "thin.png": (40, 3), "flat.png": (3, 40), "small_ok.png": (4, 4)}
    lines = lf.read_text(encoding="utf-8")
    for k, (name, (h, w)) in enumerate(extra.items()):
        write_png(root / "images" / name, rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
        lines += f"images/{name}\tTNY{k:04d}\n"
    lf.write_text(lines, encoding="utf-8")
    rc, out, err = run(capsys, "validate", lf, "--charset", "plate", "--export-fixed",
                       tmp_path / "fixed.txt")
    assert rc == 1, out + err
    n = len(PLATES)
    for lineno in (n + 1, n + 2, n + 3):
        assert f"{lf}:{lineno}: " in out and "too small" in out, out
    assert f"{lf}:{n + 4}:" not in out
    fixed = LabelFileDataset(tmp_path / "fixed.txt")
    assert fixed.labels() == PLATES + ["TNY0003"]

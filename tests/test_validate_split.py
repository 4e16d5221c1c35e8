"""The validator finds every planted error class; fixed exports are clean; splits are grouped."""
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import text_image, write_png
from vinocr.data import LabelFileDataset, open_dataset
from vinocr.data.split import grouped_split
from vinocr.data.validate import ERROR_CLASSES, validate_dataset, write_fixed

REPO = Path(__file__).resolve().parents[1]

GOOD = ["1M8GDM9AXKP042788", "SAL1A2A40SA606662", "1HGCM82633A004352", "JHMCM56557C404453"]


def broken_dataset(root: Path) -> Path:
    """One sample per error class, plus clean ones."""
    rows = []

    def add(name: str, label: str, image=None, raw: bytes = None, seed: int = 0):
        path = root / "images" / name
        if raw is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(raw)
        elif image is not None or name != "missing.png":
            write_png(path, image if image is not None else text_image(label, seed=seed))
        rows.append(f"images/{name}\t{label}")

    for i, vin in enumerate(GOOD):
        add(f"good_{i}.png", vin, seed=i)
    add("corrupt.png", GOOD[0], raw=b"\x89PNG\r\n\x1a\nnot really")       # unreadable
    add("empty.png", GOOD[1], raw=b"")                                   # zero_size
    add("missing.png", GOOD[2])                                          # missing_file
    add("nolabel.png", "", seed=10)                                      # empty_label
    add("charset.png", "1M8GDM9AXKP04278O", seed=11)                     # charset (O)
    add("short.png", "1M8GDM9AXKP0427", seed=12)                         # length
    add("checkdigit.png", "1M8GDM9A0KP042788", seed=13)                  # check_digit (NA)
    add("dup.png", GOOD[0], seed=0)                                      # duplicate of good_0
    add("SAL1A2A40SA606662.png", "1HGCM82633A004352", seed=14)           # label_mismatch
    (root / "labels.txt").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return root / "labels.txt"


def test_validator_finds_each_planted_error(tmp_path: Path):
    lf = broken_dataset(tmp_path / "broken")
    report, clean = validate_dataset(open_dataset(lf), "vin")
    counts = report.counts()
    assert all(counts[k] >= 1 for k in ERROR_CLASSES), counts
    assert counts["duplicate"] == 1 and counts["check_digit"] == 1
    assert sorted(lbl for lbl, *_ in clean) == sorted(GOOD)
    # each issue names the label file line
    assert all(":" in i.where and "labels.txt" in i.where for i in report.issues)
    fixed = write_fixed(clean, tmp_path / "fixed/clean.txt")
    report2, clean2 = validate_dataset(LabelFileDataset(fixed), "vin")
    assert report2.ok and len(clean2) == len(GOOD)


def test_validate_cli_exit_codes(tmp_path: Path):
    lf = broken_dataset(tmp_path / "broken")
    cmd = [sys.executable, str(REPO / "tools/data.py"), "validate", str(lf), "--charset", "vin"]
    bad = subprocess.run(cmd + ["--export-fixed", str(tmp_path / "fixed.txt")],
                         capture_output=True, text=True)
    assert bad.returncode == 1, bad.stderr
    assert "checkdigit.png" not in (tmp_path / "fixed.txt").read_text()
    assert "duplicate" in bad.stdout and "labels.txt:" in bad.stdout
    good = subprocess.run([sys.executable, str(REPO / "tools/data.py"), "validate",
                           str(tmp_path / "fixed.txt"), "--charset", "vin"],
                          capture_output=True, text=True)
    assert good.returncode == 0, good.stdout + good.stderr
    missing = subprocess.run([sys.executable, str(REPO / "tools/data.py"), "validate",
                              str(tmp_path / "nope"), "--charset", "vin"],
                             capture_output=True, text=True)
    assert missing.returncode == 2
    assert missing.stderr.strip().count("\n") == 0 and "Traceback" not in missing.stderr
    assert "nope: path not found" in missing.stderr


def test_grouped_split_keeps_labels_together():
    labels = [f"L{i % 37:03d}" for i in range(500)]  # 37 groups of repeated labels
    splits = grouped_split(labels, (0.8, 0.1, 0.1), seed=5)
    groups = {name: {labels[i] for i in idx} for name, idx in splits.items()}
    assert not groups["train"] & groups["val"] and not groups["train"] & groups["test"]
    assert not groups["val"] & groups["test"]
    assert sorted(i for idx in splits.values() for i in idx) == list(range(500))
    assert 0.65 < len(splits["train"]) / 500 < 0.9 and splits["val"] and splits["test"]
    assert grouped_split(labels, seed=5) == splits
    assert grouped_split(labels, seed=6) != splits


def test_split_cli_writes_grouped_label_files(tmp_path: Path, label_dir):
    root, labels = label_dir
    # duplicate a label to make sure both copies land in the same split
    lf = root / "labels.txt"
    lf.write_text(lf.read_text() + f"images/00001.png\t{labels[1]}\n")
    out = tmp_path / "splits"
    res = subprocess.run([sys.executable, str(REPO / "tools/data.py"), "split", str(lf),
                          "--out", str(out), "--seed", "1"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    seen = {}
    for name in ("train", "val", "test"):
        ds = LabelFileDataset(out / f"{name}.txt")
        for lbl in ds.labels():
            assert seen.setdefault(lbl, name) == name
        assert ds[0].image.size > 0
    assert sum(1 for _ in seen) == len(set(labels))


def test_synthetic_vins_pass_validation(tmp_path: Path):
    """`vinocr-synth vin --n 1000 --out D` then `vinocr-data validate D --charset vin` exits 0."""
    out = tmp_path / "D"
    synth = subprocess.run([sys.executable, str(REPO / "tools/synth.py"), "vin", "--n", "1000",
                            "--out", str(out), "--seed", "7"], capture_output=True, text=True)
    assert synth.returncode == 0, synth.stderr
    res = subprocess.run([sys.executable, str(REPO / "tools/data.py"), "validate", str(out),
                          "--charset", "vin"], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout[-2000:]
    assert "1000 samples checked, 1000 clean" in res.stdout

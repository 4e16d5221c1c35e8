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

"""Two-row plates read as one line (``Global.two_row_max_aspect``): where the crop is cut, and
that training, evaluation and the exported Recognizer all join rows the same way."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from conftest import tiny_config, write_png
from vinocr.charset import load_charset
from vinocr.config import load_config
from vinocr.data.preprocess import batch_resize_norm, join_rows, resize_norm
from vinocr.errors import VinocrError
from vinocr.predict import Recognizer, read_model_info


def two_row_plate(top: str = "AB", bottom: str = "1234", size: int = 120) -> np.ndarray:
    """A white square plate with ``top`` above ``bottom``; rows 18-50 and 66-108 hold ink."""
    img = np.full((size, size, 3), 255, np.uint8)
    cv2.putText(img, top, (30, 50), cv2.FONT_HERSHEY_SIMPLEX, 1.2, (0, 0, 0), 3)
    cv2.putText(img, bottom, (8, 108), cv2.FONT_HERSHEY_SIMPLEX, 1.4, (0, 0, 0), 3)
    return img


def ink_rows(img: np.ndarray) -> np.ndarray:
    return np.flatnonzero((img.min(axis=2) < 128).any(axis=1))


def test_a_two_row_crop_is_cut_between_its_rows_and_joined_top_row_first() -> None:
    img = two_row_plate()
    rows = ink_rows(img)
    gap = [r for r in range(rows[0], rows[-1]) if r not in set(rows)]
    assert gap, "the test image must have a gap between its rows"
    joined = join_rows(img, 2.5)
    cut = img.shape[0] - joined.shape[0]       # the bottom part keeps its height
    assert gap[0] <= cut <= gap[-1] + 1
    # Top row first: the left part holds the top row's ink, the right part the bottom row's.
    top_w = joined.shape[1] - img.shape[1]
    np.testing.assert_array_equal(joined[:, top_w:], img[cut:])
    assert (joined[:, :top_w].min(axis=2) < 128).any()
    assert joined.shape[1] / joined.shape[0] > 2 * img.shape[1] / img.shape[0] * 0.9


def test_one_line_crops_and_a_zero_threshold_are_left_alone() -> None:
    line = np.full((40, 200, 3), 255, np.uint8)
    assert join_rows(line, 2.5) is line               # 5:1 is one row
    square = two_row_plate()
    assert join_rows(square, 0.0) is square
    assert join_rows(square, 0.9) is square           # 1:1 is not narrower than 0.9


def test_preprocessing_joins_rows_everywhere_it_resizes() -> None:
    img = two_row_plate()
    shape = (3, 48, 320)
    joined = resize_norm(join_rows(img, 2.5), shape)[0]
    np.testing.assert_array_equal(resize_norm(img, shape, two_row_max_aspect=2.5)[0], joined)
    assert not np.array_equal(resize_norm(img, shape)[0], joined)
    batch = batch_resize_norm([img, img], shape, two_row_max_aspect=2.5)
    np.testing.assert_array_equal(batch[0], joined)


class _Zeros:
    name = "fake"
    fixed_width = None

    def run(self, batch: np.ndarray) -> np.ndarray:
        return np.full((len(batch), 5, 37), 1 / 37, np.float32)


def test_recognizer_joins_rows_as_its_inference_yml_says(tmp_path: Path) -> None:
    plate = load_charset("plate")
    rec = Recognizer(_Zeros(), plate, (3, 48, 320), two_row_max_aspect=2.5)
    img = two_row_plate()
    np.testing.assert_array_equal(rec.preprocess([img])[0],
                                  resize_norm(img, (3, 48, 320), two_row_max_aspect=2.5)[0])
    doc = {"PreProcess": {"transform_ops": [{"RecResizeImg": {"image_shape": [3, 48, 320]}}]},
           "PostProcess": {"character_dict": list("0123456789")},
           "vinocr": {"two_row_max_aspect": 2.5}}
    (tmp_path / "inference.yml").write_text(yaml.safe_dump(doc), encoding="utf-8")
    assert read_model_info(tmp_path).two_row_max_aspect == 2.5
    doc["vinocr"]["two_row_max_aspect"] = "wide"
    (tmp_path / "inference.yml").write_text(yaml.safe_dump(doc), encoding="utf-8")
    with pytest.raises(VinocrError, match="two_row_max_aspect"):
        read_model_info(tmp_path)


def test_config_key_is_checked() -> None:
    with pytest.raises(VinocrError, match="two_row_max_aspect"):
        load_config(data={"Global": {"two_row_max_aspect": -1}})


def test_training_evaluation_and_export_read_two_row_crops_alike(data: Path, tmp_path: Path,
                                                                 capsys) -> None:
    """A model trained with the key exports it, and the export reads square crops exactly as
    the checkpoint does in vinocr-eval (the same joined input)."""
    from vinocr.cli.eval import main as eval_main
    from vinocr.cli.export import main as export_main
    from vinocr.engine.trainer import Trainer

    cfg = tiny_config(data, tmp_path / "run", epochs=1, Global__two_row_max_aspect=2.5)
    Trainer(cfg).fit()
    assert export_main(["--checkpoint", str(tmp_path / "run"), "--out", str(tmp_path / "exp"),
                        "--no-onnx", "--log-level", "WARNING"]) == 0
    rec = Recognizer.from_dir(tmp_path / "exp")
    assert rec.two_row_max_aspect == 2.5
    square = tmp_path / "sq"
    square.mkdir()
    lines = []
    for i, (top, bottom) in enumerate([("AB", "1234"), ("CD", "5678"), ("EF", "9012")]):
        write_png(square / f"{i}.png", two_row_plate(top, bottom))
        lines.append(f"{i}.png\t{top}{bottom}\n")
    (square / "labels.txt").write_text("".join(lines), encoding="utf-8")
    capsys.readouterr()
    assert eval_main(["--models", str(tmp_path / "run"), str(tmp_path / "exp"),
                      "--data", str(square / "labels.txt"), "--out", str(tmp_path / "ev"),
                      "--log-level", "WARNING"]) == 0
    import csv

    with open(tmp_path / "ev" / "table.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2
    assert rows[1]["same_as_first"] in ("1.0", "1", "1.0000")

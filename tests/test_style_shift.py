"""tools/style_shift.py: the held-out-style benchmark's data and its in-distribution vs held-out
table."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import load_tool, tiny_config


def _labels(path: Path) -> list:
    return [line.split("\t")[1] for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def bench(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bench") / "b"
    tool = load_tool("style_shift")
    assert tool.main(["data", "--out", str(out), "--n-train", "24", "--n-test", "8",
                      "--seed", "3"]) == 0
    return out


def test_data_writes_disjoint_sets_from_their_pools(bench: Path) -> None:
    record = json.loads((bench / "style_shift.json").read_text())
    assert record["sets"]["test_heldout"]["pool"] == "heldout"
    assert record["sets"]["test_in"]["pool"] == "train"
    for name in ("train_pool", "test_in", "test_heldout"):
        settings = json.loads((bench / name / "synth.json").read_text())
        assert settings["pool"] == record["sets"][name]["pool"]
    train = _labels(bench / "splits" / "train.txt") + _labels(bench / "splits" / "val.txt")
    test_in = _labels(bench / "test_in" / "labels.txt")
    heldout = _labels(bench / "test_heldout" / "labels.txt")
    assert len(train) == 24 and len(test_in) == len(heldout) == 8
    # Disjoint seeds: no test VIN was seen in training.
    assert not set(train) & set(test_in) and not set(train) & set(heldout)
    # Never overwrites an earlier benchmark silently.
    assert load_tool("style_shift").main(["data", "--out", str(bench), "--n-train", "4"]) == 2


def test_eval_reports_both_accuracies_and_their_gap(bench: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture) -> None:
    from vinocr.config.loader import write_resolved_config
    from vinocr.engine.trainer import Trainer

    cfg = tiny_config(bench, tmp_path / "run", epochs=1, Global__charset="vin",
                      Global__max_text_length=19, Global__image_shape=[3, 32, 160])
    cfg["Train"]["dataset"] = {"type": "label_file",
                               "label_files": [str(bench / "splits" / "train.txt")]}
    cfg["Eval"]["dataset"] = {"type": "label_file",
                              "label_files": [str(bench / "splits" / "val.txt")]}
    Trainer(cfg).fit()
    cfg_file = write_resolved_config(cfg, tmp_path / "cfg")
    out = tmp_path / "eval"
    tool = load_tool("style_shift")
    assert tool.main(["eval", "-c", str(cfg_file), "--data", str(bench), "--models",
                      str(tmp_path / "run"), "--out", str(out)]) == 0
    table = (out / "style_shift.md").read_text().splitlines()
    assert len(table) == 3  # header, rule, one model
    cells = [c.strip() for c in table[2].strip("|").split("|")]
    acc_in, acc_out, gap = float(cells[1]), float(cells[2]), float(cells[3])
    assert 0.0 <= acc_in <= 1.0 and 0.0 <= acc_out <= 1.0
    assert gap == pytest.approx(100 * (acc_in - acc_out), abs=0.06)
    assert "held-out" in capsys.readouterr().out
    assert tool.main(["eval", "--data", str(tmp_path), "--models", "x", "--out", str(out)]) == 2


def test_gap_table_skips_models_missing_a_set() -> None:
    tool = load_tool("style_shift")
    rows = [{"model": "a", "dataset": "in", "seq_acc": "0.9", "ece": "0.1", "vs_first": ""},
            {"model": "a", "dataset": "out", "seq_acc": "0.6", "ece": "0.2", "vs_first": ""},
            {"model": "b", "dataset": "in", "seq_acc": "0.5", "ece": "0.1", "vs_first": ""}]
    table = tool.gap_table(rows, "in", "out").splitlines()
    assert len(table) == 3 and "| a | 0.9000 | 0.6000 | 30.0 | 0.2000 | - |" == table[2]


def test_materials_splits_reads_by_the_material_each_crop_was_drawn_in(bench: Path,
                                                                        tmp_path: Path,
                                                                        capsys) -> None:
    tool = load_tool("style_shift")
    heldout = bench / "test_heldout"
    settings = json.loads((heldout / "synth.json").read_text())
    lines = (heldout / "labels.txt").read_text(encoding="utf-8").splitlines()
    materials = tool.crop_materials(heldout)
    # the re-drawn crops are the folder's: same labels, same material counts
    assert [materials[i][0] for i in range(len(lines))] == _labels(heldout / "labels.txt")
    drawn = [m for _, m in materials.values()]
    assert {m: drawn.count(m) for m in set(drawn)} == {
        m: n for m, n in settings["style_counts"].items() if n}
    # a model right on every even crop, wrong on every odd one (as vinocr-predict writes it)
    csv_path = tmp_path / "pred.csv"
    rows = ["path,text,confidence,label,correct"]
    for i, line in enumerate(lines):
        rel, label = line.split("\t")
        rows.append(f"{heldout / rel},X,0.9,{label},{i % 2 == 0}")
    csv_path.write_text("\n".join(rows) + "\n")
    assert tool.main(["materials", "--synth", str(heldout), "--predictions",
                      str(csv_path)]) == 0
    table = capsys.readouterr().out.splitlines()
    for material in set(drawn):
        idx = [i for i, (_, m) in materials.items() if m == material]
        row = next(r for r in table if r.startswith(f"| {material} |"))
        assert row == (f"| {material} | {len(idx)} | "
                       f"{sum(i % 2 == 0 for i in idx) / len(idx):.3f} |")
    # predictions of another folder are refused with the CSV line
    rows[1] = rows[1].replace(_labels(heldout / "labels.txt")[0], "1HGCM82633A004352")
    csv_path.write_text("\n".join(rows) + "\n")
    assert tool.main(["materials", "--synth", str(heldout), "--predictions",
                      str(csv_path)]) != 0
    assert "line 2: label '1HGCM82633A004352'" in capsys.readouterr().err

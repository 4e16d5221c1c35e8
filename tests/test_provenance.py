"""Which training samples vinocr-synth generated, and what ``auto`` does with it: on generator
crops alone it picks the technique that transferred to unseen styles (docs/style-shift.md)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import VALID_VINS, make_label_dir, tiny_config
from techniques import build_technique
from vinocr.data import LabelFileDataset
from vinocr.data.mixed import MixedDataset
from vinocr.data.provenance import synthetic_share
from vinocr.data.synth import generate_vin_dataset
from vinocr.engine.trainer import Trainer


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    return generate_vin_dataset(tmp_path_factory.mktemp("synth") / "vins", n=12, seed=3)


def test_generator_output_and_splits_of_it_are_synthetic(synth: Path, tmp_path: Path):
    assert synthetic_share(LabelFileDataset(synth / "labels.txt", charset="vin")) == 1.0
    # a split elsewhere pointing into the generator's folder, as `vinocr-data split` writes it
    lines = (synth / "labels.txt").read_text().splitlines()
    split = tmp_path / "splits" / "train.txt"
    split.parent.mkdir()
    split.write_text("".join(f"{synth / line.split(chr(9))[0]}\t{line.split(chr(9))[1]}\n"
                             for line in lines[:8]))
    assert synthetic_share(LabelFileDataset(split, charset="vin")) == 1.0


def test_real_crops_and_unfinished_or_foreign_markers_are_not(synth: Path, tmp_path: Path):
    real = LabelFileDataset(make_label_dir(tmp_path / "real", VALID_VINS), charset="vin")
    assert synthetic_share(real) == 0.0
    for name, marker in (("unfinished", {"generator": "vinocr.data.synth", "complete": False}),
                         ("foreign", {"generator": "someone-else", "complete": True}),
                         ("broken", None)):
        copy = shutil.copytree(synth, tmp_path / name)
        (copy / "synth.json").write_text("{not json" if marker is None else json.dumps(marker))
        assert synthetic_share(LabelFileDataset(copy / "labels.txt", charset="vin")) == 0.0, name
    mixed = MixedDataset([(LabelFileDataset(synth / "labels.txt", charset="vin"), 3.0),
                          (real, 1.0)], epoch_size=40)
    assert synthetic_share(mixed) == pytest.approx(30 / 40)


def test_symlinked_images_count_and_real_crops_beside_a_synth_output_do_not(synth: Path,
                                                                            tmp_path: Path):
    # images/ moved elsewhere and linked back: the marker is found through the path as given
    moved = shutil.copytree(synth, tmp_path / "moved")
    store = tmp_path / "store"
    (moved / "images").rename(store)
    (moved / "images").symlink_to(store, target_is_directory=True)
    assert synthetic_share(LabelFileDataset(moved / "labels.txt", charset="vin")) == 1.0
    # and a split that reaches the crops through a linked output folder
    (tmp_path / "link").symlink_to(synth, target_is_directory=True)
    assert synthetic_share(LabelFileDataset(tmp_path / "link" / "labels.txt",
                                            charset="vin")) == 1.0
    # real crops kept in a subfolder of a generator's output are still real
    real = make_label_dir(moved / "real", VALID_VINS)
    assert synthetic_share(LabelFileDataset(real, charset="vin")) == 0.0


def test_lmdb_output_is_synthetic(tmp_path: Path):
    pytest.importorskip("lmdb")
    from vinocr.data.lmdb_dataset import LmdbDataset

    assert synthetic_share(LmdbDataset(generate_vin_dataset(tmp_path / "db", n=3, seed=1,
                                                            fmt="lmdb"), charset="vin")) == 1.0


def test_auto_picks_lora_for_generator_crops_alone(synth: Path, data: Path, tmp_path: Path):
    """The default table: all-synthetic training data → lora whatever the budget; the same run
    with one real source in the mix follows the budget rows (here: full)."""
    def fit(train_files, name):
        run = tmp_path / name
        cfg = tiny_config(data, run, epochs=1, Global__charset="vin", Global__max_text_length=17,
                          Global__image_shape=[3, 32, 160], Train__max_steps=200)
        cfg["Train"]["dataset"] = {"type": "label_file", "label_files": train_files}
        # a budget past the short-run row: 12 samples x 40 epochs / batch 4 = 120 steps planned
        cfg["Train"]["epochs"] = 40
        # the tiny CRNN's only layer LoRA can wrap (so its head gets the adapter); auto hands the option to lora if it picks it
        hooks = build_technique({"name": "auto", "targets": [r"head\.fc"], "train_head": False})
        trainer = Trainer(cfg, hooks=hooks)   # the choice is made while the trainer is built
        return hooks.hooks[0], trainer.run.synthetic_share

    only, share = fit([str(synth / "labels.txt")], "synthetic")
    assert only.chosen == "lora" and share == 1.0
    assert only.reason.startswith("12 training samples (100% synthetic), 120 planned optimizer "
                                  "steps → lora (table row 1: all samples synthetic → lora)")
    mixed, share = fit([str(synth / "labels.txt"), str(data / "train.txt")], "mixed")
    assert mixed.chosen == "full" and "(42% synthetic)" in mixed.reason   # 12 of 28, floored
    assert share == pytest.approx(12 / 28)


def test_vinocr_data_outputs_keep_the_share_of_generator_crops(synth: Path, tmp_path: Path):
    """make-lmdb, split --lmdb, augment and a split that copies LMDB crops all record it, so
    `auto` still sees synthetic crops for synthetic after a conversion (docs/style-shift.md)."""
    pytest.importorskip("lmdb")
    from vinocr.cli.data import main as cli_main
    from vinocr.data.lmdb_dataset import LmdbDataset

    def share_of(path: Path) -> float:
        if (path / "data.mdb").is_file():
            return synthetic_share(LmdbDataset(path, charset="vin"))
        return synthetic_share(LabelFileDataset(path, charset="vin"))

    def data_main(argv):
        return cli_main(["--log-level", "ERROR", *argv])

    quiet: list = []
    assert data_main(["make-lmdb", str(synth / "labels.txt"), "--out", str(tmp_path / "db"),
                      *quiet]) == 0
    assert share_of(tmp_path / "db") == 1.0
    record = json.loads((tmp_path / "db" / "provenance.json").read_text())
    assert record["tool"] == "vinocr-data make-lmdb" and record["synthetic_share"] == 1.0

    assert data_main(["split", str(tmp_path / "db"), "--out", str(tmp_path / "sp"), "--lmdb",
                      "--fractions", "0.5", "0.5", "--names", "train,val", *quiet]) == 0
    assert share_of(tmp_path / "sp" / "train") == share_of(tmp_path / "sp" / "val") == 1.0
    # a label-file split of an LMDB copies its crops beside the label file
    assert data_main(["split", str(tmp_path / "db"), "--out", str(tmp_path / "lf"),
                      "--fractions", "0.5", "0.5", "--names", "train,val", *quiet]) == 0
    assert (tmp_path / "lf" / "train_images" / "provenance.json").is_file()
    assert share_of(tmp_path / "lf" / "train.txt") == 1.0

    assert data_main(["augment", str(synth / "labels.txt"), "--out", str(tmp_path / "aug"),
                      "--augs-per-sample", "1", *quiet]) == 0
    assert share_of(tmp_path / "aug" / "labels.txt") == 1.0

    # half generator crops, half real: the LMDB records half
    real_labels = make_label_dir(tmp_path / "real", VALID_VINS)
    real = real_labels.parent
    n = len(VALID_VINS)
    lines = (synth / "labels.txt").read_text().splitlines()
    half = tmp_path / "half.txt"
    half.write_text("".join(f"{synth / ln.split(chr(9))[0]}\t{ln.split(chr(9))[1]}\n"
                            for ln in lines[:n])
                    + "".join(f"{real / ln}\n" for ln in real_labels.read_text().splitlines()))
    assert share_of(half) == pytest.approx(0.5)
    assert data_main(["make-lmdb", str(half), "--out", str(tmp_path / "half_db"), *quiet]) == 0
    assert share_of(tmp_path / "half_db") == pytest.approx(0.5)
    # real crops stay real, and a broken marker counts as none
    assert data_main(["make-lmdb", str(real_labels), "--out", str(tmp_path / "real_db"),
                      *quiet]) == 0
    assert share_of(tmp_path / "real_db") == 0.0
    (tmp_path / "db" / "provenance.json").write_text("{not json")
    from vinocr.data.provenance import derived_share

    derived_share.cache_clear()
    assert share_of(tmp_path / "db") == 0.0

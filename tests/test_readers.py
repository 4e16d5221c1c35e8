"""Every reader on small generated fixtures, and its one-line errors for bad input."""
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import make_label_dir, make_track, text_image, write_png
from vinocr.data import (CorrectionsDataset, FilenameLabelDataset, LabelFileDataset, LmdbDataset,
                         LrlprTracks, MixedDataset, build_dataset, detect_format, open_dataset,
                         write_lmdb)
from vinocr.data.base import encode_image
from vinocr.errors import ConfigError, DataError


def test_label_files_several_files_relative_to_data_dir(tmp_path: Path):
    root = tmp_path / "data"
    make_label_dir(root, ["AAA111", "BBB222"], name="a.txt", subdir="imgs_a")
    make_label_dir(root, ["CCC333"], name="b.txt", subdir="imgs_b")
    # label files elsewhere, paths relative to data_dir
    lists = tmp_path / "lists"
    lists.mkdir()
    for name in ("a.txt", "b.txt"):
        (lists / name).write_text((root / name).read_text())
    ds = LabelFileDataset([lists / "a.txt", lists / "b.txt"], data_dir=root, charset="plate")
    assert len(ds) == 3 and ds.labels() == ["AAA111", "BBB222", "CCC333"]
    image, label, meta = ds[2]
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    assert label == "CCC333" and meta["line"] == 1 and meta["label_file"].endswith("b.txt")
    assert [lbl for _, lbl, _ in ds] == ds.labels()


def test_label_file_errors_name_file_and_line(tmp_path: Path):
    root = tmp_path / "d"
    lf = make_label_dir(root, ["AAA111", "BBB222"])
    with pytest.raises(DataError, match="label file not found"):
        LabelFileDataset(root / "nope.txt")
    bad = root / "latin1.txt"
    bad.write_bytes(b"images/00000.png\tAAA111\nimages/00001.png\tB\xe9B222\n")
    with pytest.raises(DataError, match=r"latin1\.txt:2: not valid UTF-8"):
        LabelFileDataset(bad)
    notab = root / "notab.txt"
    notab.write_text("images/00000.png AAA111\n")
    with pytest.raises(DataError, match=r"notab\.txt:1: .*no TAB"):
        LabelFileDataset(notab)
    # out-of-charset and empty labels: skipped and reported, or fatal with strict
    mixed = root / "mixed.txt"
    mixed.write_text("images/00000.png\tAAA111\nimages/00001.png\tBB-222\nimages/00001.png\t\n"
                     "images/missing.png\tCCC333\n")
    ds = LabelFileDataset(mixed, charset="plate")
    assert ds.labels() == ["AAA111"]
    assert {s.reason.split(" ")[0] for s in ds.skipped} == {"label", "empty"}
    assert ds.missing and "mixed.txt:4" in ds.missing[0]
    with pytest.raises(DataError, match=r"mixed\.txt:2: label 'BB-222' has characters outside"):
        LabelFileDataset(mixed, charset="plate", strict=True)
    # an unreadable image is reported with its label-file line when it is read
    (root / "images/00001.png").write_bytes(b"not a png")
    ds = LabelFileDataset(lf, charset="plate")
    with pytest.raises(DataError, match=r"labels\.txt:2: unreadable or corrupt image"):
        ds[1]


def test_lmdb_round_trip_and_wrong_keys(tmp_path: Path):
    images = [text_image(t, seed=i) for i, t in enumerate(["AB12", "CD34", "EF56"])]
    n = write_lmdb(tmp_path / "lmdb", [(encode_image(im), t) for im, t in
                                       zip(images, ["AB12", "CD34", "EF56"])])
    assert n == 3
    ds = LmdbDataset(tmp_path / "lmdb", charset="plate")
    assert ds.labels() == ["AB12", "CD34", "EF56"]
    assert np.array_equal(ds[1].image, images[1])
    import lmdb
    env = lmdb.open(str(tmp_path / "wrong"), map_size=1 << 20)
    with env.begin(write=True) as txn:
        txn.put(b"img_1", b"x")
    env.close()
    with pytest.raises(DataError, match="wrong LMDB keys: no 'num-samples'"):
        LmdbDataset(tmp_path / "wrong")
    with pytest.raises(DataError, match="not an LMDB"):
        LmdbDataset(tmp_path)


def test_lrlpr_tracks_rectify_and_pairs(tmp_path: Path):
    make_track(tmp_path / "lrlpr", "ABC1234", "Brazilian")
    make_track(tmp_path / "lrlpr", "BRA2E19", "Mercosur", with_corners=False)
    lr = LrlprTracks(tmp_path / "lrlpr", frames="lr", charset="plate")
    assert len(lr) == 4 and set(lr.labels()) == {"ABC1234", "BRA2E19"}
    both = LrlprTracks(tmp_path / "lrlpr", frames="both")
    assert len(both) == 8
    for i in range(len(lr)):
        meta = lr.meta(i)
        assert meta["kind"] == "lr" and Path(meta["pair"]).name.startswith("hr-")
        image = lr.load_image(i)
        if meta["layout"] == "Brazilian":
            # rectified to the plate quadrilateral: almost all pixels are the bright plate
            assert image.shape[0] < 24 and image.mean() > 180
        else:
            assert image.shape[:2] == (24, 64)  # no corners: frame used as is
    track = lr.load_track(0)
    assert len(track["lr"]) == 2 and len(track["hr"]) == 2
    assert track["text"] == lr.tracks[0].text and track["layout"] == lr.tracks[0].layout
    merc = LrlprTracks(tmp_path / "lrlpr", layouts=["Mercosur"])
    assert set(merc.labels()) == {"BRA2E19"}
    bad = tmp_path / "bad/track_00001"
    bad.mkdir(parents=True)
    (bad / "annotations.json").write_text('{"plate_text": "ABC1234", "corners": {"lr-001.png": [[1, 2]]}}')
    with pytest.raises(DataError, match=r"annotations\.json corners\['lr-001\.png'\]"):
        LrlprTracks(tmp_path / "bad")


def test_corrections_folder(tmp_path: Path):
    folder = tmp_path / "corr"
    write_png(folder / "a.png", text_image("1HGCM82633A004352"))
    (folder / "a.json").write_text(json.dumps({"text": "1HGCM82633A004352",
                                               "predicted": "1HGCM8Z633A004352"}))
    write_png(folder / "b.png", text_image("X"))
    (folder / "b.json").write_text(json.dumps({"corrected_text": "SAL1A2A40SA606662"}))
    ds = CorrectionsDataset(folder, charset="vin")
    assert ds.labels() == ["1HGCM82633A004352", "SAL1A2A40SA606662"]
    assert ds.meta(0)["review"] == {"predicted": "1HGCM8Z633A004352"}
    (folder / "c.json").write_text("{oops")
    write_png(folder / "c.png", text_image("X"))
    with pytest.raises(DataError, match=r"c\.json:1: invalid JSON"):
        CorrectionsDataset(folder)


def test_filename_labels(tmp_path: Path):
    folder = tmp_path / "named"
    write_png(folder / "42-VIN -SAL1A2A40SA606662.jpg", text_image("SAL1A2A40SA606662"))
    write_png(folder / "ABC1234.png", text_image("ABC1234", seed=1))
    ds = FilenameLabelDataset(folder)
    assert sorted(ds.labels()) == ["ABC1234", "SAL1A2A40SA606662"]
    custom = FilenameLabelDataset(folder, pattern=r"^(?P<label>[A-Z]{3}\d{4})$")
    assert custom.labels() == ["ABC1234"]  # the other name does not match: skipped (empty)
    with pytest.raises(ConfigError, match="named group"):
        FilenameLabelDataset(folder, pattern=r"(\w+)")


def test_mixed_ratios_per_epoch(tmp_path: Path):
    a = LabelFileDataset(make_label_dir(tmp_path / "a", [f"AA{i:04d}" for i in range(40)]))
    b = LabelFileDataset(make_label_dir(tmp_path / "b", [f"BB{i:04d}" for i in range(5)]))
    mixed = MixedDataset([(a, 0.8), (b, 0.2)], epoch_size=50, seed=3)
    assert len(mixed) == 50
    counts = [sum(1 for i in range(50) if mixed.label(i).startswith(p)) for p in ("AA", "BB")]
    assert counts == [40, 10]  # small source oversampled to its share
    first = mixed.labels()
    mixed.set_epoch(1)
    assert mixed.labels() != first and sorted(mixed.labels()) != []
    mixed.set_epoch(0)
    assert mixed.labels() == first  # the plan depends only on (seed, epoch)
    cfg = {"sources": [{"type": "label_file", "label_files": [str(tmp_path / "a/labels.txt")],
                        "ratio": 0.8},
                       {"type": "label_file", "label_files": [str(tmp_path / "b/labels.txt")],
                        "ratio": 0.2}], "epoch_size": 50}
    built = build_dataset(cfg, "Train.dataset", seed=3)
    assert isinstance(built, MixedDataset) and built.labels() == first
    cfg["sources"][1].pop("ratio")
    with pytest.raises(ConfigError, match=r"sources\[1\]: give every source a ratio"):
        build_dataset(cfg)


def test_detect_format(tmp_path: Path, label_dir):
    root, _ = label_dir
    assert detect_format(root) == "label_file" and detect_format(root / "labels.txt") == "label_file"
    write_lmdb(tmp_path / "l", [(encode_image(text_image("AB")), "AB")])
    assert detect_format(tmp_path / "l") == "lmdb"
    make_track(tmp_path / "t", "ABC1234", "Brazilian")
    assert detect_format(tmp_path / "t") == "lrlpr"
    write_png(tmp_path / "f/ABC1234.png", text_image("ABC1234"))
    assert detect_format(tmp_path / "f") == "filename"
    with pytest.raises(DataError, match="path not found"):
        open_dataset(tmp_path / "missing")

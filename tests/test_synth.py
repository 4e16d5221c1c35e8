"""Tests for the synthetic data generators (vinocr.data.synth) and the vinocr-synth CLI."""
from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from vinocr.data.synth import (LAYOUT_NAMES, STYLES, generate_plate_tracks, generate_vin_dataset,
                               list_fonts, make_vin_sample, plate_matches_layout, random_plate,
                               random_vin, render_plate, render_vin, write_track)
from vinocr.data.synth.plates import LR_SIZE_LIMITS
from vinocr.data.synth.degrade import FAMILIES, degrade
from vinocr.data.synth.fonts import (DOT_GLYPHS, KIND_DOTMATRIX, KIND_HERSHEY, KIND_TRUETYPE,
                                     POOL_HELDOUT, POOL_TRAIN, _PYPI_FILES, dot_glyphs, pypi_fonts)
from vinocr.data.synth.pools import (HELDOUT_DEGRADATIONS, HELDOUT_STYLES, POOLS,
                                     TRAIN_DEGRADATIONS, get_pool)
from vinocr.data.synth.text_mask import text_mask
from vinocr.data.synth.vin_text import REGIONS, WMIS
from vinocr.errors import VinocrError
from vinocr.vin import VIN_ALPHABET, YEAR_CODES, check_digit_ok, region_of, validate_vin


# ------------------------------------------------------------------------------ VIN text
def test_random_vins_are_valid() -> None:
    for i in range(500):
        vin = random_vin(np.random.default_rng([0, i]))
        assert len(vin) == 17
        assert not set(vin) & set("IOQ")
        assert set(vin) <= set(VIN_ALPHABET)
        assert check_digit_ok(vin), vin
        assert validate_vin(vin).valid, (vin, validate_vin(vin).problems)
        assert vin[:3] in WMIS
        assert vin[9] in YEAR_CODES
        assert vin[13:].isdigit()  # positions 14-17 are always numeric


def test_random_vin_regions() -> None:
    for region in REGIONS[1:]:
        for i in range(20):
            vin = random_vin(np.random.default_rng([1, i]), region=region)
            assert region_of(vin) == region
    with pytest.raises(VinocrError):
        random_vin(np.random.default_rng(0), region="mars")


def test_wmi_table_is_clean() -> None:
    assert len(set(WMIS)) == len(WMIS)
    assert all(len(w) == 3 and set(w) <= set(VIN_ALPHABET) for w in WMIS)
    for wmi in ("1HG", "1FA", "1G1", "2T1", "3VW", "4T1", "5YJ", "JHM", "JTD", "KMH", "WBA", "WVW",
                "WDB", "SAL", "VF1", "ZFA", "YV1", "TMB"):
        assert wmi in WMIS


# ------------------------------------------------------------------------------ fonts
def test_fonts_available() -> None:
    fonts = list_fonts()
    kinds = {f.kind for f in fonts}
    assert KIND_HERSHEY in kinds
    assert KIND_TRUETYPE in kinds  # matplotlib ships DejaVu
    for char in VIN_ALPHABET + "*":
        assert DOT_GLYPHS[char].shape == (7, 5)


def test_every_packaged_font_is_installed() -> None:
    """setup.py installs every fontpkg-* package the catalogue names: a missing one would silently
    narrow the training data (and empty a held-out category)."""
    assert len(pypi_fonts()) == len(_PYPI_FILES)
    families = {(f.pool, f.path.split("/")[-3]) for f in pypi_fonts()}
    train = {pkg for pool, pkg in families if pool == POOL_TRAIN}
    heldout = {pkg for pool, pkg in families if pool == POOL_HELDOUT}
    assert train and heldout and not train & heldout  # whole families, never split


def test_every_font_draws_every_vin_character_distinctly() -> None:
    """A font without a glyph draws a box (or nothing) for it: every VIN character must give its
    own non-empty mask in every font of every pool, the 7x9 dot matrix included."""
    for font in list_fonts():
        masks = {}
        for char in VIN_ALPHABET + "*":
            mask = text_mask(char, font, 24.0)
            assert mask.max() > 0.5, (font.name, char)
            masks[char] = (mask > 0.5)
        flat = {c: m.tobytes() + bytes(m.shape) for c, m in masks.items()}
        assert len(set(flat.values())) == len(flat), font.name
    grid = dot_glyphs((7, 9))
    assert all(g.shape == (9, 7) for g in grid.values())
    vin_glyphs = [grid[c].tobytes() for c in VIN_ALPHABET + "*"]
    assert len(set(vin_glyphs)) == len(vin_glyphs)


def test_pools_keep_fonts_styles_and_damage_apart() -> None:
    """Nothing the held-out pool draws from appears in training-pool crops, and back."""
    train_fonts = {f.name for f in list_fonts() if f.pool == POOL_TRAIN}
    heldout_fonts = {f.name for f in list_fonts() if f.pool == POOL_HELDOUT}
    seen = {"train": set(), "heldout": set()}
    for pool in ("train", "heldout"):
        fonts, damage = set(), set()
        for i in range(160):
            _, label, meta = make_vin_sample(11, i, pool=pool)
            assert meta["pool"] == pool
            fonts.add(meta["font"])
            damage.update(meta["degradations"])
            seen[pool].add(meta["style"])
        if pool == "train":
            assert fonts <= train_fonts, fonts - train_fonts
            assert damage <= set(TRAIN_DEGRADATIONS)
            assert not seen[pool] & set(HELDOUT_STYLES)
        else:
            assert fonts <= heldout_fonts, fonts - heldout_fonts
            assert damage <= set(HELDOUT_DEGRADATIONS)
        assert len(fonts) >= 8 and len(damage) >= 5  # the pools are varied, not one font
    assert set(HELDOUT_STYLES) <= seen["heldout"]
    assert not set(TRAIN_DEGRADATIONS) & set(HELDOUT_DEGRADATIONS)
    assert set(POOLS["all"].degradations) == set(TRAIN_DEGRADATIONS) | set(HELDOUT_DEGRADATIONS)
    with pytest.raises(VinocrError, match="unknown style pool 'test'"):
        get_pool("test")


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_degradation_families(family: str) -> None:
    """Each family keeps a BGR uint8 crop readable-sized, changes it, and is deterministic."""
    image, _ = render_vin("1HGCM82633A004352", np.random.default_rng(4), style="sticker",
                          height=48, pool="train")
    a, names = degrade(image, np.random.default_rng(5), (family,), p=1.0, max_families=1)
    b, _ = degrade(image, np.random.default_rng(5), (family,), p=1.0, max_families=1)
    assert names == [family]
    assert np.array_equal(a, b)
    assert a.dtype == np.uint8 and a.ndim == 3 and a.shape[2] == 3
    assert a.shape[0] >= 0.75 * image.shape[0] and a.shape[1] >= 0.9 * image.shape[1]
    assert a.shape != image.shape or not np.array_equal(a, image)


# ------------------------------------------------------------------------------ rendering
@pytest.mark.parametrize("style", STYLES)
def test_render_each_style(style: str) -> None:
    for i in range(6):
        rng = np.random.default_rng([2, i])
        vin = random_vin(rng)
        image, meta = render_vin(vin, rng, style=style, delimiters=bool(i % 2))
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
        h, w = image.shape[:2]
        assert 25 <= h <= 64  # 32-64, less what a loose/tight detector box (crop_jitter) cuts
        assert 4.5 <= w / h <= 16.0, (w, h)
        assert meta["style"] == style
        assert meta["text"] == (f"*{vin}*" if i % 2 else vin)
        assert image.std() > 3.0  # not a blank image


def test_render_rejects_bad_input() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(VinocrError):
        render_vin("1HGCM82633A004352", rng, style="graffiti")
    with pytest.raises(VinocrError):
        render_vin("1hg cm", rng)


def test_make_vin_sample_deterministic() -> None:
    a = make_vin_sample(7, 3)
    b = make_vin_sample(7, 3)
    c = make_vin_sample(8, 3)
    assert a[0] == b[0] and a[1] == b[1]
    assert a[0] != c[0]


# ------------------------------------------------------------------------------ datasets
def _read_labels(root: Path) -> list:
    return (root / "labels.txt").read_text(encoding="utf-8").splitlines()


def test_labelfile_dataset(tmp_path: Path) -> None:
    out = generate_vin_dataset(tmp_path / "a", n=12, seed=3, delimiter_prob=0.5)
    lines = _read_labels(out)
    assert len(lines) == 12
    for i, line in enumerate(lines):
        rel, label = line.split("\t")
        assert rel == f"images/{i:06d}.png"
        assert (out / rel).is_file()
        assert validate_vin(label).valid and check_digit_ok(label)
        image = cv2.imread(str(out / rel), cv2.IMREAD_COLOR)
        assert image is not None and image.shape[2] == 3
    settings = json.loads((out / "synth.json").read_text())
    assert settings["n"] == 12 and settings["seed"] == 3 and settings["format"] == "labelfile"


def test_dataset_determinism(tmp_path: Path) -> None:
    a = generate_vin_dataset(tmp_path / "a", n=6, seed=5, styles="engraved,sticker")
    b = generate_vin_dataset(tmp_path / "b", n=6, seed=5, styles=["engraved", "sticker"])
    c = generate_vin_dataset(tmp_path / "c", n=6, seed=6, styles="engraved,sticker")
    assert _read_labels(a) == _read_labels(b)
    assert _read_labels(a) != _read_labels(c)
    for i in range(6):
        name = f"images/{i:06d}.png"
        assert (a / name).read_bytes() == (b / name).read_bytes()
        assert (a / name).read_bytes() != (c / name).read_bytes()


def test_dataset_independent_of_workers(tmp_path: Path) -> None:
    a = generate_vin_dataset(tmp_path / "a", n=8, seed=9, workers=1)
    b = generate_vin_dataset(tmp_path / "b", n=8, seed=9, workers=2)
    assert _read_labels(a) == _read_labels(b)
    for i in range(8):
        name = f"images/{i:06d}.png"
        assert (a / name).read_bytes() == (b / name).read_bytes()


def test_dataset_argument_errors(tmp_path: Path) -> None:
    with pytest.raises(VinocrError):
        generate_vin_dataset(tmp_path / "x", n=0, seed=0)
    with pytest.raises(VinocrError):
        generate_vin_dataset(tmp_path / "x", n=2, seed=0, styles="engraved,bogus")
    with pytest.raises(VinocrError):
        generate_vin_dataset(tmp_path / "x", n=2, seed=0, fmt="tfrecord")
    out = generate_vin_dataset(tmp_path / "y", n=2, seed=0)
    with pytest.raises(VinocrError, match="not empty"):
        generate_vin_dataset(out, n=2, seed=0)
    generate_vin_dataset(out, n=3, seed=0, overwrite=True)
    assert len(_read_labels(out)) == 3


def test_lmdb_dataset(tmp_path: Path) -> None:
    pytest.importorskip("lmdb")
    try:
        from vinocr.data.lmdb_dataset import LmdbDataset
    except ImportError:
        pytest.skip("vinocr.data.lmdb_dataset is not available yet")
    out = generate_vin_dataset(tmp_path / "db", n=5, seed=1, fmt="lmdb")
    dataset = LmdbDataset(out)
    assert len(dataset) == 5
    image, label, _ = dataset[0]
    assert check_digit_ok(label) and image.shape[2] == 3
    reference = generate_vin_dataset(tmp_path / "lf", n=5, seed=1)
    assert [line.split("\t")[1] for line in _read_labels(reference)] == \
        [dataset[i].label for i in range(5)]


# ------------------------------------------------------------------------------ plates
PATTERNS = {"brazilian": r"[A-Z]{3}[0-9]{4}", "mercosur": r"[A-Z]{3}[0-9][A-Z][0-9]{2}"}


@pytest.mark.parametrize("layout", sorted(PATTERNS))
def test_random_plate_layouts(layout: str) -> None:
    for i in range(200):
        text = random_plate(np.random.default_rng([4, i]), layout)
        assert re.fullmatch(PATTERNS[layout], text), text
        assert plate_matches_layout(text, layout)
    other = "mercosur" if layout == "brazilian" else "brazilian"
    assert not plate_matches_layout(random_plate(np.random.default_rng(1), layout), other)
    with pytest.raises(VinocrError):
        random_plate(np.random.default_rng(0), "american")


@pytest.mark.parametrize("layout", sorted(PATTERNS))
def test_render_plate(layout: str) -> None:
    rng = np.random.default_rng(5)
    image = render_plate(random_plate(rng, layout), layout, rng)
    assert image.dtype == np.uint8 and image.shape[2] == 3
    assert 40 <= image.shape[0] <= 45 and 120 <= image.shape[1] <= 130
    with pytest.raises(VinocrError):
        render_plate("ABC1234", "mercosur", rng)


def test_write_track(tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    track = tmp_path / "track_00001"
    ann = write_track(track, "BRA2E19", "mercosur", rng)
    on_disk = json.loads((track / "annotations.json").read_text(encoding="utf-8"))
    assert on_disk == ann
    assert ann["plate_layout"] == "Mercosur" and ann["plate_text"] == "BRA2E19"
    hr = sorted(track.glob("hr-*.png"))
    lr = sorted(track.glob("lr-*.png"))
    assert [p.name for p in hr] == [f"hr-{k:03d}.png" for k in range(1, 6)]
    assert [p.name for p in lr] == [f"lr-{k:03d}.png" for k in range(1, 6)]
    assert set(ann["corners"]) == {p.name for p in hr + lr}
    for path in hr + lr:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        h, w = image.shape[:2]
        corners = np.array(ann["corners"][path.name], dtype=np.float32)
        assert corners.shape == (4, 2)
        # Inside the frame, not on its border, and clockwise from the top-left.
        assert (corners[:, 0] > 0).all() and (corners[:, 0] < w - 1).all()
        assert (corners[:, 1] > 0).all() and (corners[:, 1] < h - 1).all()
        tl, tr, br, bl = corners
        assert tl[0] < tr[0] and bl[0] < br[0] and tl[1] < bl[1] and tr[1] < br[1]
        if path.name.startswith("lr"):  # inside the LRLPR-26 survey's LR range
            (h_lo, h_hi), (w_lo, w_hi) = LR_SIZE_LIMITS
            assert h_lo <= h <= h_hi and w_lo <= w <= w_hi
    hr_area = np.mean([np.prod(cv2.imread(str(p)).shape[:2]) for p in hr])
    lr_area = np.mean([np.prod(cv2.imread(str(p)).shape[:2]) for p in lr])
    assert lr_area * 2 < hr_area
    # LR frames are separate captures: each one differs from the others.
    lr_images = [cv2.imread(str(p)) for p in lr]
    assert any(a.shape != b.shape or not np.array_equal(a, b)
               for a, b in zip(lr_images, lr_images[1:]))


def test_generate_plate_tracks(tmp_path: Path) -> None:
    out = generate_plate_tracks(tmp_path / "p", n_tracks=2, seed=0)
    t1 = out / "Scenario-A" / "Brazilian" / "track_00001"
    t2 = out / "Scenario-A" / "Mercosur" / "track_00002"
    for track, layout in ((t1, "brazilian"), (t2, "mercosur")):
        ann = json.loads((track / "annotations.json").read_text())
        assert ann["plate_layout"] == LAYOUT_NAMES[layout]
        assert plate_matches_layout(ann["plate_text"], layout)
        assert len(list(track.glob("lr-*.png"))) == 5 and len(list(track.glob("hr-*.png"))) == 5
    again = generate_plate_tracks(tmp_path / "q", n_tracks=2, seed=0)
    for name in ("annotations.json", "hr-003.png", "lr-005.png"):
        assert (t2 / name).read_bytes() == \
            (again / "Scenario-A" / "Mercosur" / "track_00002" / name).read_bytes()
    with pytest.raises(VinocrError):
        generate_plate_tracks(tmp_path / "r", n_tracks=1, seed=0, layouts=("klingon",))


def test_scenario_b_tracks_have_no_corners_and_looser_wider_crops(tmp_path: Path) -> None:
    a = generate_plate_tracks(tmp_path / "a", n_tracks=16, seed=4, workers=2)
    b = generate_plate_tracks(tmp_path / "b", n_tracks=16, seed=4, workers=2, scenario="B")
    tracks_b = sorted(b.glob("Scenario-B/*/track_*"))
    assert len(tracks_b) == 16 and not (b / "Scenario-A").exists()
    for track in tracks_b:
        assert json.loads((track / "annotations.json").read_text())["corners"] == {}
        assert len(list(track.glob("lr-*.jpg"))) == 5 and not list(track.glob("*.png"))
    assert json.loads((b / "synth.json").read_text())["scenario"] == "Scenario-B"

    def widths(root: Path) -> list:
        return [cv2.imread(str(p)).shape[1] for p in root.glob("Scenario-*/*/track_*/lr-*")]

    # LRLPR-26: Scenario-B LR crops are about 48 px wide, Scenario-A ones about 40.
    assert np.median(widths(b)) > np.median(widths(a)) + 4
    with pytest.raises(VinocrError, match="scenario"):
        generate_plate_tracks(tmp_path / "c", n_tracks=1, scenario="C")


def test_lr_frames_of_a_track_share_their_capture_conditions(tmp_path: Path) -> None:
    from vinocr.data.lrlpr import LrlprTracks
    from vinocr.data.stats import quality_stats

    out = generate_plate_tracks(tmp_path / "p", n_tracks=24, seed=2, workers=2)
    stats = quality_stats(LrlprTracks(out, frames="lr"))
    t = stats["tracks"]
    assert t["tracks"] == 24
    # Consecutive frames of one vehicle: light, focus and noise belong to the moment, so frames
    # of one track differ far less than frames of different tracks ...
    for key in ("brightness", "sharpness", "noise"):
        assert t[f"{key}_within_track_share"] < 0.5, (key, t)
    # ... and the approaching vehicle grows a little from frame to frame.
    assert 0.0 <= t["growth"]["median"] <= 0.06


def test_lrlpr_reader_accepts_tracks(tmp_path: Path) -> None:
    try:
        from vinocr.data.lrlpr import LrlprTracks
    except ImportError:
        pytest.skip("vinocr.data.lrlpr is not available yet")
    out = generate_plate_tracks(tmp_path / "p", n_tracks=2, seed=1)
    dataset = LrlprTracks(out, frames="both")
    assert len(dataset) == 20
    track = dataset.load_track(0)
    assert len(track["lr"]) == 5 and len(track["hr"]) == 5


# ------------------------------------------------------------------------------ CLI
def test_cli_vin_and_plates(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from vinocr.cli.synth import main

    assert main(["vin", "--n", "3", "--out", str(tmp_path / "v"), "--seed", "1",
                 "--styles", "paper,windshield", "--log-level", "WARNING"]) == 0
    assert len(_read_labels(tmp_path / "v")) == 3
    assert main(["plates", "--tracks", "1", "--out", str(tmp_path / "p"),
                 "--log-level", "WARNING"]) == 0
    assert (tmp_path / "p" / "Scenario-A" / "Brazilian" / "track_00001" / "hr-001.png").is_file()
    # A held-out-style set: its settings say which pool made it.
    assert main(["vin", "--n", "4", "--out", str(tmp_path / "h"), "--seed", "2", "--pool",
                 "heldout", "--log-level", "WARNING"]) == 0
    settings = json.loads((tmp_path / "h" / "synth.json").read_text())
    assert settings["pool"] == "heldout" and "laser" in settings["styles"]
    assert "motion_blur" in settings["degradations"]


@pytest.mark.parametrize("argv", [
    ["vin", "--n", "0", "--out", "X"],
    ["vin", "--n", "abc", "--out", "X"],
    ["vin", "--n", "2", "--out", "X", "--styles", "neon"],
    ["vin", "--n", "2", "--out", "X", "--format", "csv"],
    ["vin", "--n", "2", "--out", "X", "--pool", "test"],
    ["vin", "--n", "2"],
    ["plates", "--tracks", "1", "--out", "X", "--layouts", "usa"],
    ["teleport"],
    [],
])
def test_cli_bad_arguments(argv: list, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from vinocr.cli.synth import main

    argv = [str(tmp_path / a) if a == "X" else a for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("vinocr-synth: error:")
    assert len(err.splitlines()) == 1
    assert "Traceback" not in err


def test_overwrite_never_deletes_foreign_data(tmp_path):
    from vinocr.data.synth.writer import generate_vin_dataset
    from vinocr.errors import VinocrError

    real = tmp_path / "real"
    (real / "images").mkdir(parents=True)
    (real / "labels.txt").write_text("images/a.png\tSAL1A2A40SA606662\n")
    with pytest.raises(VinocrError, match="not written by vinocr-synth"):
        generate_vin_dataset(real, 2, overwrite=True)
    assert (real / "labels.txt").read_text().startswith("images/a.png")
    with pytest.raises(VinocrError, match="seed must be"):
        generate_vin_dataset(tmp_path / "neg", 2, seed=-1)

"""Synthetic plate crops of the registered formats (``vinocr-synth plate-crops``): texts drawn from
each format's grammar, labels as a reader must output them, two-row breaks, the format mix, the
dataset writer and its CLI."""
from __future__ import annotations

import json
import re
import zlib

import numpy as np
import pytest

from vinocr.charset import load_charset
from vinocr.cli.synth import main as synth_main
from vinocr.data.synth.fonts import cjk_fonts
from vinocr.data.synth.plate_crops import (_cjk_glyph, format_mix, printed_plate,
                                           render_plate_crop, split_rows)
from vinocr.data.synth.writer import generate_plate_crops, make_plate_crop_sample
from vinocr.decode import FormatGrammar
from vinocr.decode.formats import FormatError, get_format, list_formats
from vinocr.decode.formats.cn import PROVINCES, SPECIAL_SIGNS
from vinocr.errors import VinocrError

PLATE_CN = set(load_charset("plate_cn").class_list())


@pytest.mark.parametrize("name", list_formats())
def test_printed_texts_follow_the_format_and_labels_are_its_reading(name: str) -> None:
    fmt = get_format(name)
    grammar = FormatGrammar([fmt])
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    for _ in range(40):
        printed = printed_plate(fmt, rng)
        assert re.fullmatch(fmt.regex, printed), (name, printed)
        label = fmt.canonical(printed)
        assert grammar.accepts(label), (name, printed, label)
        assert not set(label) & set(fmt.separators), (name, label)


def test_specific_formats_print_their_separators_and_one_style_per_plate() -> None:
    rng = np.random.default_rng(0)
    cn = [printed_plate(get_format("cn_blue"), rng) for _ in range(200)]
    assert sum("·" in p for p in cn) > 150          # real Chinese plates print the dot
    us = [printed_plate(get_format("us_ny"), rng) for _ in range(200)]
    assert all(len({c for c in p if c in " ·•-"}) <= 1 for p in us)
    vanity = [printed_plate(get_format("us_any"), rng) for _ in range(200)]
    assert np.mean([sum(c in " ·•-" for c in p) for p in vanity]) < 1.0


@pytest.mark.parametrize("name", list_formats())
def test_every_format_renders_a_crop_whose_label_the_charset_covers(name: str) -> None:
    fmt = get_format(name)
    image, label, meta = render_plate_crop(fmt, np.random.default_rng([7, len(name)]),
                                           alphabet=PLATE_CN)
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    assert image.shape[0] >= 8 and image.shape[1] >= 16
    assert image.std() > 5.0                        # something is drawn, not a flat fill
    assert set(label) <= PLATE_CN, label
    assert meta["format"] == name and fmt.canonical(meta["printed"]) == label


def test_labels_keep_to_the_charset_or_the_format_is_refused() -> None:
    plate = set(load_charset("plate").class_list())
    rng = np.random.default_rng(5)
    de = [get_format("eu_de").canonical(printed_plate(get_format("eu_de"), rng, plate))
          for _ in range(300)]
    assert all(set(t) <= plate for t in de)
    assert any(set(t) & set("ÄÖÜ") for t in
               (printed_plate(get_format("eu_de"), rng) for _ in range(300)))
    with pytest.raises(VinocrError, match="cn_blue.*plate_cn"):
        printed_plate(get_format("cn_blue"), rng, plate)


def test_a_crop_depends_only_on_its_seed_and_index() -> None:
    mix = (("cn_blue", 0.5), ("eu_de", 0.5))
    a = make_plate_crop_sample(3, 11, mix)
    b = make_plate_crop_sample(3, 11, mix)
    c = make_plate_crop_sample(3, 12, mix)
    assert a[0] == b[0] and a[1] == b[1]
    assert a[0] != c[0]


def test_two_row_plates_break_where_plates_do_and_read_top_row_first() -> None:
    cn = get_format("cn_blue")
    assert split_rows("京A·12345", cn) == ("京A·", "12345")
    assert split_rows("京A12345", cn) == ("京A", "12345")
    assert split_rows("MH 12 AB 1234", get_format("in_state")) == ("MH 12", "AB 1234")
    assert split_rows("B-AB 123", get_format("eu_de")) == ("B-AB", "123")
    assert split_rows("AB12CD", get_format("generic")) == ("AB1", "2CD")
    rng = np.random.default_rng(1)
    for name in ("in_state", "eu_de", "cn_blue", "uk_current"):
        fmt = get_format(name)
        for _ in range(20):
            printed = printed_plate(fmt, rng)
            top, bottom = split_rows(printed, fmt)
            assert top and bottom
            assert fmt.canonical(top + bottom) == fmt.canonical(printed)
    seen = 0
    for i in range(30):
        image, label, meta = render_plate_crop(get_format("in_state"),
                                               np.random.default_rng([2, i]), two_row_p=1.0)
        assert meta["two_row"]
        seen += 1
        assert image.shape[1] / image.shape[0] < 3.0   # square-ish, not a one-row strip
    assert seen == 30
    # Regions without two-row plates stay one row whatever is asked.
    _, _, meta = render_plate_crop(get_format("us_ca"), np.random.default_rng(0), two_row_p=1.0)
    assert not meta["two_row"]


def test_every_province_and_special_sign_is_drawn_distinctly() -> None:
    assert cjk_fonts(), "the Chinese font package is not installed"
    path = cjk_fonts()[0].path
    shapes = {}
    for sign in PROVINCES + SPECIAL_SIGNS:
        glyph = _cjk_glyph(sign, path, 32)
        assert glyph.shape[0] >= 16 and glyph.mean() > 0.1, sign
        shapes[sign] = (glyph > 0.5).tobytes() + bytes(glyph.shape)
    assert len(set(shapes.values())) == len(shapes)


def test_format_mix_splits_group_weights_evenly_and_names_bad_items() -> None:
    mix = {f.name: w for f, w in format_mix("cn_blue:6,cn_green")}
    assert mix == pytest.approx({"cn_blue": 6 / 7, "cn_green": 1 / 7})
    mix = {f.name: w for f, w in format_mix("br,eu_fr:2")}
    assert mix == pytest.approx({"br_old": 0.5 / 3, "mercosur": 0.5 / 3,
                                 "eu_fr_siv": 1 / 3, "eu_fr_fni": 1 / 3})
    nl = {f.name: w for f, w in format_mix("eu")}
    assert sum(w for n, w in nl.items() if n.startswith("eu_nl")) == pytest.approx(1 / 6)
    with pytest.raises(FormatError, match="nope"):
        format_mix("us,nope")
    with pytest.raises(VinocrError, match="us:x"):
        format_mix("us:x")
    with pytest.raises(VinocrError, match="cn:0"):
        format_mix("cn:0")


def test_plate_crop_dataset_is_a_label_file_that_does_not_depend_on_workers(tmp_path) -> None:
    one = generate_plate_crops(tmp_path / "one", 6, "cn_blue,in", seed=4, two_row_p=0.5)
    two = generate_plate_crops(tmp_path / "two", 6, "cn_blue,in", seed=4, two_row_p=0.5,
                               workers=2)
    lines = (one / "labels.txt").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 6
    for line in lines:
        rel, label = line.split("\t")
        assert (one / rel).is_file() and (one / rel).read_bytes() == (two / rel).read_bytes()
        assert FormatGrammar([get_format("cn_blue"), get_format("in_state"),
                              get_format("in_bh")]).accepts(label)
    assert (two / "labels.txt").read_text(encoding="utf-8").splitlines() == lines
    settings = json.loads((one / "synth.json").read_text(encoding="utf-8"))
    assert settings["complete"] and sum(settings["format_counts"].values()) == 6
    assert settings["kind"] == "plate_crops"
    with pytest.raises(VinocrError, match="not empty"):
        generate_plate_crops(one, 2, "cn_blue")
    generate_plate_crops(one, 2, "cn_blue", overwrite=True)
    assert len((one / "labels.txt").read_text(encoding="utf-8").splitlines()) == 2


def test_cli_writes_crops_and_rejects_unknown_formats_in_one_line(tmp_path, capsys) -> None:
    out = tmp_path / "crops"
    assert synth_main(["plate-crops", "--n", "3", "--formats", "uk", "--out", str(out)]) == 0
    assert len((out / "labels.txt").read_text(encoding="utf-8").splitlines()) == 3
    capsys.readouterr()
    assert synth_main(["plate-crops", "--n", "3", "--formats", "uk,xx_yy",
                       "--out", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "xx_yy" in err[0]
    assert synth_main(["plate-crops", "--n", "3", "--formats", "uk", "--two-row", "1.5",
                       "--out", str(tmp_path / "bad2")]) == 2
    capsys.readouterr()
    assert synth_main(["plate-crops", "--n", "3", "--formats", "cn", "--charset", "plate",
                       "--out", str(tmp_path / "bad3")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cn_blue" in err[0]
    assert not (tmp_path / "bad3").exists()

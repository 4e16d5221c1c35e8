from pathlib import Path

import pytest

from vinocr.charset import Charset, load_charset, read_dictionary_file
from vinocr.errors import CharsetError


def test_builtins():
    assert len(load_charset("plate")) == 36
    ppocr = load_charset("ppocr")
    assert len(ppocr) == 6623 and ppocr.num_classes == 6625  # blank + 6623 + space


def test_class_layout_matches_paddleocr():
    cs = load_charset("vin")
    classes = cs.class_list()
    assert classes[0] == "blank" and classes[-1] == " " and classes[1] == "0"
    ids = cs.encode("1m8")  # lower case is normalised for an upper-case charset
    assert cs.decode(ids) == "1M8"
    with pytest.raises(CharsetError, match="'O'"):
        cs.encode("1O8")


def test_dictionary_file(tmp_path: Path):
    good = tmp_path / "d.txt"
    good.write_text("A\nB\nc\n", encoding="utf-8")
    cs = load_charset(good)
    assert cs.characters == ["A", "B", "c"] and not cs.case_insensitive
    multi = tmp_path / "multi.txt"
    multi.write_text("A\nBC\n", encoding="utf-8")
    with pytest.raises(CharsetError, match=r"multi.txt:2: expected one character"):
        read_dictionary_file(multi)
    latin = tmp_path / "latin.txt"
    latin.write_bytes(b"A\n\xe9\n")
    with pytest.raises(CharsetError, match=r"latin.txt:2: not valid UTF-8"):
        read_dictionary_file(latin)
    with pytest.raises(CharsetError, match="unknown charset"):
        load_charset(tmp_path / "nope.txt")
    with pytest.raises(CharsetError, match="duplicate"):
        Charset(["A", "A"])

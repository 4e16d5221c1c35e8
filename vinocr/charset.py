"""Character dictionaries (PaddleOCR convention) and CTC label encoding.

A dictionary file holds one character per line. The model's classes are ``blank`` (index 0), the
dictionary characters (1..n) and a space (last, index n+1), exactly as PaddleOCR's ``CTCLabelDecode``
builds them, so a 33-character VIN dictionary gives 35 output classes and an exported model decodes
identically in stock ``paddleocr``.

Built-ins: ``vin`` (33 VIN symbols), ``plate`` (0-9 A-Z), ``plate_cn`` (0-9 A-Z, the 31 Chinese
province signs and the special-plate signs 学 警 港 澳 挂: 72 characters), ``ppocr`` (the
6623-character PP-OCR dictionary read from the pretrained model's ONNX metadata). Built-ins that
are not derived from code ship as dictionary files in ``vinocr/resources/dicts/NAME.txt``.
"""
from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Set, Union

from vinocr.errors import CharsetError
from vinocr.vin import VIN_ALPHABET

logger = logging.getLogger(__name__)

PLATE_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
#: Built-in charsets stored as dictionary files in DICT_DIR (package data).
DICT_CHARSETS = ("plate_cn",)
BUILTIN_NAMES = ("vin", "plate", *DICT_CHARSETS, "ppocr")
DICT_DIR = Path(__file__).parent / "resources" / "dicts"


def _rapidocr_rec_onnx() -> Path:
    try:
        import rapidocr_onnxruntime
    except ImportError:
        raise CharsetError("charset 'ppocr' needs the rapidocr_onnxruntime package "
                           "(pip install rapidocr_onnxruntime==1.4.4)") from None
    path = Path(rapidocr_onnxruntime.__file__).parent / "models" / "ch_PP-OCRv4_rec_infer.onnx"
    if not path.is_file():
        raise CharsetError(f"PP-OCRv4 recogniser not found in the rapidocr package: {path}")
    return path


@functools.lru_cache(maxsize=4)
def read_onnx_dictionary(onnx_path: Union[str, Path, None] = None) -> List[str]:
    """The dictionary stored under the ONNX metadata key ``character`` (one character per line)."""
    import onnx

    path = Path(onnx_path) if onnx_path is not None else _rapidocr_rec_onnx()
    if not path.is_file():
        raise CharsetError(f"{path}: ONNX model not found")
    # load_external_data=False keeps this cheap; only the metadata is needed.
    model = onnx.load(str(path), load_external_data=False)
    for prop in model.metadata_props:
        if prop.key == "character":
            chars = prop.value.splitlines()
            return [c for c in chars if c != ""]
    raise CharsetError(f"{path}: ONNX metadata has no 'character' key")


def read_dictionary_file(path: Union[str, Path]) -> List[str]:
    """Read a one-character-per-line dictionary; errors name the file and line."""
    p = Path(path)
    if not p.is_file():
        raise CharsetError(f"{p}: dictionary file not found")
    raw = p.read_bytes()
    chars: List[str] = []
    for lineno, line in enumerate(raw.split(b"\n"), start=1):
        line = line.rstrip(b"\r")
        if lineno == 1 and line.startswith(b"\xef\xbb\xbf"):
            line = line[3:]
        if not line:
            continue
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            raise CharsetError(f"{p}:{lineno}: not valid UTF-8") from None
        if len(text) != 1:
            raise CharsetError(f"{p}:{lineno}: expected one character per line, got {text!r}")
        chars.append(text)
    if not chars:
        raise CharsetError(f"{p}: dictionary file is empty")
    return chars


class Charset:
    """An ordered set of characters plus CTC encoding.

    ``case_insensitive`` (default: true when the dictionary has no lower-case letters) upper-cases
    labels before checking them, so ``sal1a2a40sa606662`` is a valid VIN label.
    """

    def __init__(self, characters: Sequence[str], name: str = "custom",
                 case_insensitive: Optional[bool] = None) -> None:
        chars = list(characters)
        seen: Set[str] = set()
        dups = [c for c in chars if c in seen or seen.add(c)]  # type: ignore[func-returns-value]
        if dups:
            raise CharsetError(f"charset {name!r}: duplicate characters {''.join(dups)!r}")
        if " " in chars:
            # The space class is appended after the dictionary (PaddleOCR convention).
            chars.remove(" ")
        self.name = name
        self.characters: List[str] = chars
        self.index: Dict[str, int] = {c: i + 1 for i, c in enumerate(chars)}
        if case_insensitive is None:
            case_insensitive = not any(c.islower() for c in chars)
        self.case_insensitive = case_insensitive

    # Class layout: blank, dictionary..., space.
    BLANK = 0

    @property
    def num_classes(self) -> int:
        return len(self.characters) + 2

    @property
    def space_index(self) -> int:
        return len(self.characters) + 1

    def class_list(self) -> List[str]:
        """Characters by class index: ``['blank', *dictionary, ' ']``."""
        return ["blank", *self.characters, " "]

    def __len__(self) -> int:
        return len(self.characters)

    def __contains__(self, char: str) -> bool:
        return char in self.index

    def __repr__(self) -> str:
        return f"Charset({self.name!r}, {len(self.characters)} characters)"

    def normalize(self, label: str) -> str:
        label = label.strip()
        return label.upper() if self.case_insensitive else label

    def invalid_chars(self, label: str) -> List[str]:
        """Characters of ``label`` (after normalisation) not in the charset, in order, unique."""
        out: List[str] = []
        for c in self.normalize(label):
            if c != " " and c not in self.index and c not in out:
                out.append(c)
        return out

    def encode(self, label: str) -> List[int]:
        """Class indices of ``label`` (no blanks). Raises CharsetError for unknown characters."""
        text = self.normalize(label)
        try:
            return [self.space_index if c == " " else self.index[c] for c in text]
        except KeyError as exc:
            raise CharsetError(f"label {label!r} has character {exc.args[0]!r} outside charset "
                               f"{self.name!r}") from None

    def decode(self, indices: Iterable[int]) -> str:
        """Text of class indices (blank skipped, no CTC collapsing)."""
        table = self.class_list()
        return "".join(table[i] for i in indices if i != self.BLANK)

    def save(self, path: Union[str, Path]) -> None:
        Path(path).write_text("\n".join(self.characters) + "\n", encoding="utf-8")


def load_charset(spec: Union[str, Path, "Charset", Sequence[str]]) -> Charset:
    """A Charset from a built-in name (``vin``, ``plate``, ``plate_cn``, ``ppocr``), a dictionary
    file path, a list of characters or an existing Charset."""
    if isinstance(spec, Charset):
        return spec
    if isinstance(spec, (list, tuple)):
        return Charset(spec)
    text = str(spec)
    if text == "vin":
        return Charset(list(VIN_ALPHABET), name="vin")
    if text == "plate":
        return Charset(list(PLATE_ALPHABET), name="plate")
    if text in DICT_CHARSETS:
        return Charset(read_dictionary_file(DICT_DIR / f"{text}.txt"), name=text)
    if text == "ppocr":
        return Charset(read_onnx_dictionary(), name="ppocr", case_insensitive=False)
    path = Path(text)
    if path.suffix == ".onnx":
        return Charset(read_onnx_dictionary(path), name=path.stem, case_insensitive=False)
    if not path.exists():
        raise CharsetError(f"unknown charset {text!r}: not a built-in ({', '.join(BUILTIN_NAMES)}) "
                           "and no such dictionary file")
    return Charset(read_dictionary_file(path), name=path.stem)

"""Fonts for synthetic text: matplotlib's bundled TrueType fonts, OpenCV Hershey stroke fonts and a
built-in 5x7 dot-matrix font (the pattern most dot-peen VIN markers punch).

Only fonts that ship with our own dependencies are used (no system font directories), so a given
seed produces the same images on every machine that has the same package versions.
"""
from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import cv2
import numpy as np

from vinocr.errors import VinocrError

logger = logging.getLogger(__name__)

KIND_TRUETYPE = "truetype"
KIND_HERSHEY = "hershey"
KIND_DOTMATRIX = "dotmatrix"


@dataclass(frozen=True)
class FontSpec:
    """One usable font. ``path`` is set for TrueType fonts, ``face`` for Hershey fonts."""

    name: str
    kind: str
    path: Optional[str] = None
    face: Optional[int] = None
    bold: bool = False
    mono: bool = False
    serif: bool = False


# (file name, short name, bold, mono, serif). DejaVu/STIX cover plain ASCII at standard code points;
# matplotlib's Computer Modern TTFs use a custom encoding and are deliberately left out.
_TRUETYPE_FILES: Tuple[Tuple[str, str, bool, bool, bool], ...] = (
    ("DejaVuSans.ttf", "dejavu-sans", False, False, False),
    ("DejaVuSans-Bold.ttf", "dejavu-sans-bold", True, False, False),
    ("DejaVuSansMono.ttf", "dejavu-sans-mono", False, True, False),
    ("DejaVuSansMono-Bold.ttf", "dejavu-sans-mono-bold", True, True, False),
    ("DejaVuSerif.ttf", "dejavu-serif", False, False, True),
    ("DejaVuSerif-Bold.ttf", "dejavu-serif-bold", True, False, True),
    ("STIXGeneral.ttf", "stix-general", False, False, True),
    ("STIXGeneralBol.ttf", "stix-general-bold", True, False, True),
)

# Hershey faces that look like stamped / engraved lettering. The script faces are not used: no VIN
# marking uses handwriting.
_HERSHEY_FACES: Tuple[Tuple[str, int, bool], ...] = (
    ("hershey-simplex", cv2.FONT_HERSHEY_SIMPLEX, False),
    ("hershey-plain", cv2.FONT_HERSHEY_PLAIN, False),
    ("hershey-duplex", cv2.FONT_HERSHEY_DUPLEX, True),
    ("hershey-complex", cv2.FONT_HERSHEY_COMPLEX, False),
    ("hershey-triplex", cv2.FONT_HERSHEY_TRIPLEX, True),
)

DOTMATRIX_FONT = FontSpec(name="dotmatrix-5x7", kind=KIND_DOTMATRIX, mono=True)

# 5x7 dot-matrix glyphs ('#' = dot), rows top to bottom. Covers the VIN alphabet, the plate letters
# (all 26) and the '*' / '-' delimiters.
_DOT_GLYPHS_SRC: Dict[str, str] = {
    "0": ".###. #...# #..## #.#.# ##..# #...# .###.",
    "1": "..#.. .##.. ..#.. ..#.. ..#.. ..#.. .###.",
    "2": ".###. #...# ....# ...#. ..#.. .#... #####",
    "3": "##### ...#. ..#.. ...#. ....# #...# .###.",
    "4": "...#. ..##. .#.#. #..#. ##### ...#. ...#.",
    "5": "##### #.... ####. ....# ....# #...# .###.",
    "6": "..##. .#... #.... ####. #...# #...# .###.",
    "7": "##### ....# ...#. ..#.. .#... .#... .#...",
    "8": ".###. #...# #...# .###. #...# #...# .###.",
    "9": ".###. #...# #...# .#### ....# ...#. .##..",
    "A": ".###. #...# #...# ##### #...# #...# #...#",
    "B": "####. #...# #...# ####. #...# #...# ####.",
    "C": ".###. #...# #.... #.... #.... #...# .###.",
    "D": "###.. #..#. #...# #...# #...# #..#. ###..",
    "E": "##### #.... #.... ####. #.... #.... #####",
    "F": "##### #.... #.... ####. #.... #.... #....",
    "G": ".###. #...# #.... #.### #...# #...# .####",
    "H": "#...# #...# #...# ##### #...# #...# #...#",
    "I": ".###. ..#.. ..#.. ..#.. ..#.. ..#.. .###.",
    "J": "..### ...#. ...#. ...#. ...#. #..#. .##..",
    "K": "#...# #..#. #.#.. ##... #.#.. #..#. #...#",
    "L": "#.... #.... #.... #.... #.... #.... #####",
    "M": "#...# ##.## #.#.# #.#.# #...# #...# #...#",
    "N": "#...# #...# ##..# #.#.# #..## #...# #...#",
    "O": ".###. #...# #...# #...# #...# #...# .###.",
    "P": "####. #...# #...# ####. #.... #.... #....",
    "Q": ".###. #...# #...# #...# #.#.# #..#. .##.#",
    "R": "####. #...# #...# ####. #.#.. #..#. #...#",
    "S": ".#### #.... #.... .###. ....# ....# ####.",
    "T": "##### ..#.. ..#.. ..#.. ..#.. ..#.. ..#..",
    "U": "#...# #...# #...# #...# #...# #...# .###.",
    "V": "#...# #...# #...# #...# #...# .#.#. ..#..",
    "W": "#...# #...# #...# #.#.# #.#.# #.#.# .#.#.",
    "X": "#...# #...# .#.#. ..#.. .#.#. #...# #...#",
    "Y": "#...# #...# #...# .#.#. ..#.. ..#.. ..#..",
    "Z": "##### ....# ...#. ..#.. .#... #.... #####",
    "*": "..... ..#.. #.#.# .###. #.#.# ..#.. .....",
    "-": "..... ..... ..... ##### ..... ..... .....",
}


def _parse_dot_glyphs() -> Dict[str, np.ndarray]:
    glyphs = {}
    for char, src in _DOT_GLYPHS_SRC.items():
        rows = src.split()
        if len(rows) != 7 or any(len(r) != 5 for r in rows):
            raise ValueError(f"dot-matrix glyph {char!r} is not 5x7")
        glyphs[char] = np.array([[c == "#" for c in r] for r in rows], dtype=bool)
    return glyphs


#: Character -> (7, 5) bool array of dot positions.
DOT_GLYPHS: Dict[str, np.ndarray] = _parse_dot_glyphs()


@functools.lru_cache(maxsize=1)
def _matplotlib_font_dir() -> Optional[Path]:
    """matplotlib's bundled TTF directory, found without importing matplotlib.

    Importing matplotlib can build its font cache (seconds, and a write to the home directory) in
    every worker process; the fonts live at a fixed place inside the package, so look there first.
    """
    import importlib.util

    spec = importlib.util.find_spec("matplotlib")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "mpl-data" / "fonts" / "ttf"
    if path.is_dir():
        return path
    try:  # unusual layouts (e.g. a relocated data path): ask matplotlib itself
        import matplotlib
    except ImportError:
        return None
    path = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    return path if path.is_dir() else None


@functools.lru_cache(maxsize=1)
def truetype_fonts() -> Tuple[FontSpec, ...]:
    """TrueType fonts bundled with matplotlib that exist on this machine (may be empty)."""
    font_dir = _matplotlib_font_dir()
    if font_dir is None:
        logger.warning("matplotlib's font directory was not found; synthetic text will use only "
                       "OpenCV Hershey and dot-matrix fonts")
        return ()
    found = []
    for file_name, name, bold, mono, serif in _TRUETYPE_FILES:
        path = font_dir / file_name
        if path.is_file():
            found.append(FontSpec(name=name, kind=KIND_TRUETYPE, path=str(path), bold=bold,
                                  mono=mono, serif=serif))
    if not found:
        logger.warning("no DejaVu/STIX TrueType fonts in %s; using Hershey fonts only", font_dir)
    return tuple(found)


def hershey_fonts() -> Tuple[FontSpec, ...]:
    """OpenCV's Hershey stroke fonts (always available with OpenCV)."""
    return tuple(FontSpec(name=name, kind=KIND_HERSHEY, face=face, bold=bold)
                 for name, face, bold in _HERSHEY_FACES)


def list_fonts() -> List[FontSpec]:
    """Every font the synthesiser can use: TrueType, Hershey and the dot-matrix font.

    Raises:
        VinocrError: when no font at all is available.
    """
    fonts = list(truetype_fonts()) + list(hershey_fonts()) + [DOTMATRIX_FONT]
    if not fonts:  # pragma: no cover - Hershey fonts come with OpenCV
        raise VinocrError("no fonts found for synthetic text: install matplotlib (DejaVu fonts) "
                          "or opencv-python-headless (Hershey fonts)")
    return fonts


def get_font(name: str) -> FontSpec:
    """The font called ``name`` (see :func:`list_fonts`); VinocrError if unknown."""
    for font in list_fonts():
        if font.name == name:
            return font
    names = ", ".join(f.name for f in list_fonts())
    raise VinocrError(f"unknown font {name!r}; available: {names}")


def select_fonts(names: Tuple[str, ...]) -> Tuple[FontSpec, ...]:
    """The available subset of ``names`` in the given order; VinocrError when none is available.

    Styles declare a preferred font list; a missing TrueType file just narrows the choice.
    """
    by_name = {f.name: f for f in list_fonts()}
    chosen = tuple(by_name[n] for n in names if n in by_name)
    if not chosen:
        raise VinocrError("none of the fonts " + ", ".join(names) + " is available; install "
                          "matplotlib for the DejaVu fonts")
    return chosen


@functools.lru_cache(maxsize=256)
def load_truetype(path: str, size: int):  # -> PIL.ImageFont.FreeTypeFont
    """A cached PIL FreeType font; loading a TTF costs far more than rendering 17 glyphs."""
    from PIL import ImageFont

    try:
        return ImageFont.truetype(path, size)
    except OSError as exc:
        raise VinocrError(f"cannot load font {path}: {exc}") from None


@functools.lru_cache(maxsize=64)
def truetype_cap_height(path: str, size: int) -> Tuple[int, int]:
    """``(cap_height, x_offset)`` in pixels of 'H' at ``size`` with a left-baseline anchor."""
    font = load_truetype(path, size)
    left, top, right, bottom = font.getbbox("H", anchor="ls")
    return max(1, -top), left


@functools.lru_cache(maxsize=64)
def hershey_cap_height(face: int) -> float:
    """Cap height in pixels of a Hershey face at scale 1 (to convert a pixel height to a scale)."""
    (_, height), _ = cv2.getTextSize("H", face, 1.0, 1)
    return float(height)

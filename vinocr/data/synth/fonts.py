"""Fonts for synthetic text: matplotlib's bundled TrueType fonts, OFL fonts from the ``fontpkg-*``
PyPI packages that ``setup.py`` installs (monospace, condensed/DIN-like, technical, stencil, pixel),
OpenCV Hershey stroke fonts, and dot-matrix fonts (a hand-drawn 5x7 and a 7x9 rasterised from a
monospace face: the patterns dot-peen VIN markers punch).

Only fonts that ship with our own dependencies are used (no system font directories, no
downloads), so a given seed produces the same images on every machine that has the same package
versions.

Every font belongs to one *pool* (``train`` or ``heldout``, see :mod:`vinocr.data.synth.pools`):
whole families are held out so a held-out-style test set measures what a model learnt about VINs
rather than about our fonts.
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

#: Font pools (see :mod:`vinocr.data.synth.pools`).
POOL_TRAIN = "train"
POOL_HELDOUT = "heldout"

#: Letterform categories; render styles ask for categories, not font names.
CATEGORIES = ("mono", "sans", "condensed", "serif", "tech", "stencil", "pixel", "stroke", "dot")


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
    category: str = "sans"
    pool: str = POOL_TRAIN
    #: (columns, rows) of a dot-matrix font.
    grid: Tuple[int, int] = (5, 7)


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

# OFL fonts from fontpkg-* PyPI packages (setup.py installs them): (module, file, name, bold,
# category, pool). Families, not single weights, are split between pools: a held-out family
# contributes no weight at all to training.
_PYPI_FILES: Tuple[Tuple[str, str, str, bool, str, str], ...] = (
    ("fontpkg_ibm_plex_mono", "IBMPlexMono-Regular.ttf", "plex-mono", False, "mono", POOL_TRAIN),
    ("fontpkg_ibm_plex_mono", "IBMPlexMono-Bold.ttf", "plex-mono-bold", True, "mono", POOL_TRAIN),
    ("fontpkg_roboto_mono", "RobotoMono[wght].ttf", "roboto-mono", False, "mono", POOL_TRAIN),
    ("fontpkg_source_code_pro", "SourceCodePro[wght].ttf", "source-code-pro", False, "mono",
     POOL_TRAIN),
    ("fontpkg_barlow_condensed", "BarlowCondensed-Medium.ttf", "barlow-condensed", False,
     "condensed", POOL_TRAIN),
    ("fontpkg_barlow_condensed", "BarlowCondensed-Bold.ttf", "barlow-condensed-bold", True,
     "condensed", POOL_TRAIN),
    ("fontpkg_roboto_condensed", "RobotoCondensed[wght].ttf", "roboto-condensed", False,
     "condensed", POOL_TRAIN),
    ("fontpkg_oswald", "Oswald[wght].ttf", "oswald", False, "condensed", POOL_TRAIN),
    ("fontpkg_archivo_narrow", "ArchivoNarrow[wght].ttf", "archivo-narrow", False, "condensed",
     POOL_TRAIN),
    ("fontpkg_share_tech", "ShareTech-Regular.ttf", "share-tech", False, "tech", POOL_TRAIN),
    ("fontpkg_black_ops_one", "BlackOpsOne-Regular.ttf", "black-ops-one", True, "stencil",
     POOL_TRAIN),
    ("fontpkg_press_start_2p", "PressStart2P-Regular.ttf", "press-start-2p", False, "pixel",
     POOL_TRAIN),
    # Held-out families.
    ("fontpkg_jetbrains_mono", "JetBrainsMono[wght].ttf", "jetbrains-mono", False, "mono",
     POOL_HELDOUT),
    ("fontpkg_inconsolata", "Inconsolata[wdth,wght].ttf", "inconsolata", False, "mono",
     POOL_HELDOUT),
    ("fontpkg_space_mono", "SpaceMono-Regular.ttf", "space-mono", False, "mono", POOL_HELDOUT),
    ("fontpkg_space_mono", "SpaceMono-Bold.ttf", "space-mono-bold", True, "mono", POOL_HELDOUT),
    ("fontpkg_ibm_plex_sans_condensed", "IBMPlexSansCondensed-Medium.ttf",
     "plex-sans-condensed", False, "condensed", POOL_HELDOUT),
    ("fontpkg_pt_sans_narrow", "PT_Sans-Narrow-Web-Bold.ttf", "pt-sans-narrow-bold", True,
     "condensed", POOL_HELDOUT),
    ("fontpkg_overpass", "Overpass[wght].ttf", "overpass", False, "sans", POOL_HELDOUT),
    ("fontpkg_atkinson_hyperlegible", "AtkinsonHyperlegible-Bold.ttf", "atkinson-bold", True,
     "sans", POOL_HELDOUT),
    ("fontpkg_chakra_petch", "ChakraPetch-Medium.ttf", "chakra-petch", False, "tech",
     POOL_HELDOUT),
    ("fontpkg_rajdhani", "Rajdhani-SemiBold.ttf", "rajdhani", True, "tech", POOL_HELDOUT),
)

# Simplified-Chinese face for the province signs of Chinese plates (OFL, the
# ``pylopdf-fonts-zh-cn`` package that setup.py installs). Not in ``list_fonts``: VIN styles and
# the Latin plate number never draw with it.
_CJK_FILES: Tuple[Tuple[str, str, str], ...] = (
    ("pylopdf_fonts_zh_cn", "NotoSansSC-Regular.otf", "noto-sans-sc"),
)

# Hershey faces that look like stamped / engraved lettering. The script faces are not used: no VIN
# marking uses handwriting. Triplex (a serifed double-stroke face) is held out.
_HERSHEY_FACES: Tuple[Tuple[str, int, bool, str], ...] = (
    ("hershey-simplex", cv2.FONT_HERSHEY_SIMPLEX, False, POOL_TRAIN),
    ("hershey-plain", cv2.FONT_HERSHEY_PLAIN, False, POOL_TRAIN),
    ("hershey-duplex", cv2.FONT_HERSHEY_DUPLEX, True, POOL_TRAIN),
    ("hershey-complex", cv2.FONT_HERSHEY_COMPLEX, False, POOL_TRAIN),
    ("hershey-triplex", cv2.FONT_HERSHEY_TRIPLEX, True, POOL_HELDOUT),
)

DOTMATRIX_FONT = FontSpec(name="dotmatrix-5x7", kind=KIND_DOTMATRIX, mono=True, category="dot")
#: 7x9 dot matrix (finer markers), rasterised from a monospace face; held out.
DOTMATRIX_7X9_FONT = FontSpec(name="dotmatrix-7x9", kind=KIND_DOTMATRIX, mono=True,
                              category="dot", pool=POOL_HELDOUT, grid=(7, 9))

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
            category = "mono" if mono else ("serif" if serif else "sans")
            found.append(FontSpec(name=name, kind=KIND_TRUETYPE, path=str(path), bold=bold,
                                  mono=mono, serif=serif, category=category))
    if not found:
        logger.warning("no DejaVu/STIX TrueType fonts in %s; using Hershey fonts only", font_dir)
    return tuple(found)


def _package_dir(module: str) -> Optional[Path]:
    """Directory of an installed package, found without importing it (None if not installed)."""
    import importlib.util

    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent


@functools.lru_cache(maxsize=1)
def pypi_fonts() -> Tuple[FontSpec, ...]:
    """The fontpkg-* TrueType fonts that are installed (setup.py installs all of them)."""
    found = []
    missing = set()
    for module, file_name, name, bold, category, pool in _PYPI_FILES:
        root = _package_dir(module)
        path = root / "files" / file_name if root is not None else None
        if path is None or not path.is_file():
            missing.add(module.replace("_", "-"))
            continue
        found.append(FontSpec(name=name, kind=KIND_TRUETYPE, path=str(path), bold=bold,
                              mono=category == "mono", category=category, pool=pool))
    if missing:
        logger.warning("font packages missing (reinstall vinocr to get them): %s; synthetic text "
                       "uses fewer fonts", ", ".join(sorted(missing)))
    return tuple(found)


def is_cjk(char: str) -> bool:
    """True for a CJK character (a Chinese province sign), which Latin fonts do not draw."""
    return ord(char) >= 0x2E80


@functools.lru_cache(maxsize=1)
def cjk_fonts() -> Tuple[FontSpec, ...]:
    """Fonts that draw Chinese characters (the province signs of Chinese plates)."""
    found = []
    for module, file_name, name in _CJK_FILES:
        package = _package_dir(module)
        if package is not None and (package / file_name).is_file():
            found.append(FontSpec(name=name, kind=KIND_TRUETYPE, path=str(package / file_name),
                                  category="cjk"))
    return tuple(found)


def hershey_fonts() -> Tuple[FontSpec, ...]:
    """OpenCV's Hershey stroke fonts (always available with OpenCV)."""
    return tuple(FontSpec(name=name, kind=KIND_HERSHEY, face=face, bold=bold, category="stroke",
                          pool=pool)
                 for name, face, bold, pool in _HERSHEY_FACES)


def list_fonts() -> List[FontSpec]:
    """Every font the synthesiser can use: TrueType, Hershey and the dot-matrix fonts.

    Raises:
        VinocrError: when no font at all is available.
    """
    return list(_all_fonts())


@functools.lru_cache(maxsize=1)
def _all_fonts() -> Tuple[FontSpec, ...]:
    fonts = (list(truetype_fonts()) + list(pypi_fonts()) + list(hershey_fonts())
             + [DOTMATRIX_FONT, DOTMATRIX_7X9_FONT])
    if not fonts:  # pragma: no cover - Hershey fonts come with OpenCV
        raise VinocrError("no fonts found for synthetic text: install matplotlib (DejaVu fonts) "
                          "or opencv-python-headless (Hershey fonts)")
    return tuple(fonts)


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
    by_name = {f.name: f for f in _all_fonts()}
    chosen = tuple(by_name[n] for n in names if n in by_name)
    if not chosen:
        raise VinocrError("none of the fonts " + ", ".join(names) + " is available; install "
                          "matplotlib for the DejaVu fonts")
    return chosen


def fonts_for(categories: Tuple[str, ...], pools: Tuple[str, ...]) -> Tuple[FontSpec, ...]:
    """Fonts of any of ``categories`` that belong to one of ``pools`` (may be empty)."""
    return tuple(f for f in _all_fonts() if f.category in categories and f.pool in pools)


@functools.lru_cache(maxsize=4)
def dot_glyphs(grid: Tuple[int, int]) -> Dict[str, np.ndarray]:
    """Character -> (rows, cols) bool dot pattern for a dot-matrix grid of ``(cols, rows)``.

    5x7 is the hand-drawn :data:`DOT_GLYPHS`. Other grids are rasterised from DejaVu Sans Mono
    (or a Hershey face without matplotlib): each grid cell is a dot when the glyph covers
    enough of it, which is how marker firmware builds its bitmap fonts from outlines.
    """
    if tuple(grid) == (5, 7):
        return DOT_GLYPHS
    cols, rows = grid
    cell = 12
    mono = [f for f in truetype_fonts() if f.name == "dejavu-sans-mono"]
    glyphs: Dict[str, np.ndarray] = {}
    for char in DOT_GLYPHS:
        canvas = np.zeros((rows * cell, cols * cell), np.uint8)
        if mono:
            from PIL import Image, ImageDraw

            size = load_truetype(mono[0].path, 100).size
            cap, _ = truetype_cap_height(mono[0].path, size)
            font = load_truetype(mono[0].path, int(round(size * rows * cell / cap)))
            image = Image.new("L", (cols * cell, rows * cell), 0)
            ImageDraw.Draw(image).text((cols * cell / 2, rows * cell), char, font=font, fill=255,
                                       anchor="ms")
            canvas = np.asarray(image)
        else:  # pragma: no cover - matplotlib is a dependency
            scale = rows * cell / hershey_cap_height(cv2.FONT_HERSHEY_SIMPLEX)
            (w, _), _ = cv2.getTextSize(char, cv2.FONT_HERSHEY_SIMPLEX, scale, cell)
            cv2.putText(canvas, char, ((cols * cell - w) // 2, rows * cell - cell // 2),
                        cv2.FONT_HERSHEY_SIMPLEX, scale, 255, cell)
        cover = canvas.reshape(rows, cell, cols, cell).mean(axis=(1, 3)) / 255.0
        glyphs[char] = cover > 0.3
    return glyphs


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

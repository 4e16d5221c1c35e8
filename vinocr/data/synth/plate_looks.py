"""How plates of each registered format look: colours, proportions, bands, surrounding text.

A :class:`PlateLook` is data, read by :mod:`vinocr.data.synth.plate_crops`. Each registered
plate format (:mod:`vinocr.decode.formats`) is drawn with the looks :func:`looks_for` returns for
it, chosen by its region code; a format of an unknown region (a plugin's, ``generic``) is drawn
with any look, which is what a region-free plate stream looks like.

The looks are approximations from public descriptions of the plates (colours, the EU band, US
state names above the number), not copies of any design: enough variety that a recogniser
pre-trained on them has seen the colour schemes, proportions and clutter of the region.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Tuple

#: A BGR colour, 0..255.
Colour = Tuple[int, int, int]

BLACK: Colour = (25, 25, 25)
WHITE: Colour = (240, 240, 240)
NAVY: Colour = (90, 40, 15)
RED: Colour = (30, 30, 170)
EU_BLUE: Colour = (150, 60, 0)
YELLOW: Colour = (40, 200, 240)
CN_BLUE: Colour = (175, 75, 15)
CN_GREEN: Colour = (90, 190, 60)


@dataclass(frozen=True)
class Scheme:
    """Background and ink. ``paper2`` is a second background colour the plate fades into
    (top to bottom), as on US graphic plates and Chinese new-energy plates."""

    paper: Colour
    ink: Colour
    paper2: Optional[Colour] = None
    weight: float = 1.0


@dataclass(frozen=True)
class PlateLook:
    """One family of plate designs.

    Attributes:
        name: identifier (``eu``, ``us``, ``cn_blue`` ...), recorded per crop.
        aspect: width / height of a one-row plate.
        schemes: colour schemes, drawn by weight.
        fonts: font categories (:data:`vinocr.data.synth.fonts.CATEGORIES`) of the number.
        band: ``"eu"`` draws the blue EU band with the country code at the left.
        band_codes: country codes for the band (one is drawn).
        header: words above the number (one is drawn; empty: none).
        footer: words below the number.
        two_row_p: how often this look comes as a two-row plate (square plates of motorcycles,
            imports, Chinese rear plates of large vehicles, Indian two-row plates).
        two_row_aspect: width / height of the two-row plate.
        embossed: probability that the characters are raised (they catch light on one side).
        bolt_holes: bolt holes drawn (0, 2 or 4).
        frame_p: probability of a dealer frame over the edges (covers parts of header/footer).
    """

    name: str
    aspect: float
    schemes: Tuple[Scheme, ...]
    fonts: Tuple[str, ...] = ("condensed", "sans", "mono", "tech")
    band: Optional[str] = None
    band_codes: Tuple[str, ...] = ()
    header: Tuple[str, ...] = ()
    footer: Tuple[str, ...] = ()
    two_row_p: float = 0.0
    two_row_aspect: float = 1.7
    embossed: float = 0.5
    bolt_holes: int = 2
    frame_p: float = 0.0


_US_STATE_NAMES = {
    "US-CA": "California", "US-NY": "NEW YORK", "US-PA": "PENNSYLVANIA",
    "US-NC": "NORTH CAROLINA", "US-VA": "VIRGINIA", "US-OH": "OHIO", "US-GA": "GEORGIA",
    "US-TX": "TEXAS", "US-WA": "Washington", "US-AZ": "ARIZONA",
}
_US_FOOTERS = ("dmv.ca.gov", "EMPIRE STATE", "visitPA.com", "FIRST IN FLIGHT",
               "Virginia is for Lovers", "BIRTHPLACE OF AVIATION", "PEACH STATE",
               "THE LONE STAR STATE", "EVERGREEN STATE", "GRAND CANYON STATE", "", "")
_US_SCHEMES = (
    Scheme(WHITE, NAVY, weight=3.0), Scheme(WHITE, BLACK, weight=2.0),
    Scheme((235, 240, 245), RED, weight=1.0),
    Scheme((250, 235, 215), NAVY, paper2=(120, 200, 250), weight=1.0),   # sky to sand
    Scheme((60, 200, 245), NAVY, paper2=WHITE, weight=1.0),               # gold fade
    Scheme(WHITE, (20, 90, 20), paper2=(200, 235, 205), weight=0.5),      # green text
)


def _us(region: str) -> PlateLook:
    name = _US_STATE_NAMES.get(region)
    header = (name,) if name else tuple(_US_STATE_NAMES.values())
    return PlateLook(name="us", aspect=2.0, schemes=_US_SCHEMES, fonts=("condensed", "sans"),
                     header=header, footer=_US_FOOTERS, embossed=0.6, bolt_holes=4, frame_p=0.4)


_EU_WHITE = (Scheme(WHITE, BLACK),)
_EU_CODES = {"DE": "D", "FR": "F", "IT": "I", "ES": "E", "NL": "NL", "PL": "PL"}


def _eu(region: str) -> PlateLook:
    schemes = (Scheme(YELLOW, BLACK),) if region == "NL" else _EU_WHITE
    return PlateLook(name="eu", aspect=520 / 110, schemes=schemes,
                     fonts=("condensed", "sans", "tech"), band="eu",
                     band_codes=(_EU_CODES.get(region, "EU"),), two_row_p=0.1,
                     two_row_aspect=340 / 200, embossed=0.6)


LOOKS: Dict[str, PlateLook] = {
    "uk": PlateLook(name="uk", aspect=520 / 111,
                    schemes=(Scheme(WHITE, BLACK), Scheme(YELLOW, BLACK)),
                    fonts=("sans", "condensed"), band="eu", band_codes=("UK", "GB", ""),
                    two_row_p=0.1, two_row_aspect=279 / 203, embossed=0.2),
    "cn_blue": PlateLook(name="cn_blue", aspect=440 / 140,
                         schemes=(Scheme(CN_BLUE, WHITE, weight=6.0), Scheme(YELLOW, BLACK)),
                         fonts=("condensed", "sans"), two_row_p=0.05, two_row_aspect=440 / 220,
                         embossed=0.7),
    "cn_green": PlateLook(name="cn_green", aspect=480 / 140,
                          schemes=(Scheme(WHITE, BLACK, paper2=CN_GREEN),
                                   Scheme(YELLOW, BLACK, paper2=CN_GREEN, weight=0.3)),
                          fonts=("condensed", "sans"), embossed=0.5),
    "cn_special": PlateLook(name="cn_special", aspect=440 / 140,
                            schemes=(Scheme(YELLOW, BLACK), Scheme(WHITE, BLACK),
                                     Scheme(BLACK, WHITE, weight=0.5)),
                            fonts=("condensed", "sans"), embossed=0.7),
    "in": PlateLook(name="in", aspect=500 / 120,
                    schemes=(Scheme(WHITE, BLACK, weight=4.0), Scheme(YELLOW, BLACK, weight=2.0),
                             Scheme((60, 140, 20), WHITE, weight=0.5)),
                    fonts=("sans", "condensed", "mono"), band="in", band_codes=("IND",),
                    two_row_p=0.3, two_row_aspect=340 / 200, embossed=0.3),
}


def looks_for(region: Optional[str], format_name: str) -> Tuple[PlateLook, ...]:
    """The looks a plate of ``format_name`` (region code ``region``) is drawn with.

    Brazilian formats are drawn by :mod:`vinocr.data.synth.plates` (their tracks' renderer) and
    get no look here; an unknown or missing region gets every look.
    """
    if region is None or region == "":
        return tuple(_every_look())
    if region.startswith("US"):
        return (_us(region),)
    if region in _EU_CODES:
        return (_eu(region),)
    if region == "GB":
        return (LOOKS["uk"],)
    if region == "CN":
        key = format_name if format_name in LOOKS else "cn_blue"
        return (LOOKS[key],)
    if region == "IN":
        return (LOOKS["in"],)
    return tuple(_every_look())


def _every_look() -> Tuple[PlateLook, ...]:
    return (_us(""), *(_eu(r) for r in ("DE", "NL")), *LOOKS.values())

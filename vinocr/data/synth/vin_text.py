"""Random but realistic VIN strings for synthetic training data.

Every generated VIN uses only the 33-symbol VIN alphabet (never I, O, Q), starts with a real World
Manufacturer Identifier, carries a model-year code at position 10 and a *correct* check digit at
position 9 -- also for European and Asian makers, where the check digit is optional in the real
world. We always compute it so that every synthetic label passes check-digit validation, which
keeps the label set consistent with the strictest (North American) rule the decoder may enforce.
"""
from __future__ import annotations

from typing import Dict, List, Tuple

import numpy as np

from vinocr.errors import VinocrError
from vinocr.vin import VIN_ALPHABET, YEAR_CODES, region_of, with_check_digit

# Real WMIs (ISO 3780 / SAE assignments), grouped by the region that :func:`vinocr.vin.region_of`
# derives from their first character. Kept as a flat list; the region is computed, not duplicated.
WMIS: Tuple[str, ...] = (
    # North America (1-5)
    "1HG", "1FA", "1FT", "1FM", "1FD", "1G1", "1GC", "1GN", "1G6", "1C4", "1C3", "1C6", "1J4",
    "1N4", "1N6", "1VW", "19X", "1GT", "1LN", "1ME", "2T1", "2HG", "2G1", "2C3", "2FM", "2HK",
    "2T3", "3VW", "3FA", "3N1", "3GN", "3HG", "3C6", "3KP", "4T1", "4S3", "4S4", "4JG", "4T3",
    "4US", "5YJ", "5UX", "5NP", "5FN", "5XY", "5TD", "5J6", "5N1",
    # Asia (J-R)
    "JHM", "JTD", "JT2", "JTE", "JTN", "JN1", "JN8", "JM1", "JF1", "JF2", "JA3", "JA4", "JS2",
    "JMZ", "KMH", "KNA", "KND", "KNM", "KL1", "KPT", "LFV", "LSV", "LVS", "LRW", "LVG", "LBV",
    "MA1", "MAL", "MRH", "MMB", "NMT", "NM0", "PL1", "RFB",
    # Europe (S-Z)
    "WBA", "WBS", "WBY", "WVW", "WV1", "WV2", "WAU", "WUA", "WDB", "WDD", "WDC", "WP0", "WP1",
    "W0L", "WF0", "WMW", "WME", "SAL", "SAJ", "SAR", "SCC", "SCF", "SB1", "SHH", "SJN", "VF1",
    "VF3", "VF7", "VR1", "VSS", "VNK", "VWV", "ZFA", "ZAR", "ZFF", "ZHW", "ZAM", "ZCF", "YV1",
    "YV4", "YS3", "YSM", "TMB", "TMA", "TRU", "TSM", "UU1", "XTA", "XW8",
    # South America (8-9)
    "9BW", "9BG", "9BD", "9BR", "9BF", "93H", "93Y", "936", "8AP", "8AF", "8AG", "8AJ",
    # Oceania (6-7)
    "6FP", "6G1", "6T1", "6MM",
    # Africa (A-H)
    "AAV", "ADM", "AHT", "AFA", "ADN",
)

REGIONS: Tuple[str, ...] = ("any", "north_america", "europe", "asia", "south_america", "oceania",
                            "africa")

_DIGITS = "0123456789"
_LETTERS = "".join(c for c in VIN_ALPHABET if c.isalpha())

# Position 11 is the assembly plant: makers use letters far more often than digits.
_PLANT_CHARS = _LETTERS + "0123456789"


def _build_region_table() -> Dict[str, List[str]]:
    table: Dict[str, List[str]] = {r: [] for r in REGIONS}
    for wmi in WMIS:
        if any(c not in VIN_ALPHABET for c in wmi):
            # A typo in the table would silently produce invalid labels; fail loudly at import.
            raise ValueError(f"WMI table entry {wmi!r} uses characters outside the VIN alphabet")
        table["any"].append(wmi)
        table.setdefault(region_of(wmi), []).append(wmi)
    return table


_WMI_BY_REGION = _build_region_table()


def _pick(rng: np.random.Generator, chars: str) -> str:
    return chars[int(rng.integers(len(chars)))]


def random_vin(rng: np.random.Generator, region: str = "any") -> str:
    """A random 17-character VIN with a real WMI, valid check digit and a year code.

    Args:
        rng: the random generator (the only source of randomness, so output is reproducible).
        region: ``"any"`` or one of :data:`REGIONS` to restrict the WMI to that region.
    """
    wmis = _WMI_BY_REGION.get(region)
    if not wmis:
        raise VinocrError(f"unknown VIN region {region!r}; choose one of {', '.join(REGIONS)}")
    wmi = wmis[int(rng.integers(len(wmis)))]
    # Positions 4-8 (vehicle descriptor): makers mix letters and digits; position 8 is very often
    # an engine code digit or letter, so a per-position coin keeps both patterns common.
    vds = "".join(_pick(rng, _DIGITS if rng.random() < 0.45 else _LETTERS) for _ in range(5))
    year = _pick(rng, YEAR_CODES)
    plant = _pick(rng, _LETTERS if rng.random() < 0.8 else _DIGITS)
    if rng.random() < 0.75:
        # Most high-volume makers: positions 12-17 are a purely numeric sequential serial.
        serial = f"{int(rng.integers(0, 1_000_000)):06d}"
    else:
        # Low-volume makers / some European brands: positions 12-13 may be letters, while
        # positions 14-17 are always numeric (49 CFR 565.15).
        head = _pick(rng, _LETTERS) + _pick(rng, _LETTERS + _DIGITS)
        serial = head + f"{int(rng.integers(0, 10_000)):04d}"
    draft = wmi + vds + "0" + year + plant + serial
    return with_check_digit(draft)

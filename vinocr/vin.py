"""VIN rules (ISO 3779 / US 49 CFR 565): alphabet, check digit, region-aware validation, model year.

The check digit is mandatory for North American VINs (WMI starting 1-5) and optional elsewhere, so
validation takes a ``region`` and never makes the check digit a hard rule outside North America.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, List, Optional

#: The 33 symbols a VIN may use: digits and letters without I, O and Q.
VIN_ALPHABET = "0123456789ABCDEFGHJKLMNPRSTUVWXYZ"
VIN_LENGTH = 17

_TRANSLITERATION = {
    **{str(d): d for d in range(10)},
    "A": 1, "B": 2, "C": 3, "D": 4, "E": 5, "F": 6, "G": 7, "H": 8,
    "J": 1, "K": 2, "L": 3, "M": 4, "N": 5, "P": 7, "R": 9,
    "S": 2, "T": 3, "U": 4, "V": 5, "W": 6, "X": 7, "Y": 8, "Z": 9,
}
_WEIGHTS = (8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2)

#: Position-10 model-year codes in cycle order; the cycle repeats every 30 years.
YEAR_CODES = "ABCDEFGHJKLMNPRSTVWXY123456789"
#: Years of the first cycle (1980-2009); later cycles add multiples of 30.
_FIRST_CYCLE_START = 1980

#: Regions in which the check digit is mandatory by default.
CHECK_DIGIT_REGIONS = ("north_america",)


def transliterate(char: str) -> int:
    """Numeric value of a VIN character for the check-digit sum."""
    try:
        return _TRANSLITERATION[char]
    except KeyError:
        raise ValueError(f"character {char!r} is not allowed in a VIN") from None


def compute_check_digit(vin: str) -> str:
    """The check digit ('0'-'9' or 'X') that position 9 of ``vin`` should hold.

    Position 9 of the input is ignored (it has weight 0), so a VIN with a wrong or placeholder
    check digit can be passed in.
    """
    vin = vin.upper()
    if len(vin) != VIN_LENGTH:
        raise ValueError(f"a VIN has {VIN_LENGTH} characters, got {len(vin)}: {vin!r}")
    total = sum(transliterate(c) * w for c, w in zip(vin, _WEIGHTS))
    remainder = total % 11
    return "X" if remainder == 10 else str(remainder)


def with_check_digit(vin: str) -> str:
    """``vin`` with position 9 replaced by its correct check digit."""
    return vin[:8] + compute_check_digit(vin) + vin[9:]


def check_digit_ok(vin: str) -> bool:
    """True when ``vin`` is 17 valid characters and position 9 matches the computed check digit."""
    upper = vin.upper()   # may change the length ("ß" -> "SS"): test the upper-cased text
    if len(upper) != VIN_LENGTH or any(c not in VIN_ALPHABET for c in upper):
        return False
    return upper[8] == compute_check_digit(upper)


def is_vin_alphabet(characters: Iterable[str]) -> bool:
    """Whether a recogniser's characters (blank and space aside) are exactly the VIN alphabet."""
    return set(characters) - {"", " "} == set(VIN_ALPHABET)


def check_digit_fails(text: str) -> bool:
    """True when ``text`` is 17 VIN characters whose position 9 is not their check digit (False
    for anything that is not 17 VIN characters: no check digit to fail)."""
    upper = text.upper()   # may change the length ("ß" -> "SS"): test the upper-cased text
    return len(upper) == VIN_LENGTH and all(c in VIN_ALPHABET for c in upper) \
        and not check_digit_ok(upper)


def region_of(vin: str) -> str:
    """Broad manufacturing region from the first WMI character (ISO 3780)."""
    first = vin[:1].upper()
    if first in "12345":
        return "north_america"
    if first in "ABCDEFGH":
        return "africa"
    if first in "JKLMNPR":
        return "asia"
    if first in "STUVWXYZ":
        return "europe"
    if first in "67":
        return "oceania"
    if first in "89":
        return "south_america"
    return "unknown"


@dataclass
class VinReport:
    """Result of :func:`validate_vin`: ``valid`` plus a list of human-readable problems."""

    vin: str
    valid: bool
    problems: List[str] = field(default_factory=list)
    region: str = "unknown"
    check_digit_required: bool = False
    check_digit_ok: Optional[bool] = None
    model_years: List[int] = field(default_factory=list)


def validate_vin(vin: str, region: str = "auto", require_check_digit: Optional[bool] = None
                 ) -> VinReport:
    """Validate a VIN string.

    Args:
        vin: the candidate VIN (case-insensitive).
        region: ``"auto"`` (derive from the WMI), ``"north_america"``, ``"europe"``, ... .
        require_check_digit: force the check-digit rule on or off; by default it is required only in
            North America, where it is mandatory by law.
    """
    text = vin.strip().upper()
    problems: List[str] = []
    if len(text) != VIN_LENGTH:
        problems.append(f"length {len(text)}, expected {VIN_LENGTH}")
    bad = sorted({c for c in text if c not in VIN_ALPHABET})
    if bad:
        problems.append("characters not allowed in a VIN: " + "".join(bad))
    resolved_region = region_of(text) if region == "auto" else region
    required = (resolved_region in CHECK_DIGIT_REGIONS if require_check_digit is None
                else require_check_digit)
    digit_ok: Optional[bool] = None
    if not problems:
        digit_ok = check_digit_ok(text)
        if required and not digit_ok:
            problems.append(f"check digit {text[8]!r} does not match computed "
                            f"{compute_check_digit(text)!r}")
    years = model_years(text[9]) if len(text) >= 10 else []
    return VinReport(vin=text, valid=not problems, problems=problems, region=resolved_region,
                     check_digit_required=required, check_digit_ok=digit_ok, model_years=years)


def is_valid_vin(vin: str, region: str = "auto", require_check_digit: Optional[bool] = None
                 ) -> bool:
    """Shorthand for ``validate_vin(...).valid``."""
    return validate_vin(vin, region, require_check_digit).valid


def model_years(code: str, latest: int = 2039) -> List[int]:
    """All model years up to ``latest`` that position-10 ``code`` can denote (newest first).

    The code alone is ambiguous every 30 years; for North American passenger cars position 7 being a
    letter means the 2010+ cycle (see :func:`decode_model_year`).
    """
    code = code.upper()
    if code not in YEAR_CODES:
        return []
    year = _FIRST_CYCLE_START + YEAR_CODES.index(code)
    years = []
    while year <= latest:
        years.append(year)
        year += 30
    return sorted(years, reverse=True)


def decode_model_year(vin: str, latest: int = 2039) -> Optional[int]:
    """Most likely model year of ``vin``, or None when position 10 is not a year code.

    Uses the North American convention for passenger vehicles: a digit at position 7 means the
    1980-2009 cycle, a letter the 2010-2039 cycle. Elsewhere it returns the newest candidate.
    """
    text = vin.upper()
    if len(text) < 10:
        return None
    candidates = model_years(text[9], latest)
    if not candidates:
        return None
    if region_of(text) == "north_america" and len(text) >= 7:
        cycle_start = 1980 if text[6].isdigit() else 2010
        in_cycle = [y for y in candidates if cycle_start <= y < cycle_start + 30]
        if in_cycle:
            return in_cycle[0]
    return candidates[0]

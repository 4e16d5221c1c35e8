"""Europe: national formats of EU countries (``eu_*``) and the United Kingdom (``uk_*``).

Only current standard passenger plates and, where many are still on the road, the previous
national series. Diplomatic, military, temporary/export, trade and personalised plates are not
registered (``generic`` reads them). The blue EU band's country code is not part of the number and
is not read. Every simplification makes the language larger than the real one, never smaller:

- ``eu_de`` (Germany): district code of 1-3 letters (umlauts Ä Ö Ü occur, e.g. ``LÖ``), 1-2
  letters, a number 1-9999 without leading zero, optional ``E`` (electric) or ``H`` (historic)
  suffix; district + letters + digits are at most 8 characters (encoded by alternatives). Not
  modelled: the list of district codes, banned letter pairs, whether the suffix counts towards
  the 8.
- ``eu_fr_siv`` (France, since 2009): ``AB-123-CD``, letters without I, O, U, number 001-999.
  Not modelled: ``SS`` never issued as the first pair. ``eu_fr_fni`` (the old departmental series):
  1-4 digits, 1-3 letters, department 01-95, 2A/2B or 971-976; letter/number ranges not modelled.
- ``eu_it`` (Italy, since 1994): ``AB 123 CD``, letters without I, O, Q, U.
- ``eu_es_2000`` (Spain, since 2000): ``1234 BCD``, consonants only (no vowels, no Ñ, no Q).
  ``eu_es_old`` (provincial, 1971-2000): ``M-1234-AB``; the province codes are not enumerated.
- ``eu_nl_sc1`` ... ``eu_nl_sc14`` (Netherlands): the 14 sidecodes (``XX-99-99`` ... ``999-XX-9``);
  group ``eu_nl``. Sidecodes 1-3 allow A-Z; 4-14 consonants only (the further per-period exclusions,
  e.g. C and Q, and letter series reserved for vehicle types, are not modelled).
- ``eu_pl`` (Poland, since 2000): voivodeship letter + 1-2 letters (district), then 5 (after a
  2-letter district) or 4 (after a 3-letter district) letters/digits: 7 characters. Not modelled:
  the allowed digit/letter patterns of the resource part and its excluded letters.
- ``uk_current`` (since 2001): ``AB51 ABC``: 2 memory-tag letters (no I, Q, Z), the age identifier
  (02-49 for March, 51-99 for September), 3 random letters (no I, Q). Not modelled: which memory
  tags exist. ``uk_prefix`` (1983-2001): age letter (no I, O, Q, U, Z), 1-3 digits, 3 letters.
  Northern Ireland and dateless plates are not registered.
"""
from vinocr.decode.formats.base import PlateFormat, register_format, register_group

# Germany -------------------------------------------------------------------------------------
_D = "[A-ZÄÖÜ]"
register_format(PlateFormat(
    "eu_de", "DE",
    f"(?:{_D}{{1,3}}[ -]?[A-Z]|{_D}{{1,2}}[ -]?[A-Z]{{2}}) ?[1-9][0-9]{{0,3}}[EH]?"
    f"|{_D}{{3}}[ -]?[A-Z]{{2}} ?[1-9][0-9]{{0,2}}[EH]?",
    separators=" -",
    description="German plate: district, 1-2 letters, 1-4 digits, optional E/H; at most 8",
    examples=("B-AB 123", "M AB 1234", "HH XY 99E", "LÖ A 1", "KLE AB 123H")))

# France --------------------------------------------------------------------------------------
_FR = "[A-HJ-NP-TV-Z]"
register_format(PlateFormat(
    "eu_fr_siv", "FR",
    f"{_FR}{{2}}[- ]?(?:00[1-9]|0[1-9][0-9]|[1-9][0-9]{{2}})[- ]?{_FR}{{2}}",
    separators="- ", description="French SIV plate (2009-): AB-123-CD",
    examples=("AB-123-CD", "GZ 001 AA")))
register_format(PlateFormat(
    "eu_fr_fni", "FR",
    r"[0-9]{1,4} ?[A-Z]{1,3} ?(?:0[1-9]|[1-8][0-9]|9[0-5]|2[AB]|97[1-6])",
    separators=" ", description="French departmental plate (FNI, -2009): 1234 AB 75",
    examples=("1234 AB 75", "123 ABC 2A", "56 XY 974")))
register_group("eu_fr", ["eu_fr_siv", "eu_fr_fni"])

# Italy ---------------------------------------------------------------------------------------
_IT = "[A-HJ-NPR-TV-Z]"
register_format(PlateFormat(
    "eu_it", "IT", f"{_IT}{{2}} ?[0-9]{{3}} ?{_IT}{{2}}", separators=" ",
    description="Italian plate (1994-): AB 123 CD", examples=("AB 123 CD", "FZ123XY")))

# Spain ---------------------------------------------------------------------------------------
register_format(PlateFormat(
    "eu_es_2000", "ES", r"[0-9]{4}[ -]?[BCDFGHJKLMNPRSTVWXYZ]{3}", separators=" -",
    description="Spanish national plate (2000-): 1234 BCD", examples=("1234 BCD", "0000-ZZZ")))
register_format(PlateFormat(
    "eu_es_old", "ES", r"[A-Z]{1,2}[- ]?[0-9]{4}[- ]?[A-Z]{1,2}", separators="- ",
    description="Spanish provincial plate (1971-2000): M-1234-AB",
    examples=("M-1234-AB", "GC 5678 Z")))
register_group("eu_es", ["eu_es_2000", "eu_es_old"])

# Netherlands: sidecodes (X letter, 9 digit) ---------------------------------------------------
_NL_SIDECODES = ("XX-99-99", "99-99-XX", "99-XX-99", "XX-99-XX", "XX-XX-99", "99-XX-XX",
                 "99-XXX-9", "9-XXX-99", "XX-999-X", "X-999-XX", "XXX-99-X", "X-99-XXX",
                 "9-XX-999", "999-XX-9")


def _nl_regex(code: str, letters: str) -> str:
    return "".join({"X": letters, "9": "[0-9]", "-": "-?"}[c] for c in code)


for _i, _code in enumerate(_NL_SIDECODES, start=1):
    register_format(PlateFormat(
        f"eu_nl_sc{_i}", "NL", _nl_regex(_code, "[A-Z]" if _i <= 3 else "[B-DF-HJ-NP-TV-Z]"),
        separators="-", description=f"Dutch sidecode {_i}: {_code}",
        examples=(_code.replace("X", "B").replace("9", "7"),)))
register_group("eu_nl", [f"eu_nl_sc{i}" for i in range(1, len(_NL_SIDECODES) + 1)])

# Poland --------------------------------------------------------------------------------------
_PL = "[BCDEFGKLNOPRSTWZ]"
register_format(PlateFormat(
    "eu_pl", "PL", f"{_PL}[A-Z] ?[0-9A-Z]{{5}}|{_PL}[A-Z]{{2}} ?[0-9A-Z]{{4}}", separators=" ",
    description="Polish plate (2000-): district of 2-3 letters + 5/4 letters/digits",
    examples=("WA 12345", "KR 1AB23", "PZE 1234")))

register_group("eu", ["eu_de", "eu_fr", "eu_it", "eu_es", "eu_nl", "eu_pl"])

# United Kingdom ------------------------------------------------------------------------------
register_format(PlateFormat(
    "uk_current", "GB",
    r"[A-HJ-PR-Y]{2}(?:0[2-9]|[1-4][0-9]|5[1-9]|[6-9][0-9]) ?[A-HJ-PR-Z]{3}", separators=" ",
    description="UK plate (2001-): AB51 ABC", examples=("AB51 ABC", "LM02XYZ", "YY99 ZZZ")))
register_format(PlateFormat(
    "uk_prefix", "GB", r"[A-HJ-NPR-TV-Y][0-9]{1,3} ?[A-HJ-PR-Y]{3}", separators=" ",
    description="UK prefix plate (1983-2001): A123 BCD", examples=("A123 BCD", "Y1 ABC")))
register_group("uk", ["uk_current", "uk_prefix"])
register_group("europe", ["eu", "uk"])

"""United States: per-state standard passenger series where they are regular, and ``us_any``.

US plates do not distinguish the letter O from the digit 0 (one shape on most plates; labels write
``CHICAG0``), so every US format merges them, with ``0`` canonical: a reading is accepted where
either fits and is returned, and scored, with ``0``. The state name, slogans, stickers and the
separator between groups (space, hyphen, a dot, a state outline) are not read.

A state format here is the *standard passenger series currently issued* (plus the previous series
where it is still common); earlier series, specialty, vanity (personalised), commercial and
motorcycle plates are not covered and fall to ``us_any`` (1-8 letters/digits), which the ``us``
group lists last so a state format is reported when one matches. Many states share a layout
(``ABC 1234``): the decoder then reports the first listed, and :attr:`DecodeResult.formats` every
match, so the state is not decided by the number alone.

- ``us_ca`` California (1980-): ``1ABC234`` (a digit 1-9, 3 letters, 3 digits).
- ``us_ny`` New York, ``us_pa`` Pennsylvania, ``us_nc`` North Carolina, ``us_va`` Virginia,
  ``us_oh`` Ohio, ``us_ga`` Georgia, ``us_tx`` Texas (2009-): ``ABC-1234``.
- ``us_wa`` Washington (2010-), ``us_az`` Arizona: ``ABC1234``.

Simplified: letters per position are A-Z (states skip some letters in some positions; not
modelled), and the I/1 pair is not merged for any state (the ``merge`` field supports it for a
jurisdiction where they share a glyph).
"""
from vinocr.decode.formats.base import PlateFormat, register_format, register_group

_SEP = " -·•"
_MERGE = ("0O",)
_LLLNNNN = r"[A-Z]{3}[ ·•-]?[0-9]{4}"
_STATES = {
    "ca": (r"[1-9][A-Z]{3}[ ·•-]?[0-9]{3}", "California (1980-): 1ABC234", "7ABC123"),
    "ny": (_LLLNNNN, "New York (2001-): ABC-1234", "ABC-1234"),
    "pa": (_LLLNNNN, "Pennsylvania: ABC-1234", "LBC-1234"),
    "nc": (_LLLNNNN, "North Carolina: ABC-1234", "PBX-1234"),
    "va": (_LLLNNNN, "Virginia: ABC-1234", "UXT-1234"),
    "oh": (_LLLNNNN, "Ohio: ABC 1234", "HXO 1234"),
    "ga": (_LLLNNNN, "Georgia: ABC 1234", "CAB 1234"),
    "tx": (_LLLNNNN, "Texas (2009-): ABC-1234", "DXK-1234"),
    "wa": (_LLLNNNN, "Washington (2010-): ABC1234", "BZQ1234"),
    "az": (_LLLNNNN, "Arizona: ABC1234", "CGA1234"),
}
for _state, (_regex, _what, _example) in _STATES.items():
    register_format(PlateFormat(
        f"us_{_state}", f"US-{_state.upper()}", _regex, separators=_SEP, merge=_MERGE,
        description=f"{_what} standard passenger series", examples=(_example,)))
register_format(PlateFormat(
    "us_any", "US", r"[A-Z0-9](?:[ ·•-]?[A-Z0-9]){0,7}", separators=_SEP, merge=_MERGE,
    fallback=True,
    description="any US plate: 1-8 letters/digits (O and 0 one class)",
    examples=("CHICAG0", "M0T0RZ", "8584 HH")))
register_group("us", [*(f"us_{s}" for s in _STATES), "us_any"])

"""Brazil: the two layouts vinocr has always decoded (``LLLNNNN`` and ``LLLNLNN`` slot patterns).

- ``br_old``: grey plates (1990-2018), three letters and four digits, printed ``ABC-1234`` (a
  hyphen or a middle dot between the groups).
- ``mercosur``: the Brazilian Mercosur layout (since 2018), ``ABC1D23``: the second digit of the
  old number became a letter. Other Mercosur countries' layouts (Argentina ``AB 123 CD``, ...) are
  not registered.

Simplified: every letter A-Z is allowed in every letter position (the issuing ranges per state are
not modelled).
"""
from vinocr.decode.formats.base import PlateFormat, register_format, register_group

register_format(PlateFormat(
    "br_old", "BR", r"[A-Z]{3}[-·]?[0-9]{4}", separators="-·",
    description="Brazilian grey plate: 3 letters, 4 digits", examples=("AYO-9034", "ABC1234")))
register_format(PlateFormat(
    "mercosur", "BR", r"[A-Z]{3}[0-9][A-Z][0-9]{2}",
    description="Brazilian Mercosur plate: 3 letters, digit, letter, 2 digits",
    examples=("BRA2E19",)))
register_group("br", ["br_old", "mercosur"])

"""India: the state series (``MH 12 AB 1234``) and the Bharat series (``22 BH 1234 AA``).

- ``in_state``: state/union-territory code (:data:`STATE_CODES`), 1-2 digit RTO district, a series
  of 0-3 letters, a number of 1-4 digits (plates print 4 with leading zeros; older ones fewer).
  Delhi's extra category letter (``DL 3C AB 1234``) fits the 0-3 series letters.
- ``in_bh`` (2021-): 2-digit year of registration, ``BH``, 4 digits, 1-2 letters (no I, O).

Simplified: the series letters may be any A-Z (I and O are avoided in practice); old codes that
some plates still carry (``OR``, ``UA``, ``DN``) are kept in the list.
"""
from vinocr.decode.formats.base import PlateFormat, register_format, register_group

#: State and union-territory codes of the state series.
STATE_CODES = ("AN AP AR AS BR CG CH DD DL DN GA GJ HP HR JH JK KA KL LA LD MH ML MN MP MZ NL OD "
               "OR PB PY RJ SK TN TR TS UA UK UP WB").split()

register_format(PlateFormat(
    "in_state", "IN",
    f"(?:{'|'.join(STATE_CODES)})[ -]?[0-9]{{1,2}}(?:[ -]?[A-Z]){{0,3}}[ -]?[0-9]{{1,4}}",
    separators=" -", description="Indian state-series plate: MH 12 AB 1234",
    examples=("MH 12 AB 1234", "DL 3C AB 1234", "KA-01-M-0001")))
register_format(PlateFormat(
    "in_bh", "IN", r"[0-9]{2} ?BH ?[0-9]{4} ?[A-HJ-NP-Z]{1,2}", separators=" ",
    description="Indian Bharat-series plate: 22 BH 1234 AA", examples=("22 BH 1234 AA",)))
register_group("in", ["in_state", "in_bh"])

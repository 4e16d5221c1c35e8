"""Region-free fallback: 2-10 letters or digits, any separators.

For plates of countries that have no format here, personalised plates, and mixed streams; it only
removes characters a plate never has (lower case, punctuation) and implausible lengths.
"""
from vinocr.decode.formats.base import PlateFormat, register_format

register_format(PlateFormat(
    "generic", None, r"[A-Z0-9](?:[ .·•-]?[A-Z0-9]){1,9}", separators=" -.·•",
    fallback=True,
    description="any plate: 2-10 letters/digits", examples=("AB 1234", "7-ABC-12")))

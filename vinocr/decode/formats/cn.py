"""China (mainland): blue and yellow plates, green new-energy plates and a few special plates.

Characters: the province sign (one of the 31 provincial-level divisions, :data:`PROVINCES`), the
issuing-authority letter, then the serial. Letters never include I and O (they would read as 1 and
0). The printed dot after the authority letter (``京A·12345``) is a separator, not read.

- ``cn_blue``: province + letter + 5 letters/digits (GA 36). Yellow plates of large vehicles have
  the same characters and match too.
- ``cn_green``: new-energy plates (GA 36-2018) with a 6-character serial: small vehicles ``D`` (pure
  electric) or ``F`` (other new energy) first, then a letter or digit, then 4 digits
  (``京AD12345``); large vehicles 5 digits then ``D``/``F`` (``粤B12345D``).
- ``cn_special``: learner (学), police (警) and trailer (挂) plates, the last serial character
  replaced by the sign; Hong Kong / Macau cross-border plates ``粤Z1234港`` / ``粤Z1234澳``.

Simplified: the real serials allow at most 2 (blue) letters in regulated positions; any mix of
letters and digits is accepted here. Police plates' and embassy/consulate (使 领) plates' finer
rules, military and armed-police plates are not registered.
"""
from vinocr.decode.formats.base import PlateFormat, register_format, register_group

#: The 31 province signs: the one-character abbreviation of every provincial-level division.
PROVINCES = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼"
#: Signs of special plates (learner, police, Hong Kong, Macau, trailer).
SPECIAL_SIGNS = "学警港澳挂"

_P = f"[{PROVINCES}]"
_L = "[A-HJ-NP-Z]"  # letters without I and O
_A = "[A-HJ-NP-Z0-9]"
_SEP = "·"

register_format(PlateFormat(
    "cn_blue", "CN", f"{_P}{_L}·?{_A}{{5}}", separators=_SEP,
    description="Chinese blue/yellow plate: province, letter, 5 letters/digits",
    examples=("京A·12345", "皖AF2K39")))
register_format(PlateFormat(
    "cn_green", "CN", f"{_P}{_L}·?(?:[DF]{_A}[0-9]{{4}}|[0-9]{{5}}[DF])", separators=_SEP,
    description="Chinese green new-energy plate: province, letter, D/F + letter/digit + 4 digits "
                "(small) or 5 digits + D/F (large)",
    examples=("京A·D12345", "粤B12345F", "沪AFK1234")))
register_format(PlateFormat(
    "cn_special", "CN", f"{_P}{_L}·?{_A}{{4}}[学警挂]|粤Z·?{_A}{{4}}[港澳]", separators=_SEP,
    description="Chinese learner/police/trailer plates and Guangdong-Hong Kong/Macau plates",
    examples=("粤B·1234学", "京A0123警", "粤Z1A23港")))
register_group("cn", ["cn_blue", "cn_green", "cn_special"])

"""The LRLPR-26 submission file: one line per track, ``track_00001,ABC1234;0.9876``.

Track id, a comma, the plate text, a semicolon, the confidence with 4 decimals. The confidence
feeds the competition's tie-break ("confidence gap": mean confidence on correct tracks minus mean
on wrong ones), so it is clamped to [0, 1] rather than rejected when a fusion rounds slightly out.
Ids and texts may not contain the separators or line breaks: such a line could not be read back
unambiguously, and a scorer would silently misattribute it.

The file is written atomically (a temporary file in the same folder, then ``os.replace``), so an
interrupted run never leaves a truncated submission that looks complete.
"""
from __future__ import annotations

import logging
import math
import os
import tempfile
from pathlib import Path
from typing import Iterable, List, Tuple, Union

from vinocr.errors import DataError, VinocrError

logger = logging.getLogger(__name__)

#: One submission row: (track id, plate text, confidence).
Row = Tuple[str, str, float]

_FORBIDDEN = (",", ";", "\n", "\r")


def _check_field(value: object, what: str, allow_empty: bool) -> str:
    if not isinstance(value, str):
        raise VinocrError(f"submission {what} must be a string, got {type(value).__name__} "
                          f"{value!r}")
    if not value and not allow_empty:
        raise VinocrError(f"submission {what} is empty")
    bad = [c for c in _FORBIDDEN if c in value]
    if bad:
        raise VinocrError(f"submission {what} {value!r} contains {bad[0]!r} (',' ';' and line "
                          "breaks separate the fields)")
    return value


def format_line(track_id: str, text: str, confidence: float) -> str:
    """``track_id,text;confidence`` (4 decimals, clamped to [0, 1]), without a line break.

    An empty ``text`` is allowed (a constrained decoder that found no valid plate); the line then
    reads ``track_00001,;0.0000`` and counts as wrong.
    """
    _check_field(track_id, "track id", allow_empty=False)
    _check_field(text, "text", allow_empty=True)
    try:
        conf = float(confidence)
    except (TypeError, ValueError):
        raise VinocrError(f"submission confidence for {track_id!r} must be a number, got "
                          f"{confidence!r}") from None
    if math.isnan(conf):
        raise VinocrError(f"submission confidence for {track_id!r} is NaN")
    conf = min(max(conf, 0.0), 1.0)
    return f"{track_id},{text};{conf:.4f}"


def write_submission(path: Union[str, Path], rows: Iterable[Row]) -> Path:
    """Write ``rows`` (track id, text, confidence) to ``path`` atomically; returns the path.

    Every line is checked before anything is written; a repeated track id is an error (a scorer
    would keep one of them arbitrarily).
    """
    out = Path(path)
    lines: List[str] = []
    seen = set()
    for row in rows:
        track_id, text, conf = row
        line = format_line(track_id, text, conf)
        if track_id in seen:
            raise VinocrError(f"submission: track id {track_id!r} appears twice")
        seen.add(track_id)
        lines.append(line + "\n")
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.writelines(lines)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, out)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    logger.info("wrote %d submission lines to %s", len(lines), out)
    return out


def read_submission(path: Union[str, Path]) -> List[Row]:
    """Parse a submission file -> [(track id, text, confidence)] in file order.

    Blank lines are skipped. Errors name the file and the 1-based line.
    """
    p = Path(path)
    try:
        content = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError("submission file not found", p) from None
    except UnicodeDecodeError:
        raise DataError("submission file is not UTF-8 text", p) from None
    except OSError as exc:
        raise DataError(f"cannot read submission file: {exc.strerror}", p) from None
    rows: List[Row] = []
    seen = {}
    for number, raw in enumerate(content.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        if line.count(",") != 1 or line.count(";") != 1 or line.index(",") > line.index(";"):
            raise DataError(f"expected 'track_id,text;confidence', got {line!r}", p, number)
        track_id, rest = line.split(",")
        text, conf_text = rest.split(";")
        if not track_id:
            raise DataError(f"empty track id in {line!r}", p, number)
        try:
            conf = float(conf_text)
        except ValueError:
            raise DataError(f"confidence {conf_text!r} is not a number", p, number) from None
        if not 0.0 <= conf <= 1.0:  # also rejects NaN
            raise DataError(f"confidence {conf_text!r} is outside [0, 1]", p, number)
        if track_id in seen:
            raise DataError(f"track id {track_id!r} already on line {seen[track_id]}", p, number)
        seen[track_id] = number
        rows.append((track_id, text, conf))
    return rows

"""Exceptions a user can act on.

Every error raised for bad input is a :class:`VinocrError` whose message is a single line that names
the file, line or config key at fault. Command-line entry points catch it and print the message
without a traceback (see :mod:`vinocr.cli.common`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Union


class VinocrError(Exception):
    """Base class for user-facing errors (bad input, bad config, missing files)."""


class ConfigError(VinocrError):
    """The configuration is invalid: unknown key, wrong type, bad value or unreadable file."""


class DataError(VinocrError):
    """A dataset cannot be read: missing file, unreadable image, bad label file, bad LMDB keys."""

    def __init__(self, message: str, path: Optional[Union[str, Path]] = None,
                 line: Optional[int] = None) -> None:
        where = ""
        if path is not None:
            where = f"{path}:{line}: " if line is not None else f"{path}: "
        super().__init__(where + message)
        self.path = None if path is None else str(path)
        self.line = line


class CharsetError(VinocrError):
    """A dictionary file is missing or malformed, or a label uses characters outside it."""

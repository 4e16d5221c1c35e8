"""Folders of images whose file names carry the label, e.g. ``42-VIN -SAL1A2A40SA606662.jpg``."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Optional, Union

from vinocr.data.base import FileBackedDataset, list_images
from vinocr.errors import ConfigError, DataError

#: Default: the label is the last run of characters after the final '-', '_' or space in the stem
#: (``42-VIN -SAL1A2A40SA606662`` -> ``SAL1A2A40SA606662``, ``ABC1234`` -> ``ABC1234``).
DEFAULT_PATTERN = r"^(?:.*[-_ ])?(?P<label>[^-_ ]+)$"


class FilenameLabelDataset(FileBackedDataset):
    """Labels parsed from file stems with a regex whose named group ``label`` is the text."""

    kind = "filename"

    def __init__(self, path: Union[str, Path], pattern: str = DEFAULT_PATTERN, charset: Any = None,
                 strict: bool = False, max_length: Optional[int] = None) -> None:
        super().__init__(charset=charset, strict=strict, max_length=max_length)
        self.path = Path(path)
        if not self.path.is_dir():
            raise DataError("image folder not found", self.path)
        try:
            regex = re.compile(pattern)
        except re.error as exc:
            raise ConfigError(f"pattern {pattern!r} is not a valid regex: {exc}") from None
        if "label" not in regex.groupindex:
            raise ConfigError(f"pattern {pattern!r} needs a named group (?P<label>...)")
        self.pattern = pattern
        images = list_images(self.path)
        if not images:
            raise DataError("no images found (looked for .png/.jpg/.jpeg/.bmp/.webp/.tif)",
                            self.path)
        for image in images:
            match = regex.search(image.stem)
            label = match.group("label") if match else ""
            self._add(label, {"path": str(image), "rel": str(image.relative_to(self.path)),
                              "line": None, "where": str(image)})

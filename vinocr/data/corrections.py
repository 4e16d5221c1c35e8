"""Reviewer-corrections folders: each image has a JSON sidecar with the corrected text.

``crop_0001.jpg`` + ``crop_0001.json`` = ``{"text": "SAL1A2A40SA606662", "predicted": "SAL1A2A4OSA6O6662",
"reviewer": "kim"}``. The corrected text is read from the first of ``text``, ``corrected_text``,
``corrected``, ``label`` present; the other keys are kept in ``meta``.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Optional, Union

from vinocr.data.base import IMAGE_EXTENSIONS, FileBackedDataset, Skipped, read_json_object
from vinocr.errors import DataError

logger = logging.getLogger(__name__)

TEXT_KEYS = ("text", "corrected_text", "corrected", "label")


class CorrectionsDataset(FileBackedDataset):
    kind = "corrections"

    def __init__(self, path: Union[str, Path], charset: Any = None, strict: bool = False,
                 max_length: Optional[int] = None) -> None:
        super().__init__(charset=charset, strict=strict, max_length=max_length)
        self.path = Path(path)
        if not self.path.is_dir():
            raise DataError("corrections folder not found", self.path)
        sidecars = sorted(self.path.rglob("*.json"))
        if not sidecars:
            raise DataError("no JSON sidecars found (expected image + same-name .json)", self.path)
        for sidecar in sidecars:
            image = next((sidecar.with_suffix(ext) for ext in IMAGE_EXTENSIONS
                          + tuple(e.upper() for e in IMAGE_EXTENSIONS)
                          if sidecar.with_suffix(ext).is_file()), None)
            if image is None:
                if strict:
                    raise DataError("no image with the same name beside this sidecar", sidecar)
                self.skipped.append(Skipped(str(sidecar), "", "no image beside this sidecar"))
                logger.warning("%s: no image with the same name beside this sidecar (skipped)",
                               sidecar)
                continue
            doc = read_json_object(sidecar)
            key = next((k for k in TEXT_KEYS if k in doc), None)
            if key is None:
                raise DataError(f"sidecar has none of the keys {', '.join(TEXT_KEYS)}", sidecar)
            if not isinstance(doc[key], str):
                raise DataError(f"key {key!r} must be a string", sidecar)
            extra = {k: v for k, v in doc.items() if k != key}
            self._add(doc[key], {"path": str(image), "rel": str(image.relative_to(self.path)),
                                 "sidecar": str(sidecar), "line": None, "where": str(sidecar),
                                 "review": extra})

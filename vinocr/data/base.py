"""The one dataset interface every reader implements.

A reader indexes its samples up front (labels and locations, cheap) and decodes images on demand.
``for image, label, meta in dataset`` iterates; ``dataset[i]`` returns a :class:`Sample` (a named
tuple with the same three fields). Images are BGR ``uint8`` arrays (H, W, 3), OpenCV's and
PaddleOCR's convention, so training, evaluation and export see the same channel order.

Labels are filtered at indexing time against an optional charset: empty labels, out-of-charset
labels and labels longer than ``max_length`` are skipped and reported (one warning line per reason
with the first offending file:line, the full list in :attr:`TextDataset.skipped`); with
``strict=True`` the first one raises :class:`~vinocr.errors.DataError` naming file and line.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, NamedTuple, Optional, Union

import cv2
import numpy as np

from vinocr.errors import DataError

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


class Sample(NamedTuple):
    image: np.ndarray
    label: str
    meta: Dict[str, Any]


@dataclass
class Entry:
    """One indexed sample: its (normalised) label and reader-specific location data."""

    label: str
    meta: Dict[str, Any] = field(default_factory=dict)


@dataclass
class Skipped:
    where: str
    label: str
    reason: str


def decode_image_bytes(data: bytes, where: Union[str, Path]) -> np.ndarray:
    """Decode encoded image bytes into BGR uint8 (H, W, 3); DataError names ``where`` on failure."""
    if not data:
        raise DataError("image is empty (0 bytes)", where)
    buf = np.frombuffer(data, dtype=np.uint8)
    image = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if image is None:
        raise DataError("unreadable or corrupt image", where)
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise DataError(f"image has zero size {image.shape[:2]}", where)
    return image


def read_image(path: Union[str, Path], where: Optional[str] = None) -> np.ndarray:
    """Read an image file as BGR uint8. Works with non-ASCII paths (cv2.imread does not)."""
    p = Path(path)
    label = where or str(p)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise DataError("image file not found", label) from None
    except OSError as exc:
        raise DataError(f"cannot read image: {exc.strerror}", label) from None
    return decode_image_bytes(data, label)


def read_json_object(path: Union[str, Path]) -> Dict[str, Any]:
    """A JSON file holding an object; DataError names the file (and line) when it is not one."""
    p = Path(path)
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError("file not found", p) from None
    except UnicodeDecodeError:
        raise DataError("not valid UTF-8", p) from None
    except json.JSONDecodeError as exc:
        raise DataError(f"invalid JSON: {exc.msg}", p, exc.lineno) from None
    if not isinstance(doc, dict):
        raise DataError(f"expected a JSON object, got {type(doc).__name__}", p)
    return doc


def encode_image(image: np.ndarray, ext: str = ".png") -> bytes:
    ok, buf = cv2.imencode(ext, image)
    if not ok:
        raise DataError(f"cannot encode image as {ext}")
    return buf.tobytes()


class TextDataset:
    """Base class: subclasses call :meth:`_add` while indexing and implement :meth:`load_image`."""

    kind = "base"

    def __init__(self, charset: Any = None, strict: bool = False,
                 max_length: Optional[int] = None) -> None:
        from vinocr.charset import load_charset

        self.charset = None if charset is None else load_charset(charset)
        self.strict = strict
        self.max_length = max_length
        self._entries: List[Entry] = []
        self.skipped: List[Skipped] = []
        self._reported: set = set()

    # ----------------------------------------------------------------- indexing
    def _add(self, label: str, meta: Dict[str, Any]) -> None:
        """Check ``label`` and keep the sample, or skip it (strict: raise) with a located message."""
        where = meta.get("where", "?")
        text = self.charset.normalize(label) if self.charset is not None else label.strip()
        reason, category = None, None
        if not text:
            reason, category = "empty label", "empty"
        elif self.charset is not None and self.charset.invalid_chars(text):
            bad = "".join(self.charset.invalid_chars(text))
            reason = f"label {text!r} has characters outside charset {self.charset.name!r}: {bad!r}"
            category = "charset"
        elif self.max_length is not None and len(text) > self.max_length:
            reason = f"label {text!r} longer than max_length {self.max_length}"
            category = "length"
        if reason is None:
            self._entries.append(Entry(text, meta))
            return
        if self.strict:
            raise DataError(f"{where}: {reason}")
        self.skipped.append(Skipped(where, label, reason))
        if category not in self._reported:
            # One line per kind of problem keeps logs readable on datasets with thousands of them.
            self._reported.add(category)
            logger.warning("%s: %s (skipped; further such samples are counted, not listed; "
                           "strict mode fails instead)", where, reason)

    def report_skipped(self) -> None:
        if self.skipped:
            logger.warning("%s: skipped %d of %d samples (empty, out-of-charset or too long labels)",
                           self.describe(), len(self.skipped), len(self.skipped) + len(self))

    # ------------------------------------------------------------------ access
    def __len__(self) -> int:
        return len(self._entries)

    def label(self, i: int) -> str:
        """Label of sample ``i`` without decoding its image."""
        return self._entries[i].label

    def labels(self) -> List[str]:
        return [e.label for e in self._entries]

    def meta(self, i: int) -> Dict[str, Any]:
        return dict(self._entries[i].meta, source=self.describe(), index=i)

    def load_image(self, i: int) -> np.ndarray:
        raise NotImplementedError

    def read_bytes(self, i: int) -> bytes:
        """The sample's encoded image bytes (for hashing, copying into LMDB)."""
        return encode_image(self.load_image(i))

    def __getitem__(self, i: int) -> Sample:
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        return Sample(self.load_image(i), self._entries[i].label, self.meta(i))

    def __iter__(self) -> Iterator[Sample]:
        for i in range(len(self)):
            yield self[i]

    def describe(self) -> str:
        path = getattr(self, "path", None)
        return f"{self.kind}:{path}" if path is not None else self.kind


class FileBackedDataset(TextDataset):
    """A dataset whose samples are image files (entries carry ``meta['path']``)."""

    def load_image(self, i: int) -> np.ndarray:
        meta = self._entries[i].meta
        return read_image(meta["path"], meta.get("where"))

    def read_bytes(self, i: int) -> bytes:
        meta = self._entries[i].meta
        try:
            return Path(meta["path"]).read_bytes()
        except FileNotFoundError:
            raise DataError("image file not found", meta.get("where", meta["path"])) from None

    def path_of(self, i: int) -> Path:
        return Path(self._entries[i].meta["path"])


def list_images(folder: Path) -> List[Path]:
    """Image files under ``folder`` (recursive), sorted for reproducibility."""
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS
                  and p.is_file())

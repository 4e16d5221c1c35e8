"""PaddleOCR label files: ``relative/path.png<TAB>LABEL`` per line, paths relative to a data dir."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, List, Optional, Sequence, Union

from vinocr.data.base import FileBackedDataset
from vinocr.errors import DataError

logger = logging.getLogger(__name__)

PathLike = Union[str, Path]


def parse_label_line(raw: bytes, path: Path, lineno: int) -> Optional[tuple]:
    """``(relative_path, label)`` of one line, None for a blank line; DataError names file:line."""
    if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    raw = raw.rstrip(b"\r\n")
    if not raw.strip():
        return None
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"not valid UTF-8 (byte {exc.start}); save the label file as UTF-8",
                        path, lineno) from None
    if "\t" not in line:
        raise DataError("expected 'relative/path.png<TAB>LABEL' (no TAB found)", path, lineno)
    rel, label = line.split("\t", 1)
    if not rel.strip():
        raise DataError("empty image path", path, lineno)
    return rel.strip(), label


class LabelFileDataset(FileBackedDataset):
    """One or more PaddleOCR label files.

    Args:
        label_files: label file paths (one or a list).
        data_dir: directory image paths are relative to (default: each label file's directory).
        check_files: skip (strict: fail on) entries whose image file does not exist.
    """

    kind = "label_file"

    def __init__(self, label_files: Union[PathLike, Sequence[PathLike]],
                 data_dir: Optional[PathLike] = None, charset: Any = None, strict: bool = False,
                 max_length: Optional[int] = None, check_files: bool = True) -> None:
        super().__init__(charset=charset, strict=strict, max_length=max_length)
        files: List[Path] = ([Path(label_files)] if isinstance(label_files, (str, Path))
                             else [Path(f) for f in label_files])
        if not files:
            raise DataError("label_files is empty: give at least one label file")
        self.label_files = files
        self.data_dir = None if data_dir is None else Path(data_dir)
        self.path = files[0] if len(files) == 1 else files[0].parent
        self.missing: List[str] = []
        for lf in files:
            self._index(lf, check_files)
        if self.missing:
            logger.warning("%s: %d images listed but not found (first: %s)", self.describe(),
                           len(self.missing), self.missing[0])

    def _index(self, label_file: Path, check_files: bool) -> None:
        if not label_file.is_file():
            raise DataError("label file not found", label_file)
        root = self.data_dir if self.data_dir is not None else label_file.parent
        if not root.is_dir():
            raise DataError("data_dir not found", root)
        for lineno, raw in enumerate(label_file.read_bytes().splitlines(), start=1):
            parsed = parse_label_line(raw, label_file, lineno)
            if parsed is None:
                continue
            rel, label = parsed
            image_path = root / rel
            where = f"{label_file}:{lineno}"
            if check_files and not image_path.is_file():
                if self.strict:
                    raise DataError(f"image {rel!r} not found under {root}", label_file, lineno)
                self.missing.append(f"{where} ({rel})")
                continue
            self._add(label, {"path": str(image_path), "rel": rel, "label_file": str(label_file),
                              "line": lineno, "where": where})

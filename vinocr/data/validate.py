"""Dataset validation: find every sample that would hurt training, report it, optionally fix it.

Error classes (each reported with the file and line or key of the sample):

- ``unreadable``: the image cannot be decoded (corrupt, truncated, not an image);
- ``zero_size``: the file is empty, decodes to a zero-sized image, or is too small to hold text
  (under :data:`MIN_IMAGE_SIDE` pixels high or wide);
- ``missing_file``: a label file names an image that does not exist;
- ``empty_label``; ``charset``: label characters outside the charset;
- ``length``: label length outside the allowed lengths (VINs: exactly 17);
- ``check_digit``: a VIN whose check digit is wrong where it is mandatory (North America by
  default; ``check_digit='always'`` or ``'never'`` changes that);
- ``duplicate``: the same image bytes (SHA-1) appear more than once (first copy kept);
- ``label_mismatch``: the file name carries a label-like token that differs from the label.
"""
from __future__ import annotations

import hashlib
import logging
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np

from vinocr.charset import Charset, load_charset
from vinocr.data.base import IMAGE_EXTENSIONS, TextDataset, encode_image
from vinocr.data.label_file import parse_label_line
from vinocr.errors import DataError, VinocrError
from vinocr.vin import VIN_LENGTH, validate_vin

logger = logging.getLogger(__name__)

ERROR_CLASSES = ("unreadable", "zero_size", "missing_file", "empty_label", "charset", "length",
                 "check_digit", "duplicate", "label_mismatch")

#: Smallest height and width (px) of an image that can hold text. Preprocessing (resize_norm)
#: accepts anything of at least 1x1 px and stretches it to the model height (48 px), so a 1x1
#: image would train as a flat block labelled with a whole VIN. Under 4 px there is no room for
#: stroke, gap, stroke and a gap to the next character, the least that tells one character from
#: another (the smallest legible bitmap fonts draw 3x5 px glyphs in 4x6 px cells). The bound is
#: deliberately loose: real low-resolution crops (LRLPR-26 LR plates, about 40x18 px; the
#: synthetic ones 16-19 px high) are far above it, so only images that cannot be text fail.
MIN_IMAGE_SIDE = 4
#: Suffixes of a fixed export written as a label file; any other path becomes an LMDB folder.
LABEL_FILE_SUFFIXES = (".txt", ".tsv")


@dataclass
class Issue:
    kind: str
    where: str
    message: str
    index: Optional[int] = None


@dataclass
class ValidationReport:
    total: int = 0
    issues: List[Issue] = field(default_factory=list)
    bad_indices: set = field(default_factory=set)
    warnings: List[Issue] = field(default_factory=list)

    def counts(self) -> Dict[str, int]:
        c = Counter(i.kind for i in self.issues)
        return {k: c.get(k, 0) for k in ERROR_CLASSES}

    @property
    def ok(self) -> bool:
        return not self.issues

    def add(self, kind: str, where: str, message: str, index: Optional[int] = None) -> None:
        self.issues.append(Issue(kind, where, message, index))
        if index is not None:
            self.bad_indices.add(index)


def default_lengths(charset: Charset) -> Optional[Tuple[int, ...]]:
    return (VIN_LENGTH,) if charset.name == "vin" else None


def _label_tokens(stem: str) -> List[str]:
    return [t for t in re.split(r"[-_ .]+", stem) if t]


class _RawLabelFile:
    """Label-file entries read without the reader's filtering, so the validator sees every line."""

    def __init__(self, files: Sequence[Path], data_dir: Optional[Path]) -> None:
        self.rows: List[Tuple[str, str, Path, str]] = []  # (where, label, image path, rel)
        for lf in files:
            if not lf.is_file():
                raise DataError("label file not found", lf)
            root = data_dir if data_dir is not None else lf.parent
            for lineno, raw in enumerate(lf.read_bytes().splitlines(), start=1):
                parsed = parse_label_line(raw, lf, lineno)
                if parsed is not None:
                    rel, label = parsed
                    self.rows.append((f"{lf}:{lineno}", label, root / rel, rel))


def _iter_samples(dataset: TextDataset) -> Iterable[tuple]:
    """(index, where, label, raw bytes | None | DataError, path, rel) over *every* sample.

    ``path`` is set only when the sample's bytes are that file (so a fixed export can point at it);
    LMDB records and rectified track frames are exported from their bytes instead.
    """
    from vinocr.data.base import FileBackedDataset
    from vinocr.data.label_file import LabelFileDataset

    if isinstance(dataset, LabelFileDataset):
        raw = _RawLabelFile(dataset.label_files, dataset.data_dir)
        for i, (where, label, path, rel) in enumerate(raw.rows):
            data = path.read_bytes() if path.is_file() else None
            yield i, where, label, data, path, rel
        return
    file_backed = isinstance(dataset, FileBackedDataset)
    n = len(dataset)
    for i in range(n):
        meta = dataset._entries[i].meta
        try:
            data = dataset.read_bytes(i)
        except DataError as exc:
            data = exc
        path = Path(meta["path"]) if file_backed and "path" in meta else None
        yield i, meta.get("where", str(i)), dataset._entries[i].label, data, path, meta.get("rel")
    # Samples the reader skipped for their labels are checked too, so they are reported.
    for k, skipped in enumerate(dataset.skipped):
        if skipped.reason.startswith("no image"):
            continue
        path = Path(skipped.where) if Path(skipped.where).suffix.lower() in IMAGE_EXTENSIONS \
            else None
        data = path.read_bytes() if path is not None and path.is_file() else b"?"
        yield n + k, skipped.where, skipped.label, data, path if file_backed else None, None


def validate_dataset(dataset: TextDataset, charset: Union[str, Charset],
                     lengths: Optional[Sequence[int]] = None, check_digit: str = "auto",
                     ) -> Tuple[ValidationReport, List[Tuple[str, str, Optional[Path],
                                                             Optional[bytes]]]]:
    """Check every sample; return the report and the clean samples ``(label, rel, path, bytes)``."""
    cs = load_charset(charset)
    lengths = tuple(lengths) if lengths else default_lengths(cs)
    if check_digit not in ("auto", "always", "never"):
        raise VinocrError(f"check_digit must be auto, always or never, got {check_digit!r}")
    report = ValidationReport()
    seen: Dict[str, str] = {}
    clean: List[Tuple[str, str, Optional[Path], Optional[bytes]]] = []
    for skipped in dataset.skipped:
        if skipped.reason.startswith("no image"):
            report.total += 1
            report.add("missing_file", skipped.where, skipped.reason)
    for i, where, raw_label, data, path, rel in _iter_samples(dataset):
        report.total += 1
        label = cs.normalize(raw_label)
        bad_before = len(report.issues)
        if isinstance(data, DataError):
            report.add("unreadable", where, str(data), i)
        elif data is None:
            report.add("missing_file", where, f"image not found: {rel or path}", i)
        elif data == b"?":
            pass
        elif len(data) == 0:
            report.add("zero_size", where, "image file is empty (0 bytes)", i)
        else:
            image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
            if image is None:
                report.add("unreadable", where, "unreadable or corrupt image", i)
            elif image.shape[0] == 0 or image.shape[1] == 0:
                report.add("zero_size", where, f"image has zero size {image.shape[:2]}", i)
            elif min(image.shape[:2]) < MIN_IMAGE_SIDE:
                h, w = image.shape[:2]
                report.add("zero_size", where, f"image is {w}x{h} px, too small to hold text "
                           f"(at least {MIN_IMAGE_SIDE} px high and wide)", i)
            else:
                digest = hashlib.sha1(data).hexdigest()
                if digest in seen:
                    report.add("duplicate", where, f"same image bytes as {seen[digest]}", i)
                else:
                    seen[digest] = where
        if not label:
            report.add("empty_label", where, "empty label", i)
        else:
            bad = cs.invalid_chars(label)
            if bad:
                report.add("charset", where, f"label {label!r} has characters outside charset "
                           f"{cs.name!r}: {''.join(bad)!r}", i)
            if lengths and len(label) not in lengths:
                want = " or ".join(map(str, lengths))
                report.add("length", where, f"label {label!r} has length {len(label)}, "
                           f"expected {want}", i)
            if cs.name == "vin" and check_digit != "never" and not bad and len(label) == VIN_LENGTH:
                required = None if check_digit == "auto" else True
                vin_report = validate_vin(label, require_check_digit=required)
                if not vin_report.valid:
                    report.add("check_digit", where, f"VIN {label!r}: "
                               + "; ".join(vin_report.problems), i)
            if path is not None:
                expected_len = len(label)
                for token in _label_tokens(path.stem):
                    token_n = cs.normalize(token)
                    if (len(token_n) == expected_len and token_n != label and expected_len >= 5
                            and not cs.invalid_chars(token_n) and not token_n.isdigit()):
                        report.add("label_mismatch", where, f"file name carries {token_n!r} but "
                                   f"the label is {label!r}", i)
                        break
        if len(report.issues) == bad_before and isinstance(data, bytes) and data != b"?":
            clean.append((label, rel or (path.name if path else f"{i:09d}.png"), path, data))
    return report, clean


def write_fixed(clean: Sequence[Tuple[str, str, Optional[Path], Optional[bytes]]],
                out: Union[str, Path]) -> Path:
    """Write the clean samples: a label file (``.txt``, paths relative to its folder; images are
    referenced in place, or written beside it when they had no file) or an LMDB (other paths)."""
    out_path = Path(out)
    if out_path.suffix.lower() in LABEL_FILE_SUFFIXES:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        lines = []
        image_dir = fixed_image_dir(out_path)
        for k, (label, rel, path, data) in enumerate(clean):
            rel_out = _relpath(path, out_path.parent) if path is not None and path.is_file() \
                else None
            # A file name with TAB or newline cannot be written into a label file: copy it.
            if rel_out is None or any(c in rel_out for c in "\t\r\n"):
                image_dir.mkdir(exist_ok=True)
                path = image_dir / f"{k:09d}.png"
                path.write_bytes(data or b"")
                rel_out = _relpath(path, out_path.parent)
            lines.append(f"{rel_out}\t{label}")
        tmp = out_path.with_suffix(out_path.suffix + ".tmp")
        tmp.write_text("\n".join(lines) + ("\n" if lines else ""), encoding="utf-8")
        tmp.replace(out_path)
        return out_path
    from vinocr.data.lmdb_dataset import write_lmdb

    write_lmdb(out_path, ((data or b"", label) for label, _, _, data in clean))
    return out_path


def fixed_image_dir(out: Union[str, Path]) -> Path:
    """Where :func:`write_fixed` puts the images a label-file export must copy (``clean.txt`` ->
    ``clean_images/``): samples that had no file of their own, or whose name cannot be written."""
    out_path = Path(out)
    return out_path.parent / (out_path.stem + "_images")


def _relpath(path: Path, start: Path) -> str:
    import os

    return os.path.relpath(path.resolve(), start.resolve())

"""Integrity of exported model directories: recorded sha256 of the files, and a layout check of
``inference.pdiparams`` for exports that have no record.

``vinocr-export`` records the size and sha256 of every file it writes under ``vinocr.files`` in
``inference.yml``::

    vinocr:
      files:
        inference.json: {bytes: 40712, sha256: 9f2c...}
        inference.pdiparams: {bytes: 24766, sha256: 03ab...}
        inference.onnx: {bytes: 31020, sha256: 77d1...}      # after export_onnx

Stock paddleocr reads only ``Global``, ``PreProcess`` and ``PostProcess`` of ``inference.yml``, so
the extra section does not disturb it. Loading checks every recorded file; exports written before
the record existed (or by other tools) get :func:`pdiparams_problem` instead, which catches
truncation but not same-size corruption.

Paddle-free on purpose: the onnxruntime backend of :mod:`vinocr.predict` uses it too.
"""
from __future__ import annotations

import hashlib
import logging
import os
import struct
from pathlib import Path
from typing import Any, BinaryIO, Dict, Iterable, Optional, Tuple, Union

import yaml

from vinocr.errors import VinocrError

logger = logging.getLogger(__name__)

YML = "inference.yml"
PADDLE_FILES = ("inference.json", "inference.pdiparams")
#: Key of the record inside ``inference.yml``'s ``vinocr`` section.
FILES_KEY = "files"

PathLike = Union[str, Path]


class ExportedModelError(VinocrError):
    """An exported model directory holds a truncated, corrupt or modified file."""


def corrupt(path: Path, reason: str) -> ExportedModelError:
    """The one-line error for a damaged exported file."""
    return ExportedModelError(f"{path}: truncated or corrupt ({reason}); re-export the model")


def file_record(path: PathLike) -> Dict[str, Any]:
    """``{"bytes": size, "sha256": hex}`` of a file, read in chunks (models can be large)."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
            size += len(chunk)
    return {"bytes": size, "sha256": digest.hexdigest()}


def _read_yml(model_dir: Path) -> Optional[Dict[str, Any]]:
    path = model_dir / YML
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None  # whoever needs inference.yml itself reports it (read_model_info)
    return doc if isinstance(doc, dict) else None


def read_records(model_dir: PathLike) -> Dict[str, Dict[str, Any]]:
    """The recorded files of an export, ``{}`` when ``inference.yml`` has no record."""
    doc = _read_yml(Path(model_dir)) or {}
    section = doc.get("vinocr")
    files = section.get(FILES_KEY) if isinstance(section, dict) else None
    if not isinstance(files, dict):
        return {}
    return {str(k): v for k, v in files.items() if isinstance(v, dict)}


def verify_recorded(model_dir: PathLike, names: Iterable[str],
                    records: Optional[Dict[str, Dict[str, Any]]] = None) -> None:
    """Check each of ``names`` that ``inference.yml`` records against its size and sha256.

    Size first: it is free and names truncation plainly; the hash then catches same-size damage.
    """
    d = Path(model_dir)
    records = read_records(d) if records is None else records
    for name in names:
        record = records.get(name)
        path = d / name
        if record is None or not path.is_file():
            continue
        size = path.stat().st_size
        if isinstance(record.get("bytes"), int) and size != record["bytes"]:
            raise corrupt(path, f"{size} bytes, {YML} records {record['bytes']}")
        if "sha256" in record and file_record(path)["sha256"] != record["sha256"]:
            raise corrupt(path, f"content does not match the sha256 recorded in {YML}")


def write_records(model_dir: PathLike, names: Iterable[str], doc: Dict[str, Any]) -> None:
    """Put the records of ``names`` into ``doc`` (an ``inference.yml`` mapping) in place."""
    d = Path(model_dir)
    section = doc.setdefault("vinocr", {})
    files = section.setdefault(FILES_KEY, {})
    for name in names:
        files[name] = file_record(d / name)


def add_record(model_dir: PathLike, name: str, info: Optional[Dict[str, Any]] = None) -> bool:
    """Record ``name`` (e.g. a later ``inference.onnx``) in an existing vinocr ``inference.yml``.

    ``info`` entries are merged into its ``vinocr`` section too (e.g. what an int8 file is).
    Only an ``inference.yml`` that already has a record is rewritten: a file written by another
    tool is left exactly as it is. Returns whether the record was added.
    """
    d = Path(model_dir)
    doc = _read_yml(d)
    if doc is None or not isinstance((doc.get("vinocr") or {}).get(FILES_KEY), dict):
        return False
    write_records(d, [name], doc)
    if info:
        doc["vinocr"].update(info)
    text = yaml.safe_dump(doc, allow_unicode=True, sort_keys=False)
    tmp = d / f".{YML}.{os.getpid()}.tmp"
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, d / YML)  # a crash mid-write must not leave a half inference.yml
    return True


# ------------------------------------------------------------------- inference.pdiparams layout
#: Bytes per element of Paddle's ``VarType.Type`` codes (framework.proto); other codes are not
#: checked.
_DTYPE_BYTES = {0: 1, 1: 2, 2: 4, 3: 8, 4: 2, 5: 4, 6: 8, 20: 1, 21: 1, 22: 2, 23: 8, 24: 16,
                32: 1, 33: 1, 36: 2, 37: 4, 38: 8}


class _Truncated(Exception):
    """The file ends early: ``args`` are (1-based tensor index, bytes that tensor needs)."""


class _Unknown(Exception):
    """The file does not look like the layout understood here: leave the verdict to Paddle."""


def _varint(buf: bytes, i: int) -> Tuple[int, int]:
    value = shift = 0
    while True:
        if i >= len(buf) or shift > 63:
            raise _Unknown
        byte = buf[i]
        i += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, i


def _tensor_desc(buf: bytes) -> Tuple[int, list]:
    """(data_type, dims) of a serialised ``VarType.TensorDesc``."""
    data_type, dims, i = None, [], 0
    while i < len(buf):
        key, i = _varint(buf, i)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(buf, i)
            if field == 1:
                data_type = value
            elif field == 2:
                dims.append(value)
        elif wire == 2:
            length, i = _varint(buf, i)
            chunk, i = buf[i:i + length], i + length
            if field == 2:  # packed dims
                j = 0
                while j < len(chunk):
                    value, j = _varint(chunk, j)
                    dims.append(value)
        elif wire in (1, 5):
            i += 8 if wire == 1 else 4
        else:
            raise _Unknown
    if data_type not in _DTYPE_BYTES or any(d >= 1 << 62 for d in dims):  # -1 dims: not a param
        raise _Unknown
    return data_type, dims


def _walk(fh: BinaryIO, size: int) -> int:
    """Number of tensors in a complete file; raises _Truncated / _Unknown otherwise."""
    pos = 0
    count = 0

    def take(n: int) -> bytes:
        nonlocal pos
        data = fh.read(n) if pos + n <= size else b""
        if len(data) != n:
            raise _Truncated(count, pos + n)
        pos += n
        return data

    def skip(n: int) -> None:
        nonlocal pos
        if pos + n > size:
            raise _Truncated(count, pos + n)
        fh.seek(n, os.SEEK_CUR)
        pos += n

    while pos < size:
        count += 1
        if struct.unpack("<I", take(4))[0] != 0:  # DenseTensor version
            raise _Unknown
        lod_levels = struct.unpack("<Q", take(8))[0]
        if lod_levels > 64:
            raise _Unknown
        for _ in range(lod_levels):
            skip(struct.unpack("<Q", take(8))[0])
        if struct.unpack("<I", take(4))[0] != 0:  # Tensor version
            raise _Unknown
        desc_size = struct.unpack("<i", take(4))[0]
        if not 0 < desc_size <= 1 << 20:
            raise _Unknown
        data_type, dims = _tensor_desc(take(desc_size))
        numel = 1
        for d in dims:
            numel *= d
        skip(numel * _DTYPE_BYTES[data_type])
    return count


def pdiparams_problem(path: PathLike) -> Optional[str]:
    """Why a combined Paddle parameter file is truncated, or None (complete, or not a layout this
    check understands, in which case Paddle's own loader decides).

    Needed because Paddle loads a file that ends inside the last tensor's data without any error
    and runs the model on whatever bytes it did not read. The layout, per tensor
    (paddle/phi/core/framework/dense_tensor_tostream.cc): uint32 version 0, uint64 LoD level
    count and per level a uint64 byte size and the offsets, uint32 version 0, int32 size of the
    ``TensorDesc`` protobuf (data_type = 1, dims = 2), the protobuf, then the raw data. The walk
    reads only the headers and seeks over the data.
    """
    p = Path(path)
    size = p.stat().st_size
    if size == 0:
        return "empty file"
    with open(p, "rb") as fh:
        try:
            _walk(fh, size)
        except _Truncated as exc:
            index, needed = exc.args
            return f"{size} bytes, but tensor {index} needs at least {needed}"
        except (_Unknown, struct.error):
            logger.debug("%s: layout not recognised; leaving the check to Paddle", p)
    return None

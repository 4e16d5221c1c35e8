"""Training checkpoints as directories of safetensors plus one JSON file, written atomically.

A checkpoint is a directory such as ``RUN/latest``, ``RUN/best`` or ``RUN/epoch_5``::

    model.safetensors       model parameters (required)
    optimizer.safetensors   optimizer accumulators (optional)
    ema.safetensors         EMA shadow weights (optional)
    state.json              manifest + the trainer's JSON-able state (epoch, step, scheduler, ...)

The manifest (``files`` in ``state.json``) records each tensor file's size and sha256, hashed from
the very bytes written, and :func:`load_checkpoint` checks both: a flipped bit in the tensor data
would otherwise load "fine" and only show up as NaN predictions much later. Checkpoints written
before hashes were recorded have sizes only and load with just the size check.

Opening a checkpoint never unpickles anything: tensors come from safetensors and everything else
from JSON. PaddleOCR's pickled ``.pdparams`` are converted to safetensors weights by
``vinocr-pretrained convert`` (:mod:`vinocr.models.weights`), not here.

Atomic replacement: a save writes a complete checkpoint into a hidden sibling directory
(``.NAME.tmp-PID-RAND``), fsyncs it, then swaps it in with two renames (old -> ``.NAME.old-...``,
temp -> NAME) and deletes the old one; the directory machinery (naming, fsync, swap, stale-temp
cleanup) is :mod:`vinocr.atomic_dir`. A crash can therefore only leave either a complete
checkpoint at NAME, or no NAME plus a complete ``.NAME.old-...``, which :func:`load_checkpoint` and
:func:`resolve_checkpoint` rename back (with a warning).
"""
from __future__ import annotations

import datetime as _dt
import errno
import hashlib
import json
import logging
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any, Dict, List, Mapping, Optional, Union

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load as load_bytes
from safetensors.numpy import save as save_bytes

from vinocr import atomic_dir
from vinocr.errors import VinocrError

logger = logging.getLogger(__name__)

PathLike = Union[str, Path]

MODEL_FILE = "model.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"
EMA_FILE = "ema.safetensors"
STATE_FILE = "state.json"
FORMAT_NAME = "vinocr-checkpoint"
FORMAT_VERSION = 1
#: Checkpoint a run directory resolves to.
LATEST = "latest"


class CheckpointError(VinocrError):
    """A checkpoint cannot be written, found or read."""


@dataclass
class Checkpoint:
    """A loaded checkpoint. ``state`` is exactly the dict given to :func:`save_checkpoint` (after
    JSON conversion: numpy values become Python numbers/lists, tuples become lists); ``meta`` is the
    manifest written alongside it (format version, vinocr version, save time, file sizes and
    sha256)."""

    model_state: Dict[str, np.ndarray]
    optimizer_state: Optional[Dict[str, np.ndarray]]
    ema_state: Optional[Dict[str, np.ndarray]]
    state: Dict[str, Any]
    path: Path
    meta: Dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# JSON conversion

def _key_repr(parts: List[str]) -> str:
    return "".join(parts).lstrip(".") or "<root>"


def to_jsonable(value: Any, where: str = "state", _parts: Optional[List[str]] = None) -> Any:
    """``value`` as plain JSON types: numpy scalars/arrays and tensors become numbers/lists, tuples
    become lists, paths become strings.

    Anything else raises :class:`CheckpointError` naming ``where`` and the key path (e.g.
    ``state.json: value at 'technique.ema.decay' is a set``).
    """
    parts = _parts if _parts is not None else []
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        # int/float subclasses (e.g. IntEnum) are stored as their plain value.
        return int(value) if isinstance(value, int) else float(value)
    if isinstance(value, np.generic):
        return to_jsonable(value.item(), where, parts)
    if isinstance(value, np.ndarray):
        # Through the list branch, so element types JSON lacks (complex, datetime, objects) are
        # reported like any other bad value instead of failing later inside json.dumps.
        return to_jsonable(value.tolist(), where, parts)
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, Mapping):
        out: Dict[str, Any] = {}
        for k, v in value.items():
            if isinstance(k, np.str_):
                k = str(k)
            if not isinstance(k, str):
                # JSON would silently turn the key into a string and the round trip would differ.
                raise CheckpointError(f"{where}: key {k!r} at '{_key_repr(parts)}' is "
                                      f"{type(k).__name__}, but JSON object keys must be str")
            out[k] = to_jsonable(v, where, parts + [f".{k}"])
        return out
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v, where, parts + [f"[{i}]"]) for i, v in enumerate(value)]
    if hasattr(value, "numpy") and hasattr(value, "shape"):
        # A framework tensor (e.g. a scheduler keeping a paddle.Tensor); avoid importing paddle.
        return to_jsonable(np.asarray(value.numpy()), where, parts)
    raise CheckpointError(f"{where}: value at '{_key_repr(parts)}' is {type(value).__name__}, "
                          "which is not JSON-able")


def _is_tensor(value: Any) -> bool:
    return isinstance(value, np.ndarray) or (hasattr(value, "numpy") and hasattr(value, "shape"))


def _as_array(value: Any) -> np.ndarray:
    return value if isinstance(value, np.ndarray) else np.asarray(value.numpy())


# --------------------------------------------------------------------------------------------
# Low-level file helpers

def _check_tensors(tensors: Mapping[str, Any], what: str) -> Dict[str, np.ndarray]:
    out = {}
    for key, value in tensors.items():
        if not isinstance(key, str):
            raise CheckpointError(f"{what}: tensor key {key!r} is not a str")
        if not _is_tensor(value):
            raise CheckpointError(f"{what}: value for {key!r} is {type(value).__name__}, not an "
                                  "array")
        array = _as_array(value)
        if array.dtype == object:
            raise CheckpointError(f"{what}: {key!r} is an object array and cannot be saved")
        # safetensors needs C-contiguous memory; views from transposes/slices are not.
        out[key] = np.ascontiguousarray(array)
    return out


def save_file(tensors: Dict[str, np.ndarray], filename: str,
              metadata: Optional[Dict[str, str]] = None) -> Dict[str, Any]:
    """Write a safetensors file like ``safetensors.numpy.save_file`` (same arguments) and return
    its manifest record: size and sha256 of exactly the bytes written.

    The file is serialised in memory and written by :func:`atomic_dir.write_new_file` instead of
    by ``save_file`` so the hash costs one pass over bytes already in memory, never a re-read, and so
    write errors are plain ``OSError`` rather than the Rust writer's ``SafetensorError``. The
    price is one transient in-memory copy of the file.
    """
    data = save_bytes(tensors, metadata=metadata)
    digest = hashlib.sha256(data).hexdigest()
    atomic_dir.write_new_file(Path(filename), data)
    return {"bytes": len(data), "sha256": digest}


def _write_tensors(tensors: Dict[str, np.ndarray], path: Path, kind: str) -> Dict[str, Any]:
    from vinocr import __version__

    record = save_file(tensors, str(path), metadata={"vinocr_version": __version__, "kind": kind})
    return {**record, "tensors": len(tensors)}


def _write_failure(path: Path, name: str, exc: BaseException) -> CheckpointError:
    """The one-line error for a failed write of file ``name`` of checkpoint ``path``.

    Names the checkpoint rather than the hidden temp file the OS error mentions (which is already
    deleted by the time the user reads this), and states that nothing at ``path`` changed.
    """
    if isinstance(exc, OSError) and exc.strerror:
        reason = exc.strerror
        disk_full = exc.errno == errno.ENOSPC
    else:
        text = _one_line(exc)
        # safetensors' writer reports I/O errors as the Rust Debug form of std::io::Error:
        # 'IoError(Os { code: 28, kind: StorageFull, message: "No space left on device" })'.
        found = re.search(r'message: "([^"]+)"', text)
        reason = found.group(1) if found else text
        disk_full = "StorageFull" in text or "code: 28," in text
    hint = "; free disk space and save again" if disk_full else ""
    return CheckpointError(f"{path}: cannot write checkpoint ({reason} while writing {name})"
                           f"{hint}; any previous checkpoint there is unchanged")


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _is_complete(path: Path) -> bool:
    return (path / STATE_FILE).is_file() and (path / MODEL_FILE).is_file()


def _recoverable(path: Path) -> Optional[Path]:
    """The newest complete ``.NAME.old-*`` when nothing is at ``path``, else None."""
    return atomic_dir.recoverable(path, _is_complete, STATE_FILE)


def _recover(path: Path) -> bool:
    """Put back the previous checkpoint if a save crashed between its two renames."""
    old = _recoverable(path)
    if old is None:
        return False
    try:
        atomic_dir.restore(old, path)
    except OSError as exc:
        raise CheckpointError(f"{path}: missing after an interrupted save and {old} cannot be "
                              f"renamed back ({_one_line(exc)})") from None
    logger.warning("%s: was missing after an interrupted save; restored the previous checkpoint "
                   "from %s", path, old.name)
    return True


# --------------------------------------------------------------------------------------------
# Public API

def save_checkpoint(path: PathLike, model_state: Mapping[str, np.ndarray], state: Mapping[str, Any],
                    optimizer_state: Optional[Mapping[str, np.ndarray]] = None,
                    ema_state: Optional[Mapping[str, np.ndarray]] = None) -> Path:
    """Write a checkpoint directory at ``path``, atomically replacing any checkpoint already there.

    ``state`` must be JSON-able after numpy conversion (see :func:`to_jsonable`); it is checked
    before anything is written. An existing directory at ``path`` that is not a checkpoint (and
    not empty) is never replaced, so a mistaken path cannot wipe e.g. a whole run directory.
    Returns ``path``.
    """
    from vinocr import __version__

    path = Path(path)
    # Validate everything first: a bad value must not cost the previous checkpoint anything.
    json_state = to_jsonable(dict(state), f"{path / STATE_FILE}")
    groups = [(MODEL_FILE, "model", model_state), (OPTIMIZER_FILE, "optimizer", optimizer_state),
              (EMA_FILE, "ema", ema_state)]
    tensors = {name: _check_tensors(group, f"{path / name}") for name, _, group in groups
               if group is not None}
    if path.exists() and not _is_complete(path):
        if not path.is_dir():
            raise CheckpointError(f"{path}: exists and is a file, not a checkpoint directory")
        if any(path.iterdir()):
            raise CheckpointError(f"{path}: exists and is not a checkpoint (no {STATE_FILE}); "
                                  "refusing to replace it")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CheckpointError(f"{path.parent}: cannot create directory "
                              f"({_one_line(exc)})") from None
    # A crash may have left the previous checkpoint under .old; put it back before replacing it,
    # so the swap below sees the normal situation.
    _recover(path)
    atomic_dir.cleanup_stale(path, _is_complete, log=logger)

    tmp, token = atomic_dir.temp_path(path)
    writing = f"temp directory {tmp.name}"  # what the error names if the next step fails
    try:
        tmp.mkdir()
        files: Dict[str, Any] = {}
        for name, kind, _ in groups:
            if name in tensors:
                writing = name
                files[name] = _write_tensors(tensors[name], tmp / name, kind)
        now = time.time()
        doc = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION,
               "vinocr_version": __version__,
               "saved_at": _dt.datetime.fromtimestamp(now, _dt.timezone.utc).isoformat(),
               "saved_at_unix": now, "files": files, "state": json_state}
        # state.json goes last: its presence marks the directory complete.
        text = json.dumps(doc, indent=1, ensure_ascii=False, allow_nan=True)
        writing = STATE_FILE
        atomic_dir.write_new_file(tmp / STATE_FILE, (text + "\n").encode("utf-8"))
        atomic_dir.fsync_path(tmp)
    except BaseException as exc:
        # Nothing at `path` has been touched yet: dropping the temp directory is the whole undo.
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, (OSError, SafetensorError)):
            raise _write_failure(path, writing, exc) from None
        raise

    try:
        atomic_dir.swap_into_place(tmp, path, token, log=logger)
    except OSError as exc:
        # swap_into_place has removed the temp directory and put any previous checkpoint back.
        raise CheckpointError(f"{path}: cannot move the new checkpoint into place "
                              f"({_one_line(exc)}); the previous one is kept") from None
    logger.info("checkpoint saved: %s (%s)", path, ", ".join(files))
    return path


def checkpoint_exists(path: PathLike) -> bool:
    """True when a complete checkpoint is at ``path`` or can be recovered there (a save crashed
    mid-swap). Has no side effects; :func:`load_checkpoint` does the recovery."""
    path = Path(path)
    return _is_complete(path) or _recoverable(path) is not None


def resolve_checkpoint(path: PathLike) -> Path:
    """The checkpoint directory meant by ``path``: a checkpoint directory itself, a run directory
    (its ``latest`` checkpoint) or a file inside a checkpoint directory. Recovers a checkpoint left
    aside by an interrupted save. Raises :class:`CheckpointError` otherwise."""
    path = Path(path)
    _recover(path)
    if path.is_dir():
        if _is_complete(path):
            return path
        latest = path / LATEST
        _recover(latest)
        if _is_complete(latest):
            return latest
        if (path / MODEL_FILE).is_file() or (path / STATE_FILE).is_file():
            missing = STATE_FILE if not (path / STATE_FILE).is_file() else MODEL_FILE
            raise CheckpointError(f"{path / missing}: missing; {path} is not a complete "
                                  "checkpoint")
        found = sorted(p.name for p in path.iterdir() if _is_complete(p))
        hint = f"; checkpoints inside: {', '.join(found)}" if found else ""
        raise CheckpointError(f"{path}: not a checkpoint directory and has no complete "
                              f"'{LATEST}' checkpoint{hint}")
    if path.is_file():
        if _is_complete(path.parent):
            return path.parent
        raise CheckpointError(f"{path}: not inside a checkpoint directory (no {STATE_FILE} and "
                              f"{MODEL_FILE} beside it)")
    raise CheckpointError(f"{path}: checkpoint not found")


def _read_tensors(path: Path, expected: Optional[Mapping[str, Any]]) -> Dict[str, np.ndarray]:
    if not path.is_file():
        raise CheckpointError(f"{path}: missing (listed in {STATE_FILE})")
    if expected and "bytes" in expected and path.stat().st_size != expected["bytes"]:
        raise CheckpointError(f"{path}: {path.stat().st_size} bytes but {STATE_FILE} records "
                              f"{expected['bytes']}; the file is truncated or was replaced")
    try:
        # One read serves both the hash and the parse.
        data = path.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read ({_one_line(exc)})") from None
    recorded = expected.get("sha256") if expected else None
    # Manifests written before hashes were recorded have none: those load unchecked.
    if recorded is not None and hashlib.sha256(data).hexdigest() != recorded:
        raise CheckpointError(f"{path.parent}: {path.name} content does not match its recorded "
                              "sha256 (corrupted or modified); restore it or use another "
                              "checkpoint")
    try:
        # Like load_file, load() gives writable arrays with buffers of their own (not views of
        # `data`), which optimizer and EMA code may update in place.
        return dict(load_bytes(data))
    except Exception as exc:  # safetensors raises several types for corrupt files
        raise CheckpointError(f"{path}: not a readable safetensors file "
                              f"({_one_line(exc)})") from None


def _read_state_file(ckpt: Path) -> Dict[str, Any]:
    state_path = ckpt / STATE_FILE
    if not state_path.is_file():
        raise CheckpointError(f"{state_path}: missing; {ckpt} is not a complete checkpoint")
    try:
        doc = json.loads(state_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise CheckpointError(f"{state_path}: unreadable JSON ({_one_line(exc)})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT_NAME:
        raise CheckpointError(f"{state_path}: not a vinocr checkpoint manifest (no "
                              f"'format: {FORMAT_NAME}')")
    version = doc.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(f"{state_path}: checkpoint format version {version!r} is newer "
                              f"than this vinocr supports ({FORMAT_VERSION}); upgrade vinocr")
    if not isinstance(doc.get("state"), dict) or not isinstance(doc.get("files", {}), dict):
        raise CheckpointError(f"{state_path}: malformed manifest ('state' or 'files' is not a "
                              "mapping)")
    return doc


def read_checkpoint_state(path: PathLike) -> Dict[str, Any]:
    """The trainer state recorded in a checkpoint (any form :func:`resolve_checkpoint` accepts),
    read from its validated manifest without loading any tensors."""
    return _read_state_file(resolve_checkpoint(path))["state"]


def load_checkpoint(path: PathLike) -> Checkpoint:
    """Read a checkpoint (any form :func:`resolve_checkpoint` accepts). No pickle is involved.

    Files listed in ``state.json`` must exist with the recorded sizes and, when recorded, sha256;
    a corrupt, modified or missing file raises :class:`CheckpointError` naming it.
    """
    ckpt = resolve_checkpoint(path)
    doc = _read_state_file(ckpt)
    files: Dict[str, Any] = doc.get("files", {})
    model = _read_tensors(ckpt / MODEL_FILE, files.get(MODEL_FILE))
    # Weights stored in half precision (the built-in SR pair ships so, half the package size)
    # load into the float32 models every trainer and exporter builds.
    model = {k: v.astype(np.float32) if v.dtype == np.float16 else v for k, v in model.items()}
    optional: Dict[str, Optional[Dict[str, np.ndarray]]] = {}
    for name in (OPTIMIZER_FILE, EMA_FILE):
        # The manifest is authoritative: a stray file it does not list is ignored, and a listed
        # file that is missing is an error rather than a silent restart of the optimizer.
        optional[name] = _read_tensors(ckpt / name, files[name]) if name in files else None
    meta = {k: v for k, v in doc.items() if k != "state"}
    logger.info("checkpoint loaded: %s (%d model tensors%s%s)", ckpt, len(model),
                ", optimizer" if optional[OPTIMIZER_FILE] is not None else "",
                ", ema" if optional[EMA_FILE] is not None else "")
    return Checkpoint(model_state=model, optimizer_state=optional[OPTIMIZER_FILE],
                      ema_state=optional[EMA_FILE], state=doc["state"], path=ckpt, meta=meta)

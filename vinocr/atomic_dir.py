"""Atomic writes, for every layer (standard library only, so models, data and engine alike can use
it): files (:func:`write_file_atomic`, :func:`write_new_file`) and the replacement of a directory,
as used for checkpoints (:mod:`vinocr.engine.checkpoint`).

A new version of directory ``NAME`` is written in full into a hidden sibling ``.NAME.tmp-PID-RAND``
(:func:`temp_path`), fsynced by the writer, and then put in place by :func:`swap_into_place` with
two renames: the current ``NAME`` -> ``.NAME.old-PID-RAND``, the temp dir -> ``NAME``; the old one
is deleted afterwards. (A non-empty directory cannot be replaced by a single rename.)

A crash can therefore leave only:

* a complete ``NAME``, possibly with a ``.NAME.old-*`` beside it that was about to be deleted, or
* no ``NAME`` but a complete ``.NAME.old-*`` (the crash came between the renames), which
  :func:`recoverable` finds and :func:`restore` renames back,

plus temp dirs of dead processes, which :func:`cleanup_stale` removes along with leftover
``.old`` dirs. What "complete" means is up to the caller (a predicate argument); this module only
knows directory names, renames and fsync. Errors from the renames are raised as the plain
``OSError`` for the caller to report in its own terms.
"""
from __future__ import annotations

import logging
import os
import secrets
import shutil
from pathlib import Path
from typing import Callable, List, Optional, Tuple

logger = logging.getLogger(__name__)

#: Sibling kinds: a save being written, and the previous version moved aside by a swap.
TMP = "tmp"
OLD = "old"


def fsync_path(path: Path) -> None:
    """Flush a file or directory to disk. Directory fsync is not possible everywhere (Windows), and
    losing it only weakens durability, not atomicity, so failures there are ignored."""
    try:
        fd = os.open(str(path), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_new_file(path: Path, data: bytes) -> None:
    """Write ``data`` to a new file at ``path`` and fsync it.

    Raw ``os.write`` in a loop rather than a buffered file: a short write (a nearly full disk)
    is continued instead of silently dropped, and ENOSPC surfaces as the ``OSError`` itself.
    """
    fd = os.open(str(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_BINARY", 0),
                 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)


def write_file_atomic(path: Path, data: bytes) -> None:
    """Replace (or create) the file ``path`` with ``data`` so a reader sees the old or the new
    content, never a part: written in full to a unique hidden sibling, then renamed over it.
    The sibling's name is unique per call, so concurrent writers never share a temp file."""
    path = Path(path)
    tmp = path.parent / f".{path.name}.{TMP}-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        write_new_file(tmp, data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_path(path.parent)


def temp_path(path: Path) -> Tuple[Path, str]:
    """A fresh ``.NAME.tmp-PID-RAND`` path beside ``path`` (not created) and its ``PID-RAND``
    token, which :func:`swap_into_place` reuses for the ``.old`` name."""
    token = f"{os.getpid()}-{secrets.token_hex(4)}"
    return path.parent / f".{path.name}.{TMP}-{token}", token


def siblings(path: Path, kind: str) -> List[Path]:
    """Hidden ``.NAME.tmp-*`` / ``.NAME.old-*`` directories next to ``path``."""
    parent = path.parent
    if not parent.is_dir():
        return []
    return sorted(p for p in parent.glob(f".{path.name}.{kind}-*") if p.is_dir())


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists but not ours, or cannot tell: assume alive and leave it alone
    return True


def cleanup_stale(path: Path, is_complete: Callable[[Path], bool], *,
                  log: logging.Logger = logger) -> None:
    """Remove leftovers of crashed saves: temp dirs of dead processes, and ``.old`` dirs once a
    complete directory is at ``path`` (they were about to be deleted when the crash came)."""
    for tmp in siblings(path, TMP):
        try:
            pid = int(tmp.name.rsplit(f".{TMP}-", 1)[1].split("-", 1)[0])
        except (IndexError, ValueError):
            continue
        if pid != os.getpid() and not _pid_alive(pid):
            log.info("%s: removing the temp directory of an interrupted save", tmp)
            shutil.rmtree(tmp, ignore_errors=True)
    if is_complete(path):
        for old in siblings(path, OLD):
            log.info("%s: removing the previous checkpoint left by an interrupted save", old)
            shutil.rmtree(old, ignore_errors=True)


def recoverable(path: Path, is_complete: Callable[[Path], bool], stamp: str) -> Optional[Path]:
    """The newest complete ``.NAME.old-*`` (by the mtime of its file ``stamp``) when nothing is at
    ``path``, else None."""
    if path.exists():
        return None
    candidates = [p for p in siblings(path, OLD) if is_complete(p)]
    if not candidates:
        return None
    return max(candidates, key=lambda p: (p / stamp).stat().st_mtime)


def restore(old: Path, path: Path) -> None:
    """Rename ``old`` (from :func:`recoverable`) back to ``path``. Raises ``OSError``."""
    os.replace(old, path)
    fsync_path(path.parent)


def swap_into_place(tmp: Path, path: Path, token: str, *, log: logging.Logger = logger) -> None:
    """Rename ``tmp`` to ``path``; a previous directory there moves aside first and is deleted
    after.

    On failure ``tmp`` is removed, the previous directory is renamed back when possible, and the
    exception (``OSError`` from a rename) propagates. The window between the two renames is
    covered by :func:`recoverable` / :func:`restore`.
    """
    old: Optional[Path] = None
    try:
        if path.exists():
            old = path.parent / f".{path.name}.{OLD}-{token}"
            os.replace(path, old)
        try:
            os.replace(tmp, path)
        except BaseException:
            if old is not None:
                try:
                    os.replace(old, path)  # roll back so the previous checkpoint stays in place
                    old = None
                except OSError:
                    log.error("%s: could not restore the previous checkpoint from %s; the next "
                              "load will try again", path, old)
            raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    fsync_path(path.parent)
    if old is not None:
        # The new version is complete at `path`; failing to delete the old one is only clutter.
        shutil.rmtree(old, ignore_errors=True)

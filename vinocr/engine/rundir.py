"""Claiming a run directory: one training process tree at a time, and no silent overwrite.

A run directory holds hours of work (``latest/``, ``best/``, the history). Training into one that
already holds a run needs ``--resume`` (continue it) or ``--overwrite`` (start over, replacing its
checkpoints); two runs into one directory at once are refused while the first is alive. The lock
is an ``flock`` on ``RUN/.lock``, so the kernel drops it when its holder dies, even by ``kill -9``.
"""
from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any, Dict

from vinocr.errors import VinocrError

logger = logging.getLogger(__name__)

LOCK_FILE = ".lock"
#: Set for processes started under a parent that holds the run's lock (data-parallel ranks).
CLAIMED_ENV = "VINOCR_RUN_CLAIMED"
#: What a run writes; ``--overwrite`` removes these (and nothing else) before starting over.
RUN_OUTPUTS = ("latest", "best", "training_history.json", "report.json", "visualdl")
RUN_OUTPUT_GLOBS = ("epoch_*", "stage*_epoch_*", "rank*_weights.json", ".latest.*", ".best.*")

_held: Dict[str, Any] = {}   # run dir -> its open lock file; closing it releases the lock


def holds_run(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds a run's outputs (a checkpoint or a history)."""
    return any((run_dir / name).exists() for name in ("latest", "best",
                                                       "training_history.json")) or \
        any(run_dir.glob("epoch_*")) or any(run_dir.glob("stage*_epoch_*"))


def lock_run_dir(run_dir: Path) -> None:
    """Hold ``RUN/.lock`` for this process's lifetime; a one-line error if another process holds
    it."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not Linux/macOS: no locking
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    key = str(run_dir.resolve())
    if key in _held:
        return   # this process holds it already (e.g. a resume after a run, in one process)
    path = run_dir / LOCK_FILE
    handle = open(path, "a+", encoding="utf-8")
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise VinocrError(f"{run_dir}: in use by another training run (pid {holder}); wait for it "
                          "to finish or choose another Global.run_dir") from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    _held[key] = handle


def release_run_dir(run_dir: Path) -> None:
    """Let go of the lock :func:`lock_run_dir` took (a no-op if this process holds none)."""
    handle = _held.pop(str(run_dir.resolve()), None)
    if handle is not None:
        handle.close()


def claim_run_dir(run_dir: Path, resume: bool, overwrite: bool) -> None:
    """Lock ``run_dir`` and check it may be written: a directory holding a run needs ``resume``
    or ``overwrite``; with ``overwrite`` its previous outputs are removed first."""
    if os.environ.get(CLAIMED_ENV) == str(run_dir.resolve()):
        return   # a data-parallel rank: the launching process holds the claim
    lock_run_dir(run_dir)
    if resume or not holds_run(run_dir):
        return
    if not overwrite:
        release_run_dir(run_dir)
        raise VinocrError(f"{run_dir} already holds a run (latest/, best/, history): continue it "
                          f"with --resume {run_dir}, or pass --overwrite to start over and "
                          "replace its checkpoints")
    removed = [p for name in RUN_OUTPUTS if (p := run_dir / name).exists()]
    removed += [p for pattern in RUN_OUTPUT_GLOBS for p in run_dir.glob(pattern)]
    for p in removed:
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    logger.warning("--overwrite: removed the previous run's %s from %s",
                   ", ".join(sorted(p.name for p in removed)), run_dir)

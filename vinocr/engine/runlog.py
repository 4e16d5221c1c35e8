"""Everything a run writes besides checkpoints: ``train.log``, VisualDL events,
``training_history.json`` and ``report.json``. Only rank 0 writes; other ranks get no-ops."""
from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

from vinocr.atomic_dir import write_file_atomic

logger = logging.getLogger(__name__)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.floating, np.integer)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, Path):
        return str(value)
    return value


def write_json_atomic(path: Path, data: Any) -> None:
    write_file_atomic(path, json.dumps(_jsonable(data), indent=2, ensure_ascii=False)
                      .encode("utf-8"))


class RunLogger:
    def __init__(self, run_dir: Path, enabled: bool, visualdl: bool) -> None:
        self.run_dir = run_dir
        self.enabled = enabled
        self.history: List[Dict[str, Any]] = []
        self.writer = None
        self._file_handler: Optional[logging.Handler] = None
        if not enabled:
            return
        run_dir.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(run_dir / "train.log", encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logging.getLogger("vinocr").addHandler(handler)
        self._file_handler = handler
        if visualdl:
            try:
                from visualdl import LogWriter

                self.writer = LogWriter(logdir=str(run_dir / "visualdl"))
            except Exception as exc:  # VisualDL is optional at run time; never fail training
                logger.warning("VisualDL unavailable (%s): no dashboard logs", exc)

    def scalar(self, tag: str, value: float, step: int) -> None:
        if self.writer is not None and value is not None and math.isfinite(float(value)):
            self.writer.add_scalar(tag=tag, value=float(value), step=int(step))

    def image(self, tag: str, image_rgb: np.ndarray, step: int) -> None:
        if self.writer is not None:
            self.writer.add_image(tag=tag, img=image_rgb, step=int(step), dataformats="HWC")

    def histogram(self, tag: str, values: np.ndarray, step: int) -> None:
        if self.writer is not None and values.size:
            self.writer.add_histogram(tag=tag, values=values.ravel(), step=int(step), buckets=30)

    def hparams(self, hparams: Dict[str, Any], metrics: List[str]) -> None:
        if self.writer is not None:
            flat = {k: v for k, v in hparams.items() if isinstance(v, (int, float, str, bool))}
            try:
                self.writer.add_hparams(hparams_dict=flat, metrics_list=metrics)
            except Exception as exc:
                logger.debug("hparams not logged: %s", exc)

    def epoch(self, record: Dict[str, Any]) -> None:
        self.history.append(_jsonable(record))
        if self.enabled:
            write_json_atomic(self.run_dir / "training_history.json", self.history)

    def restore_history(self, history: Optional[List[Dict[str, Any]]], epochs_done: int) -> None:
        """On resume: the records of the epochs a checkpoint has seen, so the history (and early
        stopping, which reads it) continues instead of restarting. ``history`` is what the
        checkpoint stored; older checkpoints stored none, so the run's file is read instead, cut
        to the checkpoint's epochs (the file may be ahead of an older checkpoint)."""
        if history is None:
            path = self.run_dir / "training_history.json"
            try:
                history = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else []
            except (OSError, ValueError) as exc:
                logger.warning("%s unreadable (%s): the history restarts at this resume", path,
                               exc)
                history = []
            if not isinstance(history, list):
                history = []
        self.history = [dict(r) for r in history
                        if isinstance(r, dict) and int(r.get("epoch", 0)) <= epochs_done]
        if self.enabled:
            write_json_atomic(self.run_dir / "training_history.json", self.history)

    def report(self, report: Dict[str, Any]) -> None:
        if self.enabled:
            write_json_atomic(self.run_dir / "report.json", report)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        if self._file_handler is not None:
            logging.getLogger("vinocr").removeHandler(self._file_handler)
            self._file_handler.close()
            self._file_handler = None


class Timer:
    def __init__(self) -> None:
        self.start = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

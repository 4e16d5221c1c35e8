"""Model versions on disk and the batched, hot-swappable recogniser the read endpoint uses.

``DATA/models/registry.json`` lists the versions (``v0001``, ...), which one is active and which
was active before it (the rollback target). A version is an exported directory: the ``--model``
the service was started with (registered where it is, never copied) or a job's export under
``DATA/models/VERSION/``. The active version persists across restarts.

Reads are batched: the requests that arrive while a batch runs form the next one (up to
``max_batch`` crops), so batches grow with the load and an idle service adds no wait;
``max_wait`` > 0 also holds the first request of a batch that long for others to join it. One thread runs the engine, because a :class:`Recognizer` is not
thread-safe; activation loads the new version beside it and swaps a reference, so a batch already
running finishes on the version it started with and no request is dropped.
"""
from __future__ import annotations

import asyncio
import json
import logging
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from vinocr.atomic_dir import write_file_atomic
from vinocr.errors import VinocrError
from vinocr.predict import RecognitionResult, Recognizer

logger = logging.getLogger(__name__)

REGISTRY = "registry.json"
#: Version names: what the service creates, and the only form a request may name.
VERSION_PATTERN = re.compile(r"^v[0-9]{4,6}$")


class NotFound(VinocrError):
    """A request named something that does not exist (HTTP 404)."""


def check_version(version: str) -> str:
    if not VERSION_PATTERN.fullmatch(version or ""):
        raise NotFound(f"model version {version!r} does not exist (versions look like v0001)")
    return version


class ModelStore:
    """The versions registry (``DATA/models/registry.json``), written atomically."""

    def __init__(self, root: Path) -> None:
        # Absolute: jobs' children run in their job folder and are handed these paths.
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.path = self.root / REGISTRY
        self._lock = threading.Lock()
        self.doc: Dict[str, Any] = {"versions": {}, "active": None, "previous": None}
        if self.path.is_file():
            try:
                doc = json.loads(self.path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise VinocrError(f"{self.path}: unreadable model registry ({exc})") from None
            if not isinstance(doc, dict) or not isinstance(doc.get("versions"), dict):
                raise VinocrError(f"{self.path}: not a model registry (no 'versions' mapping)")
            self.doc.update(doc)

    def _save(self) -> None:
        write_file_atomic(self.path, json.dumps(self.doc, indent=2).encode("utf-8"))

    def versions(self) -> Dict[str, Dict[str, Any]]:
        return dict(self.doc["versions"])

    @property
    def active(self) -> Optional[str]:
        return self.doc.get("active")

    @property
    def previous(self) -> Optional[str]:
        return self.doc.get("previous")

    def path_of(self, version: str) -> Path:
        check_version(version)
        entry = self.doc["versions"].get(version)
        if entry is None:
            raise NotFound(f"model version {version!r} does not exist "
                           f"(known: {', '.join(sorted(self.doc['versions'])) or 'none'})")
        return Path(entry["path"])

    def next_version(self) -> str:
        """The name the next registered version gets (also the export directory name)."""
        with self._lock:
            numbers = [int(v[1:]) for v in self.doc["versions"]]
            for child in self.root.iterdir():   # an export of a job that died before registering
                if VERSION_PATTERN.fullmatch(child.name):
                    numbers.append(int(child.name[1:]))
            return f"v{max(numbers, default=0) + 1:04d}"

    def version_dir(self, version: str) -> Path:
        """Where a job exports ``version`` (inside the store, so it is never an outside path)."""
        return self.root / check_version(version)

    def register(self, path: Path, source: str, version: Optional[str] = None) -> str:
        """Add an exported directory as a version (the next free name unless given)."""
        path = Path(path).resolve()
        with self._lock:
            for name, entry in self.doc["versions"].items():
                if entry["path"] == str(path):
                    return name
        version = version or self.next_version()
        with self._lock:
            self.doc["versions"][version] = {"path": str(path), "source": source,
                                             "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
            self._save()
        logger.info("registered model %s: %s (%s)", version, path, source)
        return version

    def set_active(self, version: str) -> None:
        with self._lock:
            if self.doc.get("active") != version:
                self.doc["previous"] = self.doc.get("active")
                self.doc["active"] = version
            self._save()


@dataclass
class LoadedModel:
    """One loaded version and the decoder / width variants requests asked for (they share its
    engine, so a variant costs a decoder, not another model in memory)."""

    version: str
    recognizer: Recognizer
    _views: Dict[Tuple[Optional[str], Optional[bool]], Recognizer] = field(default_factory=dict)

    def view(self, decode: Optional[str], dynamic_width: Optional[bool]) -> Recognizer:
        base = self.recognizer
        key = (decode, dynamic_width)
        if key == (None, None):
            return base
        if key not in self._views:
            self._views[key] = base.variant(decode, dynamic_width)
        return self._views[key]


@dataclass
class _Pending:
    images: List[np.ndarray]
    key: Tuple[Optional[str], Optional[bool]]
    future: "asyncio.Future[Tuple[str, List[RecognitionResult]]]"


class ReadBatcher:
    """Collects read requests into batches and runs them on one engine thread.

    Args:
        max_batch: most crops in one engine call (the recogniser's batch size).
        max_wait: seconds the first request of a batch waits for others to join it (0: none;
            requests arriving during a batch still share the next one).
        threads: CPU threads of the engine.
        backend: inference engine (``vinocr.predict.BACKENDS``).
    """

    def __init__(self, max_batch: int = 16, max_wait: float = 0.0, threads: int = 1,
                 backend: str = "auto") -> None:
        self.max_batch = max_batch
        self.max_wait = max_wait
        self.threads = threads
        self.backend = backend
        self.model: Optional[LoadedModel] = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vinocr-read")
        self._pending: List[_Pending] = []
        self._wake: Optional[asyncio.Event] = None
        self._task: Optional[asyncio.Task] = None
        self.queued_images = 0
        self.batches = 0            # engine batches run (images / batches = mean batch size)
        self._swap_lock = threading.Lock()

    def load(self, version: str, path: Path) -> LoadedModel:
        """Load ``path`` (blocking: call it off the event loop) and make it the model new batches
        use. The previous model stays loaded until the batches holding it finish."""
        rec = Recognizer.from_dir(path, backend=self.backend, threads=self.threads,
                                  batch_size=self.max_batch)
        loaded = LoadedModel(version, rec)
        with self._swap_lock:
            self.model = loaded
        logger.info("serving model %s (%s)", version, path)
        return loaded

    async def start(self) -> None:
        self._wake = asyncio.Event()
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self._executor.shutdown(wait=True)

    async def read(self, images: List[np.ndarray], decode: Optional[str] = None,
                   dynamic_width: Optional[bool] = None) -> Tuple[str, List[RecognitionResult]]:
        """Recognise ``images``; returns the version that read them and one result per image."""
        if self._wake is None:
            raise VinocrError("the read batcher is not running")
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        self._pending.append(_Pending(images, (decode, dynamic_width), future))
        self.queued_images += len(images)
        self._wake.set()
        return await future

    async def _run(self) -> None:
        assert self._wake is not None
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            # Let requests arriving right behind the first one join its batch.
            deadline = loop.time() + self.max_wait
            while self.max_wait > 0 and loop.time() < deadline and \
                    sum(len(p.images) for p in self._pending) < self.max_batch:
                await asyncio.sleep(min(0.001, max(0.0, deadline - loop.time())))
            batch, size = [], 0
            while self._pending and (not batch or size + len(self._pending[0].images)
                                     <= self.max_batch):
                item = self._pending.pop(0)
                batch.append(item)
                size += len(item.images)
            if not self._pending:
                self._wake.clear()
            model = self.model
            groups: Dict[Tuple[Optional[str], Optional[bool]], List[_Pending]] = {}
            for item in batch:
                groups.setdefault(item.key, []).append(item)
            for key, items in groups.items():
                self.batches += 1
                await self._run_group(loop, model, key, items)
            self.queued_images -= size

    async def _run_group(self, loop: asyncio.AbstractEventLoop, model: Optional[LoadedModel],
                         key: Tuple[Optional[str], Optional[bool]], items: List[_Pending]) -> None:
        images = [im for item in items for im in item.images]
        try:
            if model is None:
                raise VinocrError("no model is loaded")
            results = await loop.run_in_executor(self._executor, self._predict, model, key,
                                                 images)
        except Exception as exc:  # handed to each waiting request, which answers for itself
            for item in items:
                if not item.future.done():
                    item.future.set_exception(exc)
            return
        start = 0
        for item in items:
            n = len(item.images)
            if not item.future.done():
                item.future.set_result((model.version, results[start:start + n]))
            start += n

    @staticmethod
    def _predict(model: LoadedModel, key: Tuple[Optional[str], Optional[bool]],
                 images: List[np.ndarray]) -> List[RecognitionResult]:
        return model.view(*key).predict(images)

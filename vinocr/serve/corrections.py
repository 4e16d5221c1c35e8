"""Reviewer corrections written in the corrections-folder format, and the recent reads they fix.

A correction is ``DATA/corrections/ID.EXT`` (the uploaded bytes) plus ``ID.json`` (``{"text":
..., "predicted": ..., ...}``), exactly what :class:`vinocr.data.corrections.CorrectionsDataset`
reads, so a fine-tune job trains on the folder as it is. Both files are written atomically and
the sidecar last: the reader keys on sidecars, so it never sees a correction without its image.
"""
from __future__ import annotations

import collections
import json
import re
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

from vinocr.charset import Charset
from vinocr.data.base import IMAGE_EXTENSIONS
from vinocr.atomic_dir import write_file_atomic
from vinocr.serve.images import DecodedImage, UploadError
from vinocr.serve.models import NotFound

#: Read ids handed out by /v1/read: the only form a correction may refer to.
READ_ID_PATTERN = re.compile(r"^r[0-9a-f]{16}$")
#: Longest corrected text accepted (VINs are 17, plates shorter).
MAX_TEXT_LENGTH = 64
MAX_REVIEWER_LENGTH = 64


def check_text(text: Any, charset: Charset) -> str:
    """The corrected text, normalised as training will read it; 400 when it cannot be a label."""
    if not isinstance(text, str):
        raise UploadError("text: expected a string")
    text = charset.normalize(text)
    if not text:
        raise UploadError("text: empty; type the characters the image shows")
    if len(text) > MAX_TEXT_LENGTH:
        raise UploadError(f"text: {len(text)} characters is more than {MAX_TEXT_LENGTH}")
    bad = charset.invalid_chars(text)
    if bad:
        raise UploadError(f"text: {' '.join(repr(c) for c in bad)} not in the model's charset "
                          f"{charset.name!r}")
    return text


@dataclass
class ReadRecord:
    """One image /v1/read recognised, kept so a reviewer can correct it by its id."""

    read_id: str
    created: float
    version: str
    result: Dict[str, Any]
    image: DecodedImage
    corrected: Optional[str] = None


class RecentReads:
    """The last reads (bounded by count and by image bytes), oldest dropped first."""

    def __init__(self, max_items: int = 200, max_bytes: int = 64 * 1024 * 1024) -> None:
        self.max_items = max_items
        self.max_bytes = max_bytes
        self._items: "collections.OrderedDict[str, ReadRecord]" = collections.OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def add(self, version: str, result: Dict[str, Any], image: DecodedImage) -> str:
        read_id = "r" + secrets.token_hex(8)
        with self._lock:
            self._items[read_id] = ReadRecord(read_id, time.time(), version, result, image)
            self._bytes += len(image.data)
            while self._items and (len(self._items) > self.max_items
                                   or self._bytes > self.max_bytes):
                _, old = self._items.popitem(last=False)
                self._bytes -= len(old.image.data)
        return read_id

    def get(self, read_id: str) -> ReadRecord:
        if not isinstance(read_id, str) or not READ_ID_PATTERN.fullmatch(read_id):
            raise NotFound(f"read {read_id!r} does not exist (read ids look like "
                           "r0123456789abcdef)")
        with self._lock:
            record = self._items.get(read_id)
        if record is None:
            raise NotFound(f"read {read_id} is no longer held (only the last {self.max_items} "
                           "reads are); upload the image with the correction instead")
        return record

    def lowest_confidence(self, limit: int, include_corrected: bool = False) -> List[ReadRecord]:
        with self._lock:
            items = [r for r in self._items.values() if include_corrected or r.corrected is None]
        items.sort(key=lambda r: (r.result.get("confidence", 0.0), -r.created))
        return items[:limit]


class CorrectionStore:
    """``DATA/corrections``: one image + JSON sidecar per correction."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def add(self, image: DecodedImage, text: str, predicted: Optional[str] = None,
            confidence: Optional[float] = None, reviewer: Optional[str] = None,
            model_version: Optional[str] = None, read_id: Optional[str] = None) -> Dict[str, Any]:
        """Store one correction; returns its sidecar (with ``id``)."""
        if reviewer is not None and (not isinstance(reviewer, str)
                                     or len(reviewer) > MAX_REVIEWER_LENGTH):
            raise UploadError(f"reviewer: expected a string of at most {MAX_REVIEWER_LENGTH} "
                              "characters")
        cid = time.strftime("%Y%m%dT%H%M%S") + "_" + secrets.token_hex(4)
        doc: Dict[str, Any] = {"text": text, "predicted": predicted, "confidence": confidence,
                               "reviewer": reviewer, "model_version": model_version,
                               "read_id": read_id,
                               "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
        doc = {k: v for k, v in doc.items() if v is not None}
        with self._lock:
            write_file_atomic(self.root / f"{cid}{image.extension}", image.data)
            write_file_atomic(self.root / f"{cid}.json",
                              json.dumps(doc, ensure_ascii=False, indent=1).encode("utf-8"))
        return {"id": cid, **doc}

    def stats(self) -> Dict[str, Any]:
        """Counts over the folder as a fine-tune job would read it."""
        total = changed = agreed = 0
        reviewers: Dict[str, int] = {}
        versions: Dict[str, int] = {}
        latest = None
        for sidecar in sorted(self.root.glob("*.json")):
            if not any(sidecar.with_suffix(ext).is_file() for ext in IMAGE_EXTENSIONS):
                continue
            try:
                doc = json.loads(sidecar.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if not isinstance(doc, dict) or not isinstance(doc.get("text"), str):
                continue
            total += 1
            if "predicted" in doc:
                changed += doc["predicted"] != doc["text"]
                agreed += doc["predicted"] == doc["text"]
            who = str(doc.get("reviewer") or "anonymous")
            reviewers[who] = reviewers.get(who, 0) + 1
            if doc.get("model_version"):
                versions[doc["model_version"]] = versions.get(doc["model_version"], 0) + 1
            latest = max(latest or "", str(doc.get("created", "")))
        return {"total": total, "differs_from_prediction": changed,
                "agrees_with_prediction": agreed, "by_reviewer": reviewers,
                "by_model_version": versions, "latest": latest or None,
                "folder": str(self.root)}

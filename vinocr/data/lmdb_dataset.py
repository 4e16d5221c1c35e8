"""LMDB datasets in the deep-text-recognition-benchmark (DTRB) convention.

Keys: ``num-samples`` (decimal count), ``image-%09d`` (encoded image bytes) and ``label-%09d``
(UTF-8 text), indices starting at 1. PaddleOCR and PARSeq read the same layout.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Dict, Iterable, Optional, Tuple, Union

import numpy as np

from vinocr.data.base import TextDataset, decode_image_bytes
from vinocr.errors import DataError

logger = logging.getLogger(__name__)

NUM_SAMPLES_KEY = b"num-samples"


def image_key(index: int) -> bytes:
    return b"image-%09d" % index


def label_key(index: int) -> bytes:
    return b"label-%09d" % index


def write_lmdb(out_dir: Union[str, Path], samples: Iterable[Tuple[bytes, str]],
               map_size: int = 1 << 40, commit_every: int = 1000) -> int:
    """Write ``(encoded_image_bytes, label)`` pairs as a DTRB LMDB in ``out_dir``; return the count.

    The count is written last so a half-written database (crash, Ctrl-C) has no ``num-samples``
    key and is rejected by the reader instead of silently read as shorter.
    """
    import lmdb

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    env = lmdb.open(str(out), map_size=map_size)
    count = 0
    try:
        txn = env.begin(write=True)
        txn.delete(NUM_SAMPLES_KEY)
        for image_bytes, label in samples:
            count += 1
            txn.put(image_key(count), bytes(image_bytes))
            txn.put(label_key(count), label.encode("utf-8"))
            if count % commit_every == 0:
                txn.commit()
                txn = env.begin(write=True)
        txn.put(NUM_SAMPLES_KEY, str(count).encode("ascii"))
        txn.commit()
    finally:
        env.close()
    return count


class LmdbDataset(TextDataset):
    """Reads a DTRB LMDB. Opens the environment lazily per process so loader workers can fork."""

    kind = "lmdb"

    def __init__(self, path: Union[str, Path], charset: Any = None, strict: bool = False,
                 max_length: Optional[int] = None) -> None:
        super().__init__(charset=charset, strict=strict, max_length=max_length)
        self.path = Path(path)
        if not self.path.exists():
            raise DataError("LMDB directory not found", self.path)
        if not (self.path / "data.mdb").is_file():
            raise DataError("not an LMDB directory (no data.mdb inside)", self.path)
        self._env = None
        self._pid: Optional[int] = None
        labels = []
        with self._open().begin(write=False) as txn:
            raw = txn.get(NUM_SAMPLES_KEY)
            if raw is None:
                found = [k.decode("latin-1") for k, _ in zip(txn.cursor().iternext(values=False),
                                                             range(3))]
                raise DataError("wrong LMDB keys: no 'num-samples' key (DTRB convention needs "
                                f"num-samples, image-%09d, label-%09d; found e.g. {found})",
                                self.path)
            try:
                n = int(raw.decode("ascii"))
            except ValueError:
                raise DataError(f"wrong LMDB keys: 'num-samples' is not an integer: {raw[:20]!r}",
                                self.path) from None
            if n < 0:
                raise DataError(f"wrong LMDB keys: 'num-samples' is {n}, must be >= 0", self.path)
            for index in range(1, n + 1):
                raw_label = txn.get(label_key(index))
                if raw_label is None:
                    raise DataError(f"wrong LMDB keys: 'label-{index:09d}' missing although "
                                    f"num-samples is {n}", self.path)
                try:
                    label = raw_label.decode("utf-8")
                except UnicodeDecodeError:
                    raise DataError(f"label-{index:09d} is not valid UTF-8", self.path) from None
                labels.append((index, label))
        for index, label in labels:
            self._add(label, {"key": index, "line": None, "where": f"{self.path}[{index}]"})

    def _open(self):
        import lmdb

        if self._env is None or self._pid != os.getpid():
            self._env = lmdb.open(str(self.path), readonly=True, lock=False, readahead=False,
                                  meminit=False, max_readers=64)
            self._pid = os.getpid()
        return self._env

    def __getstate__(self) -> Dict[str, Any]:
        state = self.__dict__.copy()
        state["_env"] = None
        return state

    def read_bytes(self, i: int) -> bytes:
        key = self._entries[i].meta["key"]
        with self._open().begin(write=False) as txn:
            data = txn.get(image_key(key))
        if data is None:
            raise DataError(f"wrong LMDB keys: 'image-{key:09d}' missing", self.path)
        return bytes(data)

    def load_image(self, i: int) -> np.ndarray:
        return decode_image_bytes(self.read_bytes(i), self._entries[i].meta["where"])

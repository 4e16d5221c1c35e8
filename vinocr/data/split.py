"""Train/val/test splits grouped by label text, reproducible by seed.

All samples with the same (normalised) label go to the same split, so one VIN or plate never
appears in two splits: otherwise validation measures memorised plates, not reading.

``vinocr-data split`` also writes a manifest, ``split.json``, beside the splits. It records which
splits are held out for testing, so tools that must never train on test data (``vinocr-data
augment``) can tell, whatever the split files are called.
"""
from __future__ import annotations

import json
import os
import re
from collections import defaultdict
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import numpy as np

from vinocr.errors import DataError, VinocrError

#: The manifest ``vinocr-data split`` writes into its output folder.
MANIFEST = "split.json"

_TEST_NAME = re.compile(r"(.*[_\-.])?(test|tests|testing|testset)([_\-.].*)?")


def looks_like_test_name(name: str) -> bool:
    """``test``, ``tests``, ``vin_test``, ``test-2024``, ``testset`` ...: a name that says "test"
    as a word of its own (``latest`` and ``contest`` do not)."""
    return bool(_TEST_NAME.fullmatch(name.lower()))


def write_manifest(out_dir: Union[str, Path], record: Mapping[str, Any]) -> Path:
    """Write ``record`` (which must hold ``test_splits``) as ``out_dir/split.json``, atomically."""
    if not isinstance(record.get("test_splits"), list):
        raise ValueError("the split manifest needs a test_splits list")
    path = Path(out_dir) / MANIFEST
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(dict(record), indent=2, ensure_ascii=False) + "\n",
                   encoding="utf-8")
    tmp.replace(path)
    return path


def manifest_test_splits(folder: Union[str, Path]) -> List[str]:
    """The test split names ``folder/split.json`` records; [] when there is no manifest.

    A manifest that cannot be read is an error, not "no test split": it exists to keep test data
    out of training, so guessing would defeat it.
    """
    path = Path(folder) / MANIFEST
    if not path.is_file():
        return []
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"cannot read the split manifest: {exc}", path) from None
    names = doc.get("test_splits") if isinstance(doc, dict) else None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise DataError("the split manifest has no test_splits list of names", path)
    return names


def _link_chain(path: Path) -> List[Path]:
    """``path``, every symlink it leads through, and what it finally resolves to."""
    chain = [Path(os.path.abspath(path))]
    while chain[-1].is_symlink() and len(chain) < 40:  # 40: the kernel's own limit on link loops
        link = chain[-1]
        chain.append(Path(os.path.abspath(link.parent / os.readlink(link))))
    resolved = Path(path).resolve()
    if resolved not in chain:
        chain.append(resolved)
    return chain


def held_out_test_reason(path: Union[str, Path], dataset: Any = None) -> Optional[str]:
    """Why the dataset at ``path`` is (or holds) a test split, or None.

    A test split is a label file or folder named like one (``test.txt``, ``test/``,
    ``vin_test.txt``, ``testset/``: the dataset's own name, not the folders above it), one that the
    ``split.json`` beside it names as a test split (``vinocr-data split --test-split``), or a folder
    holding either. Every symlink on the way is followed and each name on it counts, so a link
    called ``train.txt`` that points at ``test.txt`` is still the test split.
    """
    path = Path(path)
    for candidate in (path, *(Path(f) for f in getattr(dataset, "label_files", []))):
        for link in _link_chain(candidate):
            # A label file is named by its stem (test.txt -> test), a folder (LMDB) by its name.
            name = link.stem if link.is_file() else link.name
            via = "" if link == Path(os.path.abspath(path)) else f"{link}: "
            if looks_like_test_name(name):
                return f"{via}named like a test split"
            if name in manifest_test_splits(link.parent):
                return f"{via}{link.parent / MANIFEST} records {name!r} as a test split"
            held = manifest_test_splits(link) if link.is_dir() else []
            if held:
                return f"{via}holds the test split {held[0]!r} ({link / MANIFEST})"
    return None


def grouped_split(labels: Sequence[str], fractions: Sequence[float] = (0.8, 0.1, 0.1),
                  names: Sequence[str] = ("train", "val", "test"), seed: int = 0
                  ) -> Dict[str, List[int]]:
    """Indices per split. Groups (unique labels) are shuffled by ``seed`` and assigned greedily so
    each split's sample count approaches its fraction."""
    if len(fractions) != len(names):
        raise VinocrError(f"{len(fractions)} fractions for {len(names)} split names")
    if any(f < 0 for f in fractions) or sum(fractions) <= 0:
        raise VinocrError(f"split fractions must be >= 0 and sum to > 0, got {list(fractions)}")
    total_f = float(sum(fractions))
    fractions = [f / total_f for f in fractions]
    groups: Dict[str, List[int]] = defaultdict(list)
    for i, label in enumerate(labels):
        groups[label].append(i)
    keys = sorted(groups)
    order = np.random.default_rng(seed).permutation(len(keys))
    targets = [f * len(labels) for f in fractions]
    out: Dict[str, List[int]] = {n: [] for n in names}
    for k in order:
        members = groups[keys[k]]
        # The split furthest below its target (relative to its size) takes the group.
        deficits = [(targets[j] - len(out[n])) / max(targets[j], 1e-9) if targets[j] > 0
                    else -np.inf for j, n in enumerate(names)]
        out[names[int(np.argmax(deficits))]].extend(members)
    return {n: sorted(v) for n, v in out.items()}

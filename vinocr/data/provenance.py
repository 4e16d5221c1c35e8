"""Which samples of a dataset ``vinocr-synth`` generated.

A model trained on synthetic crops alone is used on crops its generator never drew, so what
matters for choosing a recipe is how it transfers, not how it scores on more of the same
(docs/style-shift.md). ``vinocr-synth`` marks every folder it writes with ``synth.json``
(:data:`SETTINGS_FILE`: generator :data:`GENERATOR`, ``complete: true`` once finished) and puts
crop images in its ``images/`` subfolder. A sample is synthetic when its image is in such an
``images/`` folder (followed through symlinks: the path as given or as resolved), or, for
LMDB, when the database folder is such a folder.

Folders that ``vinocr-data`` derives from a dataset (``make-lmdb``, ``split --lmdb``, ``augment``,
and the copied crops of a ``split`` of an LMDB) hold no generator output, so they carry
``provenance.json`` (:data:`DERIVED_FILE`) instead: the share of their samples that came from
``vinocr-synth`` (``synthetic_share``), the source and the tool. An LMDB holding nothing but
generator crops then counts as synthetic like the generator's own output; a folder without
either marker counts as real.

Kept free of the generator's imports: the trainer calls it on every run.
"""
from __future__ import annotations

import json
import logging
import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Union

from vinocr.data.mixed import MixedDataset

logger = logging.getLogger(__name__)

#: The marker vinocr-synth writes into every output folder, and its generator field.
SETTINGS_FILE = "synth.json"
GENERATOR = "vinocr.data.synth"
#: The subfolder of a vinocr-synth output that holds its crop images.
IMAGE_DIR = "images"
#: The marker vinocr-data writes into a folder of samples it derived from another dataset.
DERIVED_FILE = "provenance.json"


def synth_settings(folder: Any) -> Optional[Dict[str, Any]]:
    """The settings (``synth.json``) of a finished ``vinocr-synth`` output in ``folder``; None
    when it is not one (no marker, unreadable, another generator's, or unfinished)."""
    try:
        settings = json.loads((Path(folder) / SETTINGS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if (isinstance(settings, dict) and settings.get("generator") == GENERATOR
            and settings.get("complete") is True):
        return settings
    return None


@lru_cache(maxsize=4096)
def is_synth_folder(folder: str) -> bool:
    """True when ``folder`` holds a finished ``vinocr-synth`` output (its ``synth.json``)."""
    return synth_settings(folder) is not None


def _given_or_resolved(path: str, test: Callable[[str], bool]) -> bool:
    """``test`` on the absolute path as given, then through its symlinks."""
    given = os.path.abspath(path)
    return test(given) or test(os.path.realpath(given))


def _images_of_synth_output(folder: str) -> bool:
    return os.path.basename(folder) == IMAGE_DIR and is_synth_folder(os.path.dirname(folder))


@lru_cache(maxsize=65536)
def derived_share(folder: str) -> Optional[float]:
    """The synthetic share a ``vinocr-data`` output in ``folder`` records (its
    :data:`DERIVED_FILE`); None when it has none or it is unreadable."""
    try:
        record = json.loads((Path(folder) / DERIVED_FILE).read_text(encoding="utf-8"))
        share = float(record["synthetic_share"])
    except (OSError, ValueError, TypeError, KeyError):
        return None
    return share if 0.0 <= share <= 1.0 else None


def folder_share(folder: str, images: bool) -> float:
    """The share of the samples in ``folder`` that ``vinocr-synth`` generated: 1.0 for the
    generator's own output (its ``images/`` for ``images``, else the output folder itself, as
    for an LMDB), the recorded share of a derived folder, else 0.0."""
    own = _images_of_synth_output if images else is_synth_folder
    if _given_or_resolved(folder, own):
        return 1.0
    share = derived_share(os.path.abspath(folder))
    if share is None:
        share = derived_share(os.path.realpath(folder))
    return 0.0 if share is None else share


def sample_shares(dataset: Any) -> List[float]:
    """Per sample of ``dataset`` (not mixed), the share of it ``vinocr-synth`` generated (0 or
    1, or a derived folder's recorded share). Readers that keep no image paths and are not
    LMDB databases count as not synthetic."""
    n = len(dataset)
    if hasattr(dataset, "path_of"):
        per_folder: Dict[str, float] = {}
        out = []
        for i in range(n):
            folder = os.path.dirname(str(dataset.path_of(i)))
            if folder not in per_folder:
                per_folder[folder] = folder_share(folder, images=True)
            out.append(per_folder[folder])
        return out
    path = getattr(dataset, "path", None)
    if path is not None and Path(path).is_dir():
        return [folder_share(str(path), images=False)] * n
    return [0.0] * n


def write_derived_marker(folder: Union[str, Path], share: float, source: Any, tool: str) -> None:
    """Record in ``folder`` (a ``vinocr-data`` output) that ``share`` of its samples came from
    ``vinocr-synth`` (:data:`DERIVED_FILE`, written atomically)."""
    from vinocr.atomic_dir import write_file_atomic

    record = {"synthetic_share": round(float(share), 6), "source": str(source), "tool": tool}
    write_file_atomic(Path(folder) / DERIVED_FILE,
                      (json.dumps(record, indent=2) + "\n").encode("utf-8"))
    derived_share.cache_clear()


def synthetic_share(dataset: Any) -> float:
    """The share (0..1) of ``dataset``'s samples that ``vinocr-synth`` generated.

    Mixed datasets weigh each source by the samples it contributes per epoch; readers that keep
    no image paths (and are not LMDB databases) count as not synthetic. Cost: one lookup per
    distinct image folder, not per sample."""
    n = len(dataset)
    if n == 0:
        return 0.0
    if isinstance(dataset, MixedDataset):
        counts = dataset.counts()
        return sum(synthetic_share(source) * count
                   for source, count in zip(dataset.sources, counts) if count) / max(1, sum(counts))
    return sum(sample_shares(dataset)) / n

"""Which samples of a dataset ``vinocr-synth`` generated.

A model trained on synthetic crops alone is used on crops its generator never drew, so what
matters for choosing a recipe is how it transfers, not how it scores on more of the same
(docs/style-shift.md). ``vinocr-synth`` marks every folder it writes with ``synth.json``
(:data:`SETTINGS_FILE`: generator :data:`GENERATOR`, ``complete: true`` once finished) and puts
crop images in its ``images/`` subfolder. A sample is synthetic when its image is in such an
``images/`` folder (followed through symlinks: the path as given or as resolved), or, for
LMDB, when the database folder is such a folder. Folders derived from one (``vinocr-data
make-lmdb``, ``augment``) carry no marker and count as real.

Kept free of the generator's imports: the trainer calls it on every run.
"""
from __future__ import annotations

import json
import logging
import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Dict, Optional

from vinocr.data.mixed import MixedDataset

logger = logging.getLogger(__name__)

#: The marker vinocr-synth writes into every output folder, and its generator field.
SETTINGS_FILE = "synth.json"
GENERATOR = "vinocr.data.synth"
#: The subfolder of a vinocr-synth output that holds its crop images.
IMAGE_DIR = "images"


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
def is_synthetic_image_folder(folder: str) -> bool:
    """True when images in ``folder`` (absolute or relative) are crops ``vinocr-synth`` wrote."""
    return _given_or_resolved(folder, _images_of_synth_output)


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
    if hasattr(dataset, "path_of"):
        per_folder: Dict[str, int] = {}
        for i in range(n):
            folder = os.path.dirname(str(dataset.path_of(i)))
            per_folder[folder] = per_folder.get(folder, 0) + 1
        return sum(k for folder, k in per_folder.items()
                   if is_synthetic_image_folder(folder)) / n
    path = getattr(dataset, "path", None)
    if path is not None and Path(path).is_dir():
        return 1.0 if _given_or_resolved(str(path), is_synth_folder) else 0.0
    return 0.0

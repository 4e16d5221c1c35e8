"""Which samples of a dataset ``vinocr-synth`` generated.

A model trained on synthetic crops alone is used on crops its generator never drew, so what
matters for choosing a recipe is how it transfers, not how it scores on more of the same
(docs/style-shift.md). ``vinocr-synth`` marks every folder it writes with ``synth.json``
(generator ``vinocr.data.synth``, ``complete: true`` once finished); a sample is synthetic when
its image lies in such a folder (its images/ subfolder, or one level further down for plate
tracks), or, for LMDB, when the database folder is one.
"""
from __future__ import annotations

import json
import logging
from functools import lru_cache
from pathlib import Path
from typing import Any

from vinocr.data.mixed import MixedDataset
from vinocr.data.synth.writer import SETTINGS_FILE

logger = logging.getLogger(__name__)

GENERATOR = "vinocr.data.synth"
# images/ of a crop set; <scenario>/<track>/ of plate tracks: the marker is at most 3 folders up.
MARKER_DEPTH = 3


@lru_cache(maxsize=4096)
def is_synth_folder(folder: str) -> bool:
    """True when ``folder`` holds a finished ``vinocr-synth`` output (its ``synth.json``)."""
    marker = Path(folder) / SETTINGS_FILE
    try:
        settings = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (isinstance(settings, dict) and settings.get("generator") == GENERATOR
            and settings.get("complete") is True)


@lru_cache(maxsize=65536)
def _image_folder_is_synthetic(folder: str) -> bool:
    here = Path(folder)
    for candidate in [here, *list(here.parents)[:MARKER_DEPTH - 1]]:
        if is_synth_folder(str(candidate)):
            return True
    return False


def is_synthetic_image(path: Path) -> bool:
    """True when the image at ``path`` lies in a ``vinocr-synth`` output."""
    return _image_folder_is_synthetic(str(Path(path).resolve().parent))


def synthetic_share(dataset: Any) -> float:
    """The share (0..1) of ``dataset``'s samples that ``vinocr-synth`` generated.

    Mixed datasets weigh each source by the samples it contributes per epoch; readers that keep
    no image paths (and are not LMDB databases) count as not synthetic."""
    n = len(dataset)
    if n == 0:
        return 0.0
    if isinstance(dataset, MixedDataset):
        counts = dataset.counts()
        return sum(synthetic_share(source) * count
                   for source, count in zip(dataset.sources, counts)) / max(1, sum(counts))
    if hasattr(dataset, "path_of"):
        return sum(is_synthetic_image(dataset.path_of(i)) for i in range(n)) / n
    path = getattr(dataset, "path", None)
    if path is not None and Path(path).is_dir():
        return 1.0 if is_synth_folder(str(Path(path).resolve())) else 0.0
    return 0.0

"""Data augmentation for text-line crops (VINs and licence plates).

Images are BGR ``uint8`` arrays of shape HxWx3. Each transform is called as
``transform(img, rng)`` with a ``numpy.random.Generator``; :class:`AugmentPipeline` picks
weighted transforms per sample; :func:`build_augment` builds one from the YAML ``augment``
section; :func:`augment_dataset` writes an augmented copy of a dataset; :func:`preview_grid`
renders a visual check. No transform mirrors the image: a flipped text line no longer matches its
label.
"""
from __future__ import annotations

from .pipeline import (AUGMENT_SCHEMA_KEYS, AugmentPipeline, as_bgr, augment_dataset,
                       build_augment, list_transforms, write_png)
from .presets import PRESET_NAMES, PRESETS, Preset, preset_pipeline
from .preview import preview_grid, save_preview
from .transforms import TRANSFORMS, Transform, register

__all__ = [
    "AUGMENT_SCHEMA_KEYS",
    "AugmentPipeline",
    "PRESETS",
    "PRESET_NAMES",
    "Preset",
    "TRANSFORMS",
    "Transform",
    "as_bgr",
    "augment_dataset",
    "build_augment",
    "list_transforms",
    "preset_pipeline",
    "preview_grid",
    "register",
    "save_preview",
    "write_png",
]

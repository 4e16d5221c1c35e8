"""The two built-in augmentation presets: ``alpr`` (licence plates) and ``vin``.

A preset is a list of ``(transform name, weight, parameter overrides)`` plus defaults for ``p``
and ``num_ops``. Neither preset contains a horizontal flip, and none exists to add: flipping a
text line mirrors its characters (``b``/``d``, ``2``/``S``-like shapes, reversed order), so the
image would no longer match its label.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Dict, List, Tuple

if TYPE_CHECKING:  # imported lazily at run time: pipeline imports this module
    from .pipeline import AugmentPipeline

#: One preset entry: transform name, selection weight, constructor kwargs.
PresetEntry = Tuple[str, float, Dict[str, Any]]


@dataclass(frozen=True)
class Preset:
    """Default pipeline settings and weighted transforms of a named preset."""

    name: str
    p: float
    num_ops: int
    entries: List[PresetEntry] = field(default_factory=list)


#: The eleven weighted transforms used in production ALPR training, with their weights.
ALPR = Preset(
    name="alpr",
    p=0.9,
    num_ops=2,
    entries=[
        ("motion_blur", 2.0, {}),
        ("rotate", 3.0, {"max_angle": 10.0}),
        ("rotate3d", 1.0, {}),
        ("gaussian_blur", 1.0, {}),
        ("shade", 1.0, {}),
        ("salt_pepper", 1.0, {}),
        ("cutting", 1.0, {}),
        ("padding", 1.0, {}),
        ("top_bottom_cutting", 1.0, {}),
        ("brightness", 1.0, {}),
        ("downsize", 1.0, {}),
    ],
)

#: VIN lines: mild photometric changes, at most 5 degrees of rotation, at most 5 % perspective.
#: VIN plates and labels are read left to right with no ambiguity tolerance (the check digit
#: depends on every character), so nothing here crops characters or mirrors the image.
VIN = Preset(
    name="vin",
    p=0.8,
    num_ops=2,
    entries=[
        ("brightness", 2.0, {"factor": (0.7, 1.3), "contrast": (0.7, 1.3)}),
        ("rotate", 1.0, {"max_angle": 5.0}),
        ("gaussian_blur", 1.0, {"sigma": (0.3, 1.2)}),
        ("gaussian_noise", 1.0, {"sigma": (2.0, 10.0)}),
        ("perspective", 1.0, {"max_shift": 0.05}),
        ("jpeg", 1.0, {"quality": (50, 95)}),
    ],
)

PRESETS: Dict[str, Preset] = {ALPR.name: ALPR, VIN.name: VIN}

#: Values accepted for ``augment.preset``; ``none`` means only the listed transforms.
PRESET_NAMES: Tuple[str, ...] = (*PRESETS, "none")


def preset_pipeline(name: str) -> "AugmentPipeline":
    """Build the :class:`AugmentPipeline` of preset ``name`` with its default settings."""
    from .pipeline import build_augment

    pipe = build_augment({"preset": name})
    if pipe is None:
        raise ValueError(f"preset {name!r} has no transforms")
    return pipe

"""Style pools: which fonts, materials and degradations a synthetic crop may use.

A model fine-tuned on one renderer learns that renderer. To measure what it learnt about VINs,
every source of variety is split in two: the ``train`` pool (what training data is made of) and
the ``heldout`` pool (what a held-out-style test set is made of, never seen in training):

* fonts: whole families (see ``pool`` in :mod:`vinocr.data.synth.fonts`);
* materials: ``laser`` (laser-etched) and ``cast`` (raised cast lettering) are held out; the
  held-out pool also renders the training materials, but always in held-out fonts;
* degradation families: each family of camera damage (blur, resolution, compression, noise,
  light, geometry) has a training member and a different held-out member, e.g. Gaussian and
  defocus blur for training, motion blur held out.

``all`` (the default of ``vinocr-synth vin``) is the union: use it for data you train a product
on; use ``train`` for training data you will judge on a ``heldout`` test set.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Tuple

from vinocr.data.synth.fonts import POOL_HELDOUT, POOL_TRAIN
from vinocr.errors import VinocrError

#: Materials rendered by :mod:`vinocr.data.synth.vin_render` in the training pool.
TRAIN_STYLES: Tuple[str, ...] = ("engraved", "dot_peen", "sticker", "windshield", "paper",
                                 "label")
#: Materials only the held-out pool renders.
HELDOUT_STYLES: Tuple[str, ...] = ("laser", "cast")

#: Degradation families (see :mod:`vinocr.data.synth.degrade`).
TRAIN_DEGRADATIONS: Tuple[str, ...] = ("defocus", "lowres_area", "jpeg", "gauss_noise",
                                       "shading", "crop_jitter")
HELDOUT_DEGRADATIONS: Tuple[str, ...] = ("motion_blur", "lowres_cubic", "jpeg_heavy",
                                         "colour_noise", "glare_shadow", "curvature",
                                         "low_contrast")


@dataclass(frozen=True)
class StylePool:
    """The fonts (by pool tag), materials and degradation families a crop may draw from.

    ``degrade_p`` is the chance that a crop gets extra degradations beyond each material's own
    camera finish; ``max_degradations`` caps how many families one crop combines.
    """

    name: str
    font_pools: Tuple[str, ...]
    styles: Tuple[str, ...]
    degradations: Tuple[str, ...]
    degrade_p: float = 0.6
    max_degradations: int = 2


POOLS: Dict[str, StylePool] = {
    "train": StylePool("train", (POOL_TRAIN,), TRAIN_STYLES, TRAIN_DEGRADATIONS),
    # Every held-out crop has a held-out font; most also get held-out camera damage.
    "heldout": StylePool("heldout", (POOL_HELDOUT,), HELDOUT_STYLES + TRAIN_STYLES,
                         HELDOUT_DEGRADATIONS, degrade_p=0.8),
    "all": StylePool("all", (POOL_TRAIN, POOL_HELDOUT), TRAIN_STYLES + HELDOUT_STYLES,
                     TRAIN_DEGRADATIONS + HELDOUT_DEGRADATIONS),
}
POOL_NAMES: Tuple[str, ...] = tuple(POOLS)


def get_pool(name: str) -> StylePool:
    """The pool called ``name``; VinocrError naming the choices otherwise."""
    try:
        return POOLS[name]
    except (KeyError, TypeError):
        raise VinocrError(f"unknown style pool {name!r}; choose from "
                          + ", ".join(POOL_NAMES)) from None

"""Fine-tuning techniques: plugins that adapt a pretrained recogniser through the trainer's hooks.

One file per technique; each registers a :class:`~vinocr.engine.hooks.TrainerHooks` subclass under
a name. Other installed packages add techniques through the entry-point group
``vinocr.techniques`` (``name = "package.module:Class"``). Names stack with ``+``: an adaptation
technique first (``adapts_model = True``; at most one), then loss-level ones, e.g.
``gradual_unfreeze+label_smoothing``; :class:`~vinocr.engine.hooks.HookList` enforces it.
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Dict, List, Mapping, Type

from vinocr.engine.hooks import HookList, TrainerHooks
from vinocr.errors import ConfigError

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "vinocr.techniques"
_REGISTRY: Dict[str, Type[TrainerHooks]] = {}
#: Short names accepted on the command line (``--technique gradual``).
ALIASES = {"gradual": "gradual_unfreeze", "frozen": "frozen_backbone",
           "discriminative": "discriminative_lr", "kd": "distillation",
           "smoothing": "label_smoothing"}
_loaded_entry_points = False


def register_technique(name: str) -> Callable[[Type[TrainerHooks]], Type[TrainerHooks]]:
    def wrap(cls: Type[TrainerHooks]) -> Type[TrainerHooks]:
        cls.name = name
        _REGISTRY[name] = cls
        return cls
    return wrap


def _load_entry_points() -> None:
    global _loaded_entry_points
    if _loaded_entry_points:
        return
    _loaded_entry_points = True
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            cls = ep.load()
        except Exception as exc:  # a broken plugin must not break the built-ins
            logger.warning("technique plugin %s (%s) failed to load: %s", ep.name, ep.value, exc)
            continue
        cls.name = ep.name
        _REGISTRY.setdefault(ep.name, cls)


def available_techniques() -> List[str]:
    _load_built_ins()
    _load_entry_points()
    return sorted(_REGISTRY)


def _load_built_ins() -> None:
    # Importing the modules registers them; one file per technique.
    from techniques import (auto, discriminative_lr, distillation, frozen_backbone,  # noqa: F401
                            full, gradual_unfreeze, label_smoothing, lora)


def build_technique(cfg: Mapping[str, Any]) -> HookList:
    """Hooks for the ``Technique`` config section: ``{name: "a+b", <a's options>, <b's options>}``.

    Each option goes to the named technique that declares it (its ``Options`` dataclass), which
    validates it (:func:`vinocr.engine.hooks.parse_options`); an option no named technique
    declares, or one two of them declare, is an error naming it.
    """
    names = [ALIASES.get(n.strip(), n.strip())
             for n in str(cfg.get("name", "full")).split("+") if n.strip()]
    valid = available_techniques()
    options = {k: v for k, v in cfg.items() if k != "name"}
    for name in names:
        if name not in _REGISTRY:
            aliases = ", ".join(f"{a}={t}" for a, t in sorted(ALIASES.items()))
            raise ConfigError(f"Technique.name: unknown technique {name!r}; valid: "
                              f"{', '.join(valid)} (aliases: {aliases})")
    keys = {name: set(_REGISTRY[name].option_keys()) for name in names}
    for key in options:
        takers = [n for n in names if key in keys[n]]
        if not takers:
            raise ConfigError(f"Technique.{key}: not an option of {'+'.join(names)}")
        if len(takers) > 1:
            # An option two stacked techniques both take (e.g. lora's and distillation's alpha)
            # would silently configure both; make the user say which.
            raise ConfigError(f"Technique.{key}: ambiguous, an option of "
                              f"{' and '.join(takers)}; use the specific spelling (e.g. "
                              "lora_alpha, kd_alpha)")
    return HookList([_REGISTRY[name](**{k: v for k, v in options.items() if k in keys[name]})
                     for name in names])

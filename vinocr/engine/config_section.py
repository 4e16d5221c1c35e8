"""Typed reads of one plain-dict config section, with defaults and one-line ConfigErrors.

Used by the builders of the ``Optimizer``, ``Scheduler`` and ``Optimizer.ema`` sections
(:mod:`vinocr.engine.optim`, :mod:`vinocr.engine.schedules`, :mod:`vinocr.engine.ema`).
"""
from __future__ import annotations

import logging
import math
from typing import Any, List, Mapping, Optional, Sequence

from vinocr.errors import ConfigError

logger = logging.getLogger(__name__)

__all__ = ["ConfigSection"]


class ConfigSection:
    """Typed reads from one config section with defaults and one-line ConfigErrors."""

    def __init__(self, cfg: Optional[Mapping[str, Any]], section: str,
                 defaults: Mapping[str, Any]) -> None:
        if cfg is None:
            cfg = {}
        if not isinstance(cfg, Mapping):
            raise ConfigError(f"{section}: expected a mapping, got {type(cfg).__name__}")
        self.cfg, self.section, self.defaults = cfg, section, defaults
        unknown = sorted(set(cfg) - set(defaults))
        if unknown:
            # The schema is where unknown keys are rejected; here a warning is enough not to break
            # when the schema grows keys this module does not read.
            logger.warning("%s: ignoring unknown keys %s; known: %s", section, ", ".join(unknown),
                           ", ".join(defaults))

    def key(self, name: str) -> str:
        return f"{self.section}.{name}"

    def raw(self, name: str) -> Any:
        return self.cfg.get(name, self.defaults.get(name))

    def number(self, name: str, *, minimum: Optional[float] = None, above: Optional[float] = None,
               below: Optional[float] = None, nullable: bool = False) -> Optional[float]:
        value = self.raw(name)
        if value is None and nullable:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                not math.isfinite(float(value)):
            raise ConfigError(f"{self.key(name)}: expected a finite number"
                              f"{' or null' if nullable else ''}, got {value!r}")
        value = float(value)
        if minimum is not None and value < minimum:
            raise ConfigError(f"{self.key(name)}: must be >= {minimum:g}, got {value:g}")
        if above is not None and value <= above:
            raise ConfigError(f"{self.key(name)}: must be > {above:g}, got {value:g}")
        if below is not None and value >= below:
            raise ConfigError(f"{self.key(name)}: must be < {below:g}, got {value:g}")
        return value

    def integer(self, name: str, *, minimum: int = 0) -> int:
        value = self.raw(name)
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{self.key(name)}: expected an integer, got {value!r}")
        if value < minimum:
            raise ConfigError(f"{self.key(name)}: must be >= {minimum}, got {value}")
        return value

    def boolean(self, name: str) -> bool:
        value = self.raw(name)
        if not isinstance(value, bool):
            raise ConfigError(f"{self.key(name)}: expected true or false, got {value!r}")
        return value

    def choice(self, name: str, choices: Sequence[str], what: str) -> str:
        value = self.raw(name)
        normal = value.lower() if isinstance(value, str) else value
        if normal not in choices:
            raise ConfigError(f"{self.key(name)}: unknown {what} {value!r}; valid: "
                              f"{', '.join(choices)}")
        return normal

    def numbers(self, name: str) -> List[float]:
        value = self.raw(name)
        if not isinstance(value, (list, tuple)) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                for v in value):
            raise ConfigError(f"{self.key(name)}: expected a list of numbers, got {value!r}")
        return [float(v) for v in value]

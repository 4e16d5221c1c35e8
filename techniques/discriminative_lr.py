"""``discriminative_lr``: every parameter trains, but at a learning rate that grows from the input
side to the output: pretrained low-level features need only a nudge, the head most change.

Default multipliers of the scheduler's LR, per part (:mod:`techniques.parts`): ``stem`` and
``early_backbone`` x0.01, ``late_backbone`` x0.1, ``neck`` x0.5, ``head`` and ``aux_head`` x1.0.
``lr_mults: {regex: multiplier}`` replaces them: each parameter takes the multiplier of the first
regex found in its structured name (``re.search``; end with ``".*": 1.0`` as a catch-all).
Parameters with the same multiplier form one optimizer group (``lr_x0.01``...).

Trainability is left alone, so this stacks after a technique that freezes parts.
"""
from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Tuple

from techniques import register_technique
from techniques.parts import PartMap, learnable_parameters
from vinocr.engine.hooks import RunView, TrainerHooks, option
from vinocr.errors import ConfigError

logger = logging.getLogger(__name__)

DEFAULT_PART_MULTS: Dict[str, float] = {
    "stem": 0.01, "early_backbone": 0.01, "late_backbone": 0.1, "neck": 0.5, "head": 1.0,
    "aux_head": 1.0,
}


def _check_mult(value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or \
            not math.isfinite(float(value)) or value < 0:
        raise ConfigError(f"{key}: multiplier must be a finite number >= 0, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class DiscriminativeLROptions:
    lr_mults: Optional[Mapping[str, Any]] = option(None, doc="{regex: multiplier}, first match "
                                                   "wins; default per part")
    parts: Optional[Mapping[str, str]] = option(None, doc="{part: regex} replacing the default "
                                                "parts")


@register_technique("discriminative_lr")
class DiscriminativeLR(TrainerHooks):
    adapts_model = True
    Options = DiscriminativeLROptions

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.partmap = PartMap.from_option(self.options.parts)
        self.rules: Optional[List[Tuple[str, "re.Pattern[str]", float]]] = None
        lr_mults = self.options.lr_mults
        if lr_mults is not None:
            self.rules = []
            for pattern, mult in lr_mults.items():
                key = f"Technique.lr_mults[{pattern!r}]"
                if not isinstance(pattern, str) or not pattern:
                    raise ConfigError(f"Technique.lr_mults: keys must be regex strings, got "
                                      f"{pattern!r}")
                try:
                    regex = re.compile(pattern)
                except re.error as exc:
                    raise ConfigError(f"{key}: invalid regex: {exc}") from None
                self.rules.append((pattern, regex, _check_mult(mult, key)))
        self.groups: Dict[str, Dict[str, Any]] = {}

    def _mults(self, model: Any) -> List[Tuple[str, Any, float]]:
        """``(name, parameter, multiplier)`` for every learnable parameter."""
        out = []
        if self.rules is None:
            missing = [p for p in self.partmap.names if p not in DEFAULT_PART_MULTS]
            if missing:
                raise ConfigError(f"Technique.lr_mults: no default multiplier for part "
                                  f"{missing[0]!r}; set Technique.lr_mults {{regex: multiplier}}")
            for part, params in self.partmap.params_by_part(model).items():
                out.extend((n, p, DEFAULT_PART_MULTS[part]) for n, p in params)
            return out
        for name, p in learnable_parameters(model):
            mult = next((m for _, regex, m in self.rules if regex.search(name)), None)
            if mult is None:
                raise ConfigError(f"Technique.lr_mults: parameter {name!r} matches no pattern; "
                                  "add a catch-all such as '.*': 1.0")
            out.append((name, p, mult))
        return out

    def param_groups(self, model: Any, run: RunView) -> Optional[List[Dict[str, Any]]]:
        groups: Dict[float, Dict[str, Any]] = {}
        for name, p, mult in self._mults(model):
            g = groups.setdefault(mult, {"name": f"lr_x{mult:g}", "lr_mult": mult, "params": [],
                                         "weight_decay": None})
            g["params"].append(p)
        # Low multipliers first: the order reads input side to output in logs and reports.
        ordered = [groups[m] for m in sorted(groups)]
        self.groups = {g["name"]: {"lr_mult": g["lr_mult"], "tensors": len(g["params"])}
                       for g in ordered}
        logger.info("discriminative_lr: %s", "; ".join(
            f"{name} ({info['tensors']} tensors)" for name, info in self.groups.items()))
        return ordered

    def describe(self) -> Dict[str, Any]:
        mults = ({p: DEFAULT_PART_MULTS[p] for p in self.partmap.names if p in DEFAULT_PART_MULTS}
                 if self.rules is None else {pattern: m for pattern, _, m in self.rules})
        return {"name": self.name, "lr_mults": mults, "groups": self.groups}

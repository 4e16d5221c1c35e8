"""``gradual_unfreeze``: train the head first, then unfreeze deeper parts epoch by epoch (ULMFiT).

The randomly re-initialised or re-mapped head first learns on top of fixed features, so its large
early gradients do not wreck the pretrained backbone; deeper parts join once the head is sensible.

Default schedule with E = ``Train.epochs`` (each epoch rounded down): ``head`` (and ``aux_head``)
from epoch 0, ``neck`` from E/4, ``late_backbone`` from E/2, everything from 3E/4.
``schedule: {epoch: [parts]}`` replaces it; a key is a whole epoch (int, 0-based) or a fraction of
E (a float in [0, 1], e.g. ``0.5: [late_backbone]``); ``all`` names every part. A part stays
unfrozen once unfrozen. Parts never scheduled stay frozen.

When parts are unfrozen :meth:`on_epoch_start` returns True and the trainer rebuilds the optimizer,
keeping the moments of parameters that were already training. BatchNorms of still-frozen parts stay
in eval mode (the trainer keeps every frozen BatchNorm in eval mode). The unfrozen parts are saved
in checkpoints so a resumed run continues exactly.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Set

from techniques import register_technique
from techniques.parts import ALL, PartMap, set_trainable_parts, trainable_summary
from vinocr.engine.hooks import RunView, TrainerHooks, option
from vinocr.errors import ConfigError

logger = logging.getLogger(__name__)

KEY = "Technique.schedule"


def default_schedule(epochs: int, part_names: List[str]) -> Dict[int, List[str]]:
    head = ["head"] + (["aux_head"] if "aux_head" in part_names else [])
    out: Dict[int, List[str]] = {}
    for epoch, parts in ((0, head), (epochs // 4, ["neck"]), (epochs // 2, ["late_backbone"]),
                         ((3 * epochs) // 4, [ALL])):
        out.setdefault(epoch, []).extend(parts)
    return out


def _epoch_key(key: Any, epochs: int) -> int:
    """A schedule key as a 0-based epoch: ints are epochs, floats in [0, 1] fractions of E."""
    raw = key
    if isinstance(key, str):  # from `-o` overrides or JSON, keys arrive as strings
        try:
            key = int(key)
        except ValueError:
            try:
                key = float(key)
            except ValueError:
                raise ConfigError(f"{KEY}: key {raw!r} is neither an epoch nor a fraction of "
                                  "Train.epochs") from None
    if isinstance(key, bool) or not isinstance(key, (int, float)):
        raise ConfigError(f"{KEY}: key {raw!r} is neither an epoch nor a fraction of Train.epochs")
    if isinstance(key, int):
        if key < 0:
            raise ConfigError(f"{KEY}: epoch {key} is negative")
        return key
    if not math.isfinite(key) or not 0.0 <= key <= 1.0:
        raise ConfigError(f"{KEY}: fraction {raw!r} of Train.epochs must be in [0, 1] (use an "
                          "integer for an epoch number)")
    return int(math.floor(key * epochs))


@dataclass(frozen=True)
class GradualUnfreezeOptions:
    schedule: Optional[Mapping[Any, Any]] = option(None, doc="{epoch or fraction: parts}; default "
                                                   "head, neck at E/4, late backbone at E/2, "
                                                   "all at 3E/4")
    parts: Optional[Mapping[str, str]] = option(None, doc="{part: regex} replacing the default "
                                                "parts")


@register_technique("gradual_unfreeze")
class GradualUnfreeze(TrainerHooks):
    adapts_model = True
    Options = GradualUnfreezeOptions

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.partmap = PartMap.from_option(self.options.parts)
        schedule = self.options.schedule
        if schedule is not None:
            # Part names are checked now; epochs need Train.epochs, known in prepare_model.
            for parts_ in schedule.values():
                self.partmap.resolve(parts_, KEY)
        self.schedule: Dict[int, List[str]] = {}
        self.unfrozen: Set[str] = set()       # parts that should train (saved in checkpoints)
        self._applied: Optional[Set[str]] = None  # parts the model currently trains
        self.summary: Dict[str, Any] = {}

    def _resolve(self, epochs: int) -> Dict[int, List[str]]:
        if self.options.schedule is None:
            raw: Mapping[Any, Any] = default_schedule(epochs, self.partmap.names)
            key = f"{KEY} (default)"
        else:
            raw, key = self.options.schedule, KEY
        out: Dict[int, List[str]] = {}
        for k, parts in raw.items():
            epoch = _epoch_key(k, epochs)
            names = self.partmap.resolve(parts, key)
            out.setdefault(epoch, []).extend(n for n in names if n not in out.get(epoch, []))
        if 0 not in out:
            raise ConfigError(f"{KEY}: nothing is trainable at epoch 0; schedule at least one "
                              "part at 0")
        late = [e for e in out if e >= epochs]
        if late:
            logger.warning("%s: epoch %d is at or past Train.epochs (%d); those parts never "
                           "train", KEY, min(late), epochs)
        return dict(sorted(out.items()))

    def scheduled(self, epoch: int) -> Set[str]:
        """Parts the schedule has unfrozen by the start of ``epoch``."""
        return {p for e, parts in self.schedule.items() if e <= epoch for p in parts}

    def _apply(self, model: Any, parts: Set[str], epoch: int, prepare: bool = False
               ) -> bool:
        changed = set_trainable_parts(model, self.partmap, parts)
        new = sorted(parts - (self._applied or set()), key=self.partmap.names.index)
        self._applied = set(parts)
        self.summary = trainable_summary(model)
        logger.info("gradual_unfreeze: epoch %d: %s %s; %s", epoch,
                    "training" if prepare else "unfrozen", ", ".join(new) or "nothing new",
                    self.summary["summary"])
        return changed

    def prepare_model(self, model: Any, run: RunView) -> Any:
        self.schedule = self._resolve(int(run.epochs))
        never = [p for p in self.partmap.names if p not in self.scheduled(10 ** 9)]
        if never:
            logger.info("gradual_unfreeze: parts never unfrozen: %s", ", ".join(never))
        self.unfrozen = self.scheduled(0)
        self._apply(model, self.unfrozen, 0, prepare=True)
        return model

    def on_epoch_start(self, epoch: int, run: RunView) -> bool:
        target = self.unfrozen | self.scheduled(epoch)
        if target == self._applied:
            return False
        self.unfrozen = target
        # True exactly when some parameter's trainability changed (a restored state may name
        # parts without parameters, which needs no new optimizer).
        return self._apply(run.model, target, epoch)

    def state_dict(self) -> Dict[str, Any]:
        return {"unfrozen": sorted(self.unfrozen)}

    def set_state_dict(self, state: Dict[str, Any]) -> None:
        # Applied at the next on_epoch_start, which the trainer calls right after restoring hook
        # state (and rebuilds the optimizer before loading its state when it returns True).
        parts = state.get("unfrozen")
        if parts is None:
            return
        unknown = [p for p in parts if p not in self.partmap.names]
        if unknown:
            logger.warning("gradual_unfreeze: checkpoint names unknown parts %s; ignored",
                           ", ".join(unknown))
        self.unfrozen = {p for p in parts if p in self.partmap.names}

    def describe(self) -> Dict[str, Any]:
        return {"name": self.name,
                "schedule": {str(e): parts for e, parts in self.schedule.items()},
                "unfrozen": sorted(self.unfrozen, key=self.partmap.names.index), **self.summary}

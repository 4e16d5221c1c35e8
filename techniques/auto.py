"""``auto``: pick the adaptation technique from the amount of training data.

The fewer the samples, the fewer parameters should move. The choice is made in
:meth:`prepare_model`, when the training set is loaded and filtered (``len(trainer.train_set)``),
from ``table``: rows ``[limit, technique]`` in increasing ``limit``; the first row with
``samples < limit`` wins, a ``null`` limit (last row) takes everything else::

    table: [[10000, lora], [null, full]]

That default follows the measurements in ``docs/techniques.md`` (``tools/compare_techniques.py``,
80 steps of batch 16): LoRA had the best or tied-best sequence accuracy at 200, 1000 and 5000
samples, while discriminative_lr and gradual_unfreeze were never best. Above 10000 samples nothing
was measured; ``full`` is kept there from practice. A table in the config replaces it, e.g. the
earlier practice table ``[[500, lora], [2000, frozen_backbone], [5000, gradual_unfreeze],
[10000, discriminative_lr], [null, full]]``.

A technique that is not registered (``lora`` is an optional module) falls through to the next row,
with the reason logged. ``override: <name>`` skips the table. The chosen technique is built through
the registry (``+`` stacks work) with the options it accepts, and receives every hook call.
``describe()`` records the choice and why; the trainer writes it into ``report.json``.
"""
from __future__ import annotations

import logging
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

from techniques import register_technique
from vinocr.engine.hooks import HookList, LossOutput, TrainerHooks
from vinocr.errors import ConfigError

logger = logging.getLogger(__name__)

DEFAULT_TABLE: Tuple[Tuple[Optional[int], str], ...] = ((10000, "lora"), (None, "full"))
OWN_OPTIONS = ("table", "override")


class _DelegatedOptions:
    """``auto``'s accepted options: its own plus those of every other registered technique (it
    cannot know which one it will build until the data is loaded). Iterated lazily by
    ``build_technique``, after the built-ins and plugins are registered."""

    def __iter__(self) -> Iterator[str]:
        from techniques import _REGISTRY

        seen = set(OWN_OPTIONS)
        yield from OWN_OPTIONS
        for name, cls in list(_REGISTRY.items()):
            if name == "auto":
                continue
            for opt in getattr(cls, "OPTIONS", ()):
                if opt not in seen:
                    seen.add(opt)
                    yield opt

    def __contains__(self, item: object) -> bool:
        return any(item == opt for opt in self)


def _split(name: str) -> List[str]:
    return [n.strip() for n in name.split("+") if n.strip()]


def _check_table(table: Any) -> List[Tuple[Optional[int], str]]:
    if not isinstance(table, (list, tuple)) or not table:
        raise ConfigError(f"Technique.table: expected a list of [limit, technique] rows, got "
                          f"{table!r}")
    rows: List[Tuple[Optional[int], str]] = []
    for i, row in enumerate(table, 1):
        if not isinstance(row, (list, tuple)) or len(row) != 2:
            raise ConfigError(f"Technique.table: row {i} must be [limit, technique], got {row!r}")
        limit, name = row
        if isinstance(limit, float) and limit.is_integer():
            limit = int(limit)
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)
                                  or limit < 1):
            raise ConfigError(f"Technique.table: row {i} limit must be a whole number >= 1 or "
                              f"null, got {row[0]!r}")
        if not isinstance(name, str) or not _split(name):
            raise ConfigError(f"Technique.table: row {i} technique must be a name, got {name!r}")
        if "auto" in _split(name):
            raise ConfigError(f"Technique.table: row {i} cannot choose auto itself")
        if rows and rows[-1][0] is None:
            raise ConfigError(f"Technique.table: row {i} follows the null (catch-all) row "
                              f"{i - 1}; the null row must be last")
        if limit is not None and rows and limit <= rows[-1][0]:
            raise ConfigError(f"Technique.table: row {i} limit {limit} is not above row {i - 1}'s "
                              f"{rows[-1][0]}; limits must increase")
        rows.append((limit, name.strip()))
    return rows


def choose(n_samples: int, table: Sequence[Tuple[Optional[int], str]],
           available: Sequence[str]) -> Tuple[str, str]:
    """``(technique, reason)`` for ``n_samples`` training samples; unregistered techniques fall
    through to the next row (the reason says so)."""
    skipped: List[str] = []
    for i, (limit, name) in enumerate(table, 1):
        if limit is not None and n_samples >= limit:
            continue
        missing = [n for n in _split(name) if n not in available]
        if missing:
            skipped.append(f"{missing[0]} (row {i}) is not registered")
            logger.warning("auto: %d training samples select %s (table row %d), but %s is not "
                           "a registered technique; trying the next row", n_samples, name, i,
                           missing[0])
            continue
        if limit is not None:
            base = f"{n_samples} training samples < {limit}"
        elif i > 1 and table[i - 2][0] is not None and not skipped:
            base = f"{n_samples} training samples ≥ {table[i - 2][0]}"
        else:
            base = f"{n_samples} training samples"
        row = f"[{'null' if limit is None else limit}, {name}]"
        fell = f"; {', '.join(skipped)}" if skipped else ""
        reason = f"{base} → {name} (table row {i}: {row}{fell})"
        return name, reason
    what = "; ".join(skipped) if skipped else "no row matches"
    raise ConfigError(f"Technique.table: no usable row for {n_samples} training samples ({what}); "
                      "end the table with [null, <technique>]")


@register_technique("auto")
class Auto(TrainerHooks):
    OPTIONS = _DelegatedOptions()

    def __init__(self, table: Optional[Sequence[Any]] = None, override: Optional[str] = None,
                 **options: Any) -> None:
        self.table = _check_table(DEFAULT_TABLE if table is None else table)
        if override is not None and (not isinstance(override, str) or not _split(override)
                                     or "auto" in _split(override)):
            raise ConfigError(f"Technique.override: expected a technique name other than auto, "
                              f"got {override!r}")
        self.override = override.strip() if override is not None else None
        self.options = options
        self.chosen: Optional[str] = None
        self.reason = "not chosen yet (chosen when the training data is loaded)"
        self.n_samples: Optional[int] = None
        self.inner: TrainerHooks = TrainerHooks()
        self._pending_state: Optional[Dict[str, Any]] = None

    # ------------------------------------------------------------------ choice
    def _build(self, name: str) -> HookList:
        from techniques import _REGISTRY, build_technique

        accepted = {opt for n in _split(name) for opt in getattr(_REGISTRY[n], "OPTIONS", ())}
        mine = {k: v for k, v in self.options.items() if k in accepted}
        unused = sorted(set(self.options) - accepted)
        if unused:
            # Options of techniques the table did not pick (e.g. lr_mults when frozen_backbone
            # was chosen) are expected with auto; they are only reported.
            logger.info("auto: options not used by %s: %s", name, ", ".join(unused))
        return build_technique({"name": name, **mine})

    def prepare_model(self, model: Any, trainer: Any) -> Any:
        from techniques import available_techniques

        available = available_techniques()
        self.n_samples = len(trainer.train_set)
        if self.override is not None:
            missing = [n for n in _split(self.override) if n not in available]
            if missing:
                raise ConfigError(f"Technique.override: unknown technique {missing[0]!r}; valid: "
                                  f"{', '.join(n for n in available if n != 'auto')}")
            table_pick, _ = choose(self.n_samples, self.table, available)
            self.chosen = self.override
            self.reason = (f"Technique.override: {self.override} ({self.n_samples} training "
                           f"samples; the table would pick {table_pick})")
        else:
            self.chosen, self.reason = choose(self.n_samples, self.table, available)
        logger.info("auto: %s", self.reason)
        self.inner = self._build(self.chosen)
        model = self.inner.prepare_model(model, trainer)
        if self._pending_state is not None:
            self.set_state_dict(self._pending_state)
        return model

    # ------------------------------------------------------------------ delegation
    def param_groups(self, model: Any, trainer: Any) -> Optional[List[Dict[str, Any]]]:
        return self.inner.param_groups(model, trainer)

    def on_epoch_start(self, epoch: int, trainer: Any) -> bool:
        return self.inner.on_epoch_start(epoch, trainer)

    def train_mode(self, model: Any, trainer: Any) -> None:
        self.inner.train_mode(model, trainer)

    def loss(self, out: LossOutput, logits: Any, batch: Dict[str, Any], trainer: Any
             ) -> LossOutput:
        return self.inner.loss(out, logits, batch, trainer)

    def on_epoch_end(self, epoch: int, metrics: Dict[str, float], trainer: Any) -> None:
        self.inner.on_epoch_end(epoch, metrics, trainer)

    def finalize(self, model: Any, trainer: Any) -> Any:
        return self.inner.finalize(model, trainer)

    def state_dict(self) -> Dict[str, Any]:
        return {"chosen": self.chosen, "inner": self.inner.state_dict()}

    def set_state_dict(self, state: Dict[str, Any]) -> None:
        if self.chosen is None:
            # Before the choice (not the trainer's order, but harmless): apply after it.
            self._pending_state = dict(state)
            return
        self._pending_state = None
        saved = state.get("chosen")
        if saved is not None and saved != self.chosen:
            logger.warning("auto: the checkpoint was trained with %s but %s was chosen now (%s); "
                           "its technique state is not restored; set Technique.override: %s to "
                           "continue as before", saved, self.chosen, self.reason, saved)
            return
        self.inner.set_state_dict(state.get("inner", {}))

    def describe(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {"name": self.name, "chosen": self.chosen, "reason": self.reason,
                               "n_samples": self.n_samples}
        if isinstance(self.inner, HookList):
            inner = [h.describe() for h in self.inner.hooks]
            out["technique"] = inner[0] if len(inner) == 1 else inner
        return out

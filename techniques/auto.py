"""``auto``: pick the adaptation technique from the run: its training samples and its budget.

The choice is made in :meth:`prepare_model`, when the training set is loaded and filtered
(``run.train_size``) and the run's length is known (``run.planned_steps``: epochs x
batches, capped by ``Train.max_steps``). ``table`` holds the rules; the first row whose every
condition holds wins, and the last row has none::

    table:
      - {steps_below: 110, technique: lora}     # short budgets: few parameters move
      - {technique: full}                       # otherwise everything trains

A row may set ``samples_below`` and ``steps_below``; ``[limit, technique]`` is short for
``{samples_below: limit, technique: ...}`` (``null``: no condition), so the earlier practice table
reads ``[[500, lora], [2000, frozen_backbone], [5000, gradual_unfreeze], [10000,
discriminative_lr], [null, full]]``. A row that an earlier row already covers is an error.

The default follows the measurements in ``docs/techniques.md`` (``tools/compare_techniques.py``,
batch 16, one hard validation set of 300 crops, 1000 training crops): LoRA beat ``full`` at 80
optimizer steps (0.810 against 0.770 sequence accuracy), ``full`` beat LoRA at 140, 200 and 400
(by 3.7, 4.0 and 3.3 points; each split significant by McNemar's test at p < 0.05). The crossover
lies between 80 and 140 steps; 110 is where the two measured margins interpolate to zero. The
budget decided the ranking, not the sample count, so the default has no sample condition.

A technique that is not registered (``lora`` is an optional module) falls through to the next row,
with the reason logged. ``override: <name>`` skips the table. The chosen technique is built through
the registry (``+`` stacks work) with the options it accepts, and receives every hook call.
``describe()`` records the choice and why; the trainer writes it into ``report.json``.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

from techniques import register_technique
from vinocr.engine.hooks import HookList, LossOutput, RunView, TrainerHooks, option
from vinocr.errors import ConfigError

logger = logging.getLogger(__name__)

DEFAULT_TABLE: Tuple[Any, ...] = ({"steps_below": 110, "technique": "lora"},
                                  {"technique": "full"})
CONDITIONS = ("samples_below", "steps_below")


@dataclass(frozen=True)
class Rule:
    """One table row: ``technique`` applies when every condition it sets holds."""

    technique: str
    samples_below: Optional[int] = None
    steps_below: Optional[int] = None

    def failed_condition(self, n_samples: int, steps: int) -> Optional[str]:
        """The first condition that does not hold, as text; None when the row applies."""
        if self.samples_below is not None and n_samples >= self.samples_below:
            return f"samples < {self.samples_below}"
        if self.steps_below is not None and steps >= self.steps_below:
            return f"steps < {self.steps_below}"
        return None

    def covers(self, other: "Rule") -> bool:
        """True when every case ``other`` applies to is taken by this row already."""
        return all(mine is None or (theirs is not None and theirs <= mine)
                   for mine, theirs in ((self.samples_below, other.samples_below),
                                        (self.steps_below, other.steps_below)))

    def text(self) -> str:
        conds = [f"{key.replace('_below', '')} < {value}" for key in CONDITIONS
                 if (value := getattr(self, key)) is not None]
        return f"{' and '.join(conds) or 'otherwise'} → {self.technique}"


def _split(name: str) -> List[str]:
    return [n.strip() for n in name.split("+") if n.strip()]


def _whole(value: Any, where: str) -> Optional[int]:
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{where} must be a whole number >= 1 or null, got {value!r}")
    return value


def _rule(row: Any, i: int) -> Rule:
    where = f"Technique.table: row {i}"
    if isinstance(row, dict):
        unknown = sorted(set(row) - {"technique", *CONDITIONS})
        if unknown:
            raise ConfigError(f"{where}: unknown key {unknown[0]!r}; valid: technique, "
                              f"{', '.join(CONDITIONS)}")
        name = row.get("technique")
        conds = {key: _whole(row.get(key), f"{where} {key}") for key in CONDITIONS}
    elif isinstance(row, (list, tuple)) and len(row) == 2:
        # The short form [limit, technique]: samples below limit (null: any).
        name = row[1]
        conds = {"samples_below": _whole(row[0], f"{where} limit")}
    else:
        raise ConfigError(f"{where} must be {{technique: NAME, samples_below: N, steps_below: "
                          f"N}} or [limit, technique], got {row!r}")
    if not isinstance(name, str) or not _split(name):
        raise ConfigError(f"{where} technique must be a name, got {name!r}")
    if "auto" in _split(name):
        raise ConfigError(f"{where} cannot choose auto itself")
    return Rule(name.strip(), **conds)


def _check_table(table: Any) -> List[Rule]:
    if not isinstance(table, (list, tuple)) or not table:
        raise ConfigError(f"Technique.table: expected a list of rows, got {table!r}")
    rules: List[Rule] = []
    for i, row in enumerate(table, 1):
        rule = _rule(row, i)
        for j, earlier in enumerate(rules, 1):
            if earlier.covers(rule):
                raise ConfigError(f"Technique.table: row {i} ({rule.text()}) can never be "
                                  f"chosen: row {j} ({earlier.text()}) already takes all its "
                                  "cases")
        rules.append(rule)
    if rules[-1].samples_below is not None or rules[-1].steps_below is not None:
        raise ConfigError(f"Technique.table: the last row ({rules[-1].text()}) must have no "
                          "condition, e.g. {technique: full} or [null, full], so every run "
                          "gets a technique")
    return rules


def choose(n_samples: int, steps: int, table: Sequence[Rule],
           available: Sequence[str]) -> Tuple[str, str]:
    """``(technique, reason)`` for a run of ``n_samples`` training samples and ``steps`` planned
    optimizer steps: the first row whose conditions hold; a row naming an unregistered technique
    falls through to the next (the reason says so)."""
    notes: List[str] = []
    for i, rule in enumerate(table, 1):
        failed = rule.failed_condition(n_samples, steps)
        if failed is not None:
            notes.append(f"row {i} needs {failed}")
            continue
        missing = [n for n in _split(rule.technique) if n not in available]
        if missing:
            notes.append(f"{missing[0]} (row {i}) is not registered")
            logger.warning("auto: table row %d (%s) applies, but %s is not a registered "
                           "technique; trying the next row", i, rule.text(), missing[0])
            continue
        why = f"; {', '.join(notes)}" if notes else ""
        reason = (f"{n_samples} training samples, {steps} planned optimizer steps → "
                  f"{rule.technique} (table row {i}: {rule.text()}{why})")
        return rule.technique, reason
    raise ConfigError(f"Technique.table: no usable row for {n_samples} training samples and "
                      f"{steps} planned steps ({'; '.join(notes)})")


@dataclass(frozen=True)
class AutoOptions:
    table: Tuple[Any, ...] = option(DEFAULT_TABLE, doc="rows {technique, samples_below, "
                                    "steps_below} or [limit, technique]; the first that applies "
                                    "wins")
    override: Optional[str] = option(None, doc="a technique to use instead of the table's pick")


@register_technique("auto")
class Auto(TrainerHooks):
    """Chooses the adaptation technique from the data and the budget; the options of every other
    technique are accepted too and handed to the chosen one."""

    adapts_model = True
    Options = AutoOptions

    def __init__(self, **options: Any) -> None:
        own = set(super().option_keys())
        super().__init__(**{k: v for k, v in options.items() if k in own})
        self.delegated = {k: v for k, v in options.items() if k not in own}
        unknown = sorted(set(self.delegated) - set(self.option_keys()))
        if unknown:
            raise ConfigError(f"Technique.{unknown[0]}: not an option of auto or of any "
                              "technique it can choose")
        self.table = _check_table(self.options.table)
        override = self.options.override
        if override is not None and (not _split(override) or "auto" in _split(override)):
            raise ConfigError(f"Technique.override: expected a technique name other than auto, "
                              f"got {override!r}")
        self.override = override.strip() if override is not None else None
        self.chosen: Optional[str] = None
        self.reason = "not chosen yet (chosen when the training data is loaded)"
        self.n_samples: Optional[int] = None
        self.planned_steps: Optional[int] = None
        self.inner: TrainerHooks = TrainerHooks()
        self._pending_state: Optional[Dict[str, Any]] = None

    @classmethod
    def option_keys(cls) -> List[str]:
        """Its own options plus those of every other registered technique: which one it builds
        is known only once the data is loaded."""
        from techniques import _REGISTRY

        keys = list(super().option_keys())
        for name, other in list(_REGISTRY.items()):
            if other is not cls:
                keys.extend(k for k in other.option_keys() if k not in keys)
        return keys

    def options_report(self) -> Dict[str, Any]:
        out = {**super().options_report(), **self.delegated}
        if isinstance(self.inner, HookList):
            out["chosen"] = self.inner.options_report()
        return out

    # ------------------------------------------------------------------ choice
    def _build(self, name: str) -> HookList:
        from techniques import _REGISTRY, build_technique

        accepted = {opt for n in _split(name) for opt in _REGISTRY[n].option_keys()}
        mine = {k: v for k, v in self.delegated.items() if k in accepted}
        unused = sorted(set(self.delegated) - accepted)
        if unused:
            # Options of techniques the table did not pick (e.g. lr_mults when frozen_backbone
            # was chosen) are expected with auto; they are only reported.
            logger.info("auto: options not used by %s: %s", name, ", ".join(unused))
        return build_technique({"name": name, **mine})

    def prepare_model(self, model: Any, run: RunView) -> Any:
        from techniques import available_techniques

        available = available_techniques()
        self.n_samples = int(run.train_size)
        self.planned_steps = int(run.planned_steps)
        if self.override is not None:
            missing = [n for n in _split(self.override) if n not in available]
            if missing:
                raise ConfigError(f"Technique.override: unknown technique {missing[0]!r}; valid: "
                                  f"{', '.join(n for n in available if n != 'auto')}")
            table_pick, _ = choose(self.n_samples, self.planned_steps, self.table, available)
            self.chosen = self.override
            self.reason = (f"Technique.override: {self.override} ({self.n_samples} training "
                           f"samples, {self.planned_steps} planned optimizer steps; the table "
                           f"would pick {table_pick})")
        else:
            self.chosen, self.reason = choose(self.n_samples, self.planned_steps, self.table,
                                              available)
        logger.info("auto: %s", self.reason)
        self.inner = self._build(self.chosen)
        model = self.inner.prepare_model(model, run)
        if self._pending_state is not None:
            self.set_state_dict(self._pending_state)
        return model

    # ------------------------------------------------------------------ delegation
    def param_groups(self, model: Any, run: RunView) -> Optional[List[Dict[str, Any]]]:
        return self.inner.param_groups(model, run)

    def on_epoch_start(self, epoch: int, run: RunView) -> bool:
        return self.inner.on_epoch_start(epoch, run)

    def train_mode(self, model: Any, run: RunView) -> None:
        self.inner.train_mode(model, run)

    def loss(self, out: LossOutput, logits: Any, batch: Dict[str, Any], run: RunView
             ) -> LossOutput:
        return self.inner.loss(out, logits, batch, run)

    def on_epoch_end(self, epoch: int, metrics: Dict[str, float], run: RunView) -> None:
        self.inner.on_epoch_end(epoch, metrics, run)

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
                               "n_samples": self.n_samples, "planned_steps": self.planned_steps}
        if isinstance(self.inner, HookList):
            inner = [h.describe() for h in self.inner.hooks]
            out["technique"] = inner[0] if len(inner) == 1 else inner
        return out

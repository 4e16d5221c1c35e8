"""Learning-rate schedules of the ``Scheduler`` config section, with their step unit.

Config section (a plain dict; every key has a default, see :data:`SCHEDULER_DEFAULTS`)::

    Scheduler: {name: cosine, warmup_epochs: 1.0, min_lr: 1.0e-6, ...}

:func:`build_scheduler` returns a :class:`Schedule`: the Paddle ``LRScheduler`` to hand to the
optimizer (:func:`vinocr.engine.optim.build_optimizer`) plus whether it steps per iteration or
per epoch.
"""
from __future__ import annotations

import copy
import logging
import math
from typing import Any, Dict, Mapping, Optional, Tuple

import numpy as np
from paddle.optimizer.lr import LRScheduler, PiecewiseDecay, ReduceOnPlateau, StepDecay

from vinocr.engine.config_section import ConfigSection
from vinocr.errors import ConfigError

logger = logging.getLogger(__name__)

__all__ = [
    "SCHEDULER_DEFAULTS", "SCHEDULERS", "Schedule", "WarmupCosineLR", "WarmupCosineRestartsLR",
    "WarmupConstantLR", "build_scheduler", "to_plain",
]

SCHEDULERS = ("cosine", "cosine_restarts", "step", "piecewise", "plateau", "constant")

#: Defaults of the ``Scheduler`` section.
SCHEDULER_DEFAULTS: Dict[str, Any] = {
    "name": "cosine",
    "warmup_epochs": 1.0,
    "min_lr": 1.0e-6,
    "T_0": 5,
    "T_mult": 2,
    "step_size": 10,
    "gamma": 0.1,
    "milestones": [10, 20],
    "values": [5.0e-4, 5.0e-5, 5.0e-6],
    "factor": 0.5,
    "patience": 2,
    "mode": "max",
}


def to_plain(value: Any) -> Any:
    """Numbers from Paddle/numpy scalars and 1-element tensors as Python int/float."""
    if hasattr(value, "numpy") and not isinstance(value, np.ndarray):
        value = value.numpy()
    if isinstance(value, np.ndarray):
        value = value.reshape(-1)[0] if value.size == 1 else value.tolist()
    if isinstance(value, np.generic):
        value = value.item()
    return value


def _warmup_lr(base_lr: float, it: int, warmup: int) -> float:
    # (it + 1) / (warmup + 1): the first step already moves (a 0 LR would waste it) and the ramp
    # reaches base_lr exactly at iteration ``warmup``, where the main schedule starts.
    return base_lr * (it + 1) / (warmup + 1)


def _cosine(base_lr: float, min_lr: float, pos: int, length: int) -> float:
    """Cosine from base_lr at pos 0 to exactly min_lr at pos ``length - 1``."""
    progress = min(1.0, pos / max(1, length - 1))
    return min_lr + (base_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


class WarmupCosineLR(LRScheduler):
    """Per iteration: linear warmup over ``warmup_iters``, then cosine to ``min_lr`` at iteration
    ``total_iters - 1`` (held there after)."""

    def __init__(self, base_lr: float, total_iters: int, warmup_iters: int, min_lr: float) -> None:
        self.total_iters, self.warmup_iters, self.min_lr = total_iters, warmup_iters, min_lr
        super().__init__(base_lr)

    def get_lr(self) -> float:
        it = self.last_epoch
        if it < self.warmup_iters:
            return _warmup_lr(self.base_lr, it, self.warmup_iters)
        return _cosine(self.base_lr, self.min_lr, it - self.warmup_iters,
                       self.total_iters - self.warmup_iters)


class WarmupCosineRestartsLR(LRScheduler):
    """Per iteration SGDR: cycles of ``cycle_iters``, ``cycle_iters * t_mult``, ... counted from
    iteration 0; each cycle runs a cosine from ``base_lr`` to ``min_lr`` at its last iteration and
    the LR jumps back to ``base_lr`` at the next boundary. The warmup occupies the start of the
    first cycle."""

    def __init__(self, base_lr: float, cycle_iters: int, t_mult: float, warmup_iters: int,
                 min_lr: float) -> None:
        self.cycle_iters, self.t_mult = cycle_iters, t_mult
        self.warmup_iters, self.min_lr = warmup_iters, min_lr
        super().__init__(base_lr)

    def cycle(self, it: int) -> Tuple[int, int, int]:
        """(cycle index, first iteration, length) of the cycle holding iteration ``it``."""
        k, start, length = 0, 0, self.cycle_iters
        while it >= start + length:
            start += length
            k += 1
            length = max(1, int(round(self.cycle_iters * self.t_mult ** k)))
        return k, start, length

    def get_lr(self) -> float:
        it = self.last_epoch
        if it < self.warmup_iters:
            return _warmup_lr(self.base_lr, it, self.warmup_iters)
        k, start, length = self.cycle(it)
        if k == 0:
            start, length = self.warmup_iters, length - self.warmup_iters
        return _cosine(self.base_lr, self.min_lr, it - start, length)


class WarmupConstantLR(LRScheduler):
    """Per iteration: linear warmup over ``warmup_iters``, then ``base_lr``."""

    def __init__(self, base_lr: float, warmup_iters: int) -> None:
        self.warmup_iters = warmup_iters
        super().__init__(base_lr)

    def get_lr(self) -> float:
        if self.last_epoch < self.warmup_iters:
            return _warmup_lr(self.base_lr, self.last_epoch, self.warmup_iters)
        return self.base_lr


class Schedule:
    """A learning-rate schedule with its step unit.

    ``scheduler`` is the Paddle ``LRScheduler`` to hand to the optimizer (None for a constant LR
    without warmup; then the optimizer gets the float). Call :meth:`step_iter` after every
    optimizer step and :meth:`step_epoch` at each epoch end; each is a no-op for schedules stepped
    in the other unit. Paddle's ``last_epoch`` counts those steps, so after n calls the LR is the
    one for iteration (or epoch) n.
    """

    def __init__(self, name: str, unit: str, scheduler: Optional[LRScheduler],
                 constant_lr: Optional[float] = None) -> None:
        if unit not in ("iter", "epoch", "none"):
            raise ValueError(f"unknown schedule unit {unit!r}")
        self.name, self.unit, self.scheduler = name, unit, scheduler
        self._constant = constant_lr

    @property
    def per_iteration(self) -> bool:
        return self.unit == "iter"

    def step_iter(self) -> None:
        if self.unit == "iter":
            self.scheduler.step()

    def step_epoch(self, metric: Optional[float] = None) -> None:
        if self.unit != "epoch":
            return
        if isinstance(self.scheduler, ReduceOnPlateau):
            # Epochs without a validation metric do not count towards the patience.
            if metric is None:
                logger.debug("plateau schedule: no metric this epoch, not stepped")
                return
            self.scheduler.step(float(metric))
        else:
            self.scheduler.step()

    def last_lr(self) -> float:
        if self.scheduler is None:
            return float(self._constant)
        return float(to_plain(self.scheduler.last_lr))

    def state_dict(self) -> Dict[str, Any]:
        state = {} if self.scheduler is None else \
            {k: to_plain(v) for k, v in self.scheduler.state_dict().items()}
        return {"name": self.name, "unit": self.unit, "state": state}

    def set_state_dict(self, state: Mapping[str, Any]) -> None:
        if state.get("name") != self.name:
            logger.warning("schedule state is for %r but the schedule is %r; not restored, the "
                           "schedule starts from the beginning", state.get("name"), self.name)
            return
        if self.scheduler is not None:
            self.scheduler.set_state_dict(copy.deepcopy(dict(state.get("state", {}))))

    def __repr__(self) -> str:
        return f"Schedule({self.name!r}, unit={self.unit!r}, lr={self.last_lr():.4g})"


def _warmup_iters(sec: ConfigSection, steps_per_epoch: int, span: int, what: str) -> int:
    warmup = int(round(sec.number("warmup_epochs", minimum=0.0) * steps_per_epoch))
    if warmup >= span > 0:
        shortened = span // 2
        logger.warning("Scheduler.warmup_epochs: %d warmup iterations do not fit the %d of %s; "
                       "warmup shortened to %d", warmup, span, what, shortened)
        warmup = shortened
    return warmup


def build_scheduler(cfg: Mapping[str, Any], base_lr: float, steps_per_epoch: int,
                    epochs: int, total_steps: Optional[int] = None) -> Schedule:
    """The :class:`Schedule` of the ``Scheduler`` section for a run of ``epochs`` epochs of
    ``steps_per_epoch`` optimizer steps. ``base_lr`` is ``Optimizer.lr`` (piecewise uses its own
    absolute ``values``). ``total_steps`` is the run's real length when ``Train.max_steps``
    ends it early: cosine and warmup-constant schedules then span it, so a step-budgeted run
    still anneals to ``min_lr`` (default ``epochs * steps_per_epoch``)."""
    if isinstance(steps_per_epoch, bool) or not isinstance(steps_per_epoch, int) \
            or steps_per_epoch < 1:
        raise ValueError(f"steps_per_epoch must be an integer >= 1, got {steps_per_epoch!r}")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be an integer >= 1, got {epochs!r}")
    if isinstance(base_lr, bool) or not isinstance(base_lr, (int, float)) or not base_lr > 0:
        raise ConfigError(f"Optimizer.lr: must be a number > 0, got {base_lr!r}")
    base_lr = float(base_lr)
    sec = ConfigSection(cfg, "Scheduler", SCHEDULER_DEFAULTS)
    name = sec.choice("name", SCHEDULERS, "scheduler")
    total = steps_per_epoch * epochs
    if total_steps is not None:
        if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps < 1:
            raise ValueError(f"total_steps must be an integer >= 1, got {total_steps!r}")
        total = min(total, total_steps)
    if name in ("step", "piecewise", "plateau") and sec.raw("warmup_epochs"):
        logger.info("Scheduler.warmup_epochs is not used by the %s schedule", name)

    if name in ("cosine", "cosine_restarts"):
        min_lr = sec.number("min_lr", minimum=0.0)
        if min_lr > base_lr:
            raise ConfigError(f"Scheduler.min_lr: {min_lr:g} is above Optimizer.lr {base_lr:g}")
    if name == "cosine":
        warmup = _warmup_iters(sec, steps_per_epoch, total, "the run")
        sched: Optional[LRScheduler] = WarmupCosineLR(base_lr, total, warmup, min_lr)
        return Schedule(name, "iter", sched)
    if name == "cosine_restarts":
        t0 = sec.number("T_0", above=0.0)
        t_mult = sec.number("T_mult", minimum=1.0)
        cycle = max(1, int(round(t0 * steps_per_epoch)))
        warmup = _warmup_iters(sec, steps_per_epoch, cycle, "the first cycle (T_0)")
        return Schedule(name, "iter", WarmupCosineRestartsLR(base_lr, cycle, t_mult, warmup,
                                                             min_lr))
    if name == "constant":
        warmup = _warmup_iters(sec, steps_per_epoch, total, "the run")
        if warmup == 0:
            return Schedule(name, "none", None, constant_lr=base_lr)
        return Schedule(name, "iter", WarmupConstantLR(base_lr, warmup))
    if name == "step":
        step_size = sec.integer("step_size", minimum=1)
        gamma = sec.number("gamma", above=0.0)
        return Schedule(name, "epoch", StepDecay(base_lr, step_size=step_size, gamma=gamma))
    if name == "piecewise":
        milestones = sec.numbers("milestones")
        values = sec.numbers("values")
        if any(not m.is_integer() or m < 1 for m in milestones) or \
                any(b <= a for a, b in zip(milestones, milestones[1:])):
            raise ConfigError(f"Scheduler.milestones: expected increasing whole epochs >= 1, got "
                              f"{sec.raw('milestones')!r}")
        if len(values) != len(milestones) + 1:
            raise ConfigError(f"Scheduler.values: expected {len(milestones) + 1} values (one more "
                              f"than Scheduler.milestones), got {len(values)}")
        if any(v <= 0 for v in values):
            raise ConfigError(f"Scheduler.values: learning rates must be > 0, got {values!r}")
        return Schedule(name, "epoch", PiecewiseDecay([int(m) for m in milestones], values))
    # plateau
    factor = sec.number("factor", above=0.0, below=1.0)
    patience = sec.integer("patience", minimum=0)
    min_lr = sec.number("min_lr", minimum=0.0)
    mode = sec.choice("mode", ("max", "min"), "mode")
    return Schedule(name, "epoch", ReduceOnPlateau(base_lr, mode=mode, factor=factor,
                                                   patience=patience, min_lr=min_lr))

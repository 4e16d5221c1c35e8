"""Optimisers, learning-rate schedules, weight EMA and name-keyed optimizer state.

Config sections (plain dicts; every key has a default, see :data:`OPTIMIZER_DEFAULTS` and
:data:`SCHEDULER_DEFAULTS`)::

    Optimizer: {name: adamw, lr: 5.0e-4, weight_decay: 1.0e-4, betas: [0.9, 0.999], eps: 1.0e-8,
                momentum: 0.9, nesterov: false, clip_grad_norm: 5.0,
                ema: {enabled: false, decay: 0.999, warmup_steps: 0}}
    Scheduler: {name: cosine, warmup_epochs: 1.0, min_lr: 1.0e-6, ...}

How the pieces map onto Paddle 3.3 (verified against its source and by tests/test_optim.py):

* Parameter groups are Paddle's list-of-dict ``parameters``. A group's ``learning_rate`` entry is
  a *multiplier*: Paddle stores it in ``param.optimize_attr['learning_rate']`` and
  ``Optimizer._create_param_lr`` returns ``global_lr * multiplier`` (the global LR itself, with
  no multiply, when the multiplier is 1.0). So the effective LR of a group is the scheduler's LR
  times its ``lr_mult``.
* Weight decay: AdamW decays decoupled (``param *= 1 - lr * coeff``, coeff per group); Adam and SGD
  get L2 regularisation through the per-parameter ``regularizer`` Paddle sets from the group's
  ``weight_decay`` (Momentum fuses L2 into its kernel). Every group is split into a decayed and a
  non-decayed part, so norms, biases and learnable affine scalars never decay.
* Paddle applies a group's ``grad_clip`` to that group alone, so with several groups a
  ``ClipGradByGlobalNorm`` there would clip each group by its own norm. The optimizers built here
  clip all gradients by one global norm in ``step()`` before Paddle's update instead.
* Paddle keys optimizer state by internal tensor names (``linear_0.w_0_moment1_0``) that change
  from one model instance (or optimizer) to the next; :func:`optimizer_state_to_named` and
  :func:`optimizer_state_from_named` key it by structured parameter names instead.
"""
from __future__ import annotations

import contextlib
import copy
import logging
import math
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Set, Tuple, Union

import numpy as np
import paddle
from paddle.optimizer.lr import LRScheduler, PiecewiseDecay, ReduceOnPlateau, StepDecay

from vinocr.errors import ConfigError

logger = logging.getLogger(__name__)

__all__ = [
    "OPTIMIZER_DEFAULTS", "SCHEDULER_DEFAULTS", "OPTIMIZERS", "SCHEDULERS", "ModelEMA", "Schedule",
    "WarmupCosineLR", "WarmupCosineRestartsLR", "WarmupConstantLR", "build_ema",
    "build_optimizer", "build_scheduler", "no_decay_param_names", "optimizer_state_from_named",
    "optimizer_state_to_named",
]

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULERS = ("cosine", "cosine_restarts", "step", "piecewise", "plateau", "constant")

#: Defaults of the ``Optimizer`` section (the config schema may reuse them).
OPTIMIZER_DEFAULTS: Dict[str, Any] = {
    "name": "adamw",
    "lr": 5.0e-4,
    "weight_decay": 1.0e-4,
    "betas": [0.9, 0.999],
    "eps": 1.0e-8,
    "momentum": 0.9,
    "nesterov": False,
    "clip_grad_norm": 5.0,
    "ema": {"enabled": False, "decay": 0.999, "warmup_steps": 0},
}

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

#: Separator between a structured parameter name and the accumulator in named optimizer state
#: (``head.fc.weight/moment1``); structured names never contain it.
STATE_SEP = "/"
#: Prefix of the LR scheduler entries in named optimizer state (``LR_Scheduler/last_epoch``).
LR_STATE_PREFIX = "LR_Scheduler"
_MASTER_WEIGHT = "master_weight"


# --------------------------------------------------------------------------------------------
# Config reading

class _Section:
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


# --------------------------------------------------------------------------------------------
# Parameters and groups

def _is_no_decay(param: paddle.Tensor) -> bool:
    # Biases, BatchNorm/LayerNorm scales and shifts and the learnable-affine scalars are all
    # 1-D (or scalars); decaying them pulls normalisation scales and offsets towards zero, which
    # hurts rather than regularises.
    return len(param.shape) <= 1


def no_decay_param_names(model: paddle.nn.Layer) -> Set[str]:
    """Structured names (as in ``model.named_parameters()``) of parameters that never get weight
    decay: every 1-D parameter, i.e. biases, BatchNorm/LayerNorm weights and biases and the
    learnable-affine ``lab.scale`` / ``lab.bias`` scalars."""
    return {name for name, param in model.named_parameters() if _is_no_decay(param)}


def _param_names(model: paddle.nn.Layer) -> Dict[int, str]:
    """id(param) -> structured name (first name wins for shared parameters)."""
    names: Dict[int, str] = {}
    for name, param in model.named_parameters():
        names.setdefault(id(param), name)
    return names


def _normalise_groups(model: paddle.nn.Layer, param_groups: Optional[List[dict]]
                      ) -> List[Dict[str, Any]]:
    """Validated groups ``{"name", "params", "lr_mult", "weight_decay"}`` holding only trainable
    parameters (frozen ones are dropped: handing them to Paddle would give them accumulators and
    regularizers for nothing)."""
    if param_groups is None:
        return [{"name": "all", "params": [p for p in model.parameters() if not p.stop_gradient],
                 "lr_mult": 1.0, "weight_decay": None}]
    names = _param_names(model)
    seen: Dict[int, str] = {}
    out = []
    for i, group in enumerate(param_groups):
        if not isinstance(group, Mapping) or "params" not in group:
            raise ValueError(f"param_groups[{i}]: expected a dict with 'params'")
        gname = str(group.get("name", f"group{i}"))
        mult = group.get("lr_mult", 1.0)
        if isinstance(mult, bool) or not isinstance(mult, (int, float)) or not mult >= 0 \
                or not math.isfinite(mult):
            raise ValueError(f"param group {gname!r}: lr_mult must be a number >= 0, got {mult!r}")
        decay = group.get("weight_decay")
        if decay is not None and (isinstance(decay, bool) or not isinstance(decay, (int, float))
                                  or not decay >= 0):
            raise ValueError(f"param group {gname!r}: weight_decay must be a number >= 0 or None, "
                             f"got {decay!r}")
        params = []
        for p in group["params"]:
            if id(p) in seen:
                raise ValueError(f"parameter {names.get(id(p), p.name)} is in param groups "
                                 f"{seen[id(p)]!r} and {gname!r}")
            seen[id(p)] = gname
            if not p.stop_gradient:
                params.append(p)
        out.append({"name": gname, "params": params, "lr_mult": float(mult),
                    "weight_decay": None if decay is None else float(decay)})
    left_out = [n for n, p in model.named_parameters()
                if not p.stop_gradient and id(p) not in seen]
    if left_out:
        logger.warning("%d trainable parameters are in no param group and will not be updated "
                       "(e.g. %s)", len(left_out), ", ".join(left_out[:3]))
    return out


# --------------------------------------------------------------------------------------------
# Optimizers

class _GlobalNormClip:
    """Mixin: clip all gradients by one global norm, then let Paddle update.

    Paddle clips per parameter group, which is not global clipping once there are several groups
    (and there always are: decayed and non-decayed parameters are separate groups)."""

    clip_grad_norm: Optional[float] = None

    @paddle.no_grad()
    def _clip_gradients(self) -> None:
        if not self.clip_grad_norm:
            return
        # Under AMP the scaler marks overflowing steps; their gradients are inf/nan, Paddle skips
        # the update, and clipping them would only spread the NaNs.
        found_inf = self._get_auxiliary_var("found_inf")
        if found_inf is not None and bool(found_inf):
            return
        params_grads = []
        for group in self._param_groups:
            params = group["params"] if isinstance(group, dict) else [group]
            for p in params:
                if not p.stop_gradient and p.grad is not None:
                    params_grads.append((p, p.grad))
        if not params_grads:
            return
        clipped = paddle.nn.ClipGradByGlobalNorm(self.clip_grad_norm)(params_grads)
        # Paddle returns new tensors; write them into the gradient storage the update reads.
        for (_, grad), (_, new) in zip(params_grads, clipped):
            if new is not grad:
                paddle.assign(new, output=grad)

    def step(self) -> None:  # noqa: D102 - same contract as paddle.optimizer.Optimizer.step
        self._clip_gradients()
        super().step()  # type: ignore[misc]

    def minimize(self, loss: Any, startup_program: Any = None, parameters: Any = None,
                 no_grad_set: Any = None) -> Tuple[None, list]:
        """Dygraph ``minimize`` (used by ``GradScaler.minimize``) is ``step()`` here: Paddle's
        version applies neither per-group decay coefficients nor the global clipping."""
        self.step()
        return None, []


class _Adam(_GlobalNormClip, paddle.optimizer.Adam):
    pass


class _AdamW(_GlobalNormClip, paddle.optimizer.AdamW):
    pass


class _Momentum(_GlobalNormClip, paddle.optimizer.Momentum):
    pass


class _SGD(_GlobalNormClip, paddle.optimizer.SGD):
    pass


#: Adam whose ``clip_grad_norm`` attribute clips over all parameter groups together, for callers
#: that build their own groups (the SR trainer's generator + recogniser in stage 3).
ClippedAdam = _Adam


def build_optimizer(cfg: Mapping[str, Any], model: paddle.nn.Layer,
                    lr: "Union[float, LRScheduler, Schedule, None]",
                    param_groups: Optional[List[dict]] = None) -> paddle.optimizer.Optimizer:
    """An optimizer for ``model``'s trainable parameters from the ``Optimizer`` section.

    ``lr`` is the global learning rate: a float, a Paddle ``LRScheduler`` (usually
    ``Schedule.scheduler``), a :class:`Schedule`, or None for ``Optimizer.lr``. ``param_groups``
    (``[{"params", "lr_mult", "weight_decay", "name"}]``) gives groups their own LR multiplier
    (effective LR = scheduler LR x ``lr_mult``) and optionally their own decay (None = the
    configured one); without it all trainable parameters form one group. Frozen parameters are
    never handed to Paddle; 1-D parameters (see :func:`no_decay_param_names`) never decay.
    """
    sec = _Section(cfg, "Optimizer", OPTIMIZER_DEFAULTS)
    name = sec.choice("name", OPTIMIZERS, "optimizer")
    base_decay = sec.number("weight_decay", minimum=0.0, nullable=True) or 0.0
    clip = sec.number("clip_grad_norm", minimum=0.0, nullable=True) or None
    betas = sec.numbers("betas")
    if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
        raise ConfigError(f"Optimizer.betas: expected two numbers in [0, 1), got "
                          f"{sec.raw('betas')!r}")
    eps = sec.number("eps", above=0.0)
    momentum = sec.number("momentum", minimum=0.0, below=1.0)
    nesterov = sec.boolean("nesterov")
    if name == "sgd" and nesterov and momentum == 0.0:
        raise ConfigError("Optimizer.nesterov: needs Optimizer.momentum > 0")

    if isinstance(lr, Schedule):
        lr = lr.scheduler if lr.scheduler is not None else lr.last_lr()
    if lr is None:
        lr = sec.number("lr", above=0.0)
    if not isinstance(lr, LRScheduler):
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0:
            raise ConfigError(f"Optimizer.lr: must be a number > 0, got {lr!r}")
        lr = float(lr)

    groups = _normalise_groups(model, param_groups)
    names = _param_names(model)
    paddle_groups: List[Dict[str, Any]] = []
    summary = []
    for group in groups:
        decay = base_decay if group["weight_decay"] is None else group["weight_decay"]
        parts = {"decay": [], "no_decay": []}
        for p in group["params"]:
            parts["no_decay" if decay == 0.0 or _is_no_decay(p) else "decay"].append(p)
        for part, params in parts.items():
            if not params:
                continue
            part_decay = decay if part == "decay" else 0.0
            # AdamW reads a float coefficient per group; Adam/SGD treat a group decay of None as
            # "no regularizer" (0.0 would add a zero L2 term for nothing).
            wd: Optional[float] = part_decay if (name == "adamw" or part_decay > 0) else None
            # The decayed part keeps the group's name; the rest is "<name>.no_decay" unless the
            # whole group is undecayed anyway.
            gname = group["name"] if part == "decay" or decay == 0.0 else \
                f"{group['name']}.no_decay"
            paddle_groups.append({"params": params, "learning_rate": group["lr_mult"],
                                  "weight_decay": wd, "name": gname, "lr_mult": group["lr_mult"]})
            summary.append(f"{paddle_groups[-1]['name']} ({len(params)} tensors, "
                           f"lr x{group['lr_mult']:g}, decay {part_decay:g})")
    if not paddle_groups:
        raise ConfigError("Optimizer: the model has no trainable parameters (all are frozen)")

    for g in paddle_groups:
        for p in g["params"]:
            # Paddle keeps regularizers on the parameter objects across optimizers, and AdamW
            # would add a stale L2 term from an earlier Adam/SGD build on top of its own decay.
            p.regularizer = None

    if name == "adam":
        opt = _Adam(learning_rate=lr, beta1=betas[0], beta2=betas[1], epsilon=eps,
                    parameters=paddle_groups, weight_decay=None, grad_clip=None)
    elif name == "adamw":
        opt = _AdamW(learning_rate=lr, beta1=betas[0], beta2=betas[1], epsilon=eps,
                     parameters=paddle_groups, weight_decay=base_decay, grad_clip=None)
    elif momentum > 0.0:
        opt = _Momentum(learning_rate=lr, momentum=momentum, use_nesterov=nesterov,
                        parameters=paddle_groups, weight_decay=None, grad_clip=None)
    else:
        opt = _SGD(learning_rate=lr, parameters=paddle_groups, weight_decay=None, grad_clip=None)
    opt.clip_grad_norm = clip
    unnamed = sum(1 for g in paddle_groups for p in g["params"] if id(p) not in names)
    if unnamed:
        logger.warning("%d optimised parameters are not parameters of the model; their optimizer "
                       "state cannot be checkpointed", unnamed)
    logger.info("optimizer %s (clip %s): %s", name, "off" if clip is None else f"{clip:g}",
                "; ".join(summary))
    return opt


# --------------------------------------------------------------------------------------------
# Named optimizer state

def _to_plain(value: Any) -> Any:
    """Numbers from Paddle/numpy scalars and 1-element tensors as Python int/float."""
    if hasattr(value, "numpy") and not isinstance(value, np.ndarray):
        value = value.numpy()
    if isinstance(value, np.ndarray):
        value = value.reshape(-1)[0] if value.size == 1 else value.tolist()
    if isinstance(value, np.generic):
        value = value.item()
    return value


def _lr_state_to_arrays(scheduler: LRScheduler) -> Dict[str, np.ndarray]:
    # The checkpoint stores optimizer state as safetensors, so only numeric arrays: None (an
    # unset ReduceOnPlateau.best) travels as NaN, which is never a valid value of these fields.
    out = {}
    for key, value in scheduler.state_dict().items():
        value = _to_plain(value)
        if value is None:
            out[f"{LR_STATE_PREFIX}{STATE_SEP}{key}"] = np.array([np.nan], np.float64)
        elif isinstance(value, bool) or not isinstance(value, (int, float)):
            logger.debug("LR scheduler state %s=%r is not a number; not saved", key, value)
        elif isinstance(value, int):
            out[f"{LR_STATE_PREFIX}{STATE_SEP}{key}"] = np.array([value], np.int64)
        else:
            out[f"{LR_STATE_PREFIX}{STATE_SEP}{key}"] = np.array([value], np.float64)
    return out


def _lr_state_from_arrays(scheduler: LRScheduler, named: Mapping[str, np.ndarray]) -> None:
    prefix = LR_STATE_PREFIX + STATE_SEP
    entries = {k[len(prefix):]: np.asarray(v).reshape(-1)[0] for k, v in named.items()
               if k.startswith(prefix)}
    if not entries:
        return
    state = dict(scheduler.state_dict())
    for key, value in entries.items():
        if key not in state:
            continue
        if np.issubdtype(np.asarray(value).dtype, np.floating) and np.isnan(value):
            state[key] = None
        elif np.issubdtype(np.asarray(value).dtype, np.integer):
            state[key] = int(value)
        else:
            state[key] = float(value)
    scheduler.set_state_dict(state)


def optimizer_state_to_named(optimizer: paddle.optimizer.Optimizer,
                             model: paddle.nn.Layer) -> Dict[str, np.ndarray]:
    """The optimizer's state as numpy arrays keyed by structured parameter names.

    Keys are ``<param name>/<accumulator>`` (``head.fc.weight/moment1``,
    ``head.fc.bias/beta1_pow_acc``, ``.../velocity``, ``.../master_weight``) plus, when the
    optimizer runs on a Paddle ``LRScheduler``, ``LR_Scheduler/<field>`` one-element arrays
    (``last_epoch``, ``last_lr``, ...; None stored as NaN) so everything fits a tensor file.
    Arrays are copies. An optimizer that has not stepped yet has no accumulators.
    """
    names = _param_names(model)
    by_internal = {p.name: names[id(p)] for p in model.parameters() if id(p) in names}
    out: Dict[str, np.ndarray] = {}
    if not optimizer._accumulators and getattr(optimizer, "_accumulators_holder", None):
        logger.warning("optimizer state was loaded with Paddle's set_state_dict and not used yet; "
                       "it cannot be mapped to parameter names and is not included")
    skipped = 0
    for acc_name, per_param in optimizer._accumulators.items():
        for internal, var in per_param.items():
            sname = by_internal.get(internal)
            if sname is None:
                skipped += 1
                continue
            out[f"{sname}{STATE_SEP}{acc_name}"] = np.array(var.numpy(), copy=True)
    for internal, var in (getattr(optimizer, "_master_weights", None) or {}).items():
        sname = by_internal.get(internal)
        if sname is None:
            skipped += 1
            continue
        out[f"{sname}{STATE_SEP}{_MASTER_WEIGHT}"] = np.array(var.numpy(), copy=True)
    if skipped:
        logger.warning("%d optimizer tensors belong to parameters outside the model; not saved",
                       skipped)
    if isinstance(optimizer._learning_rate, LRScheduler):
        out.update(_lr_state_to_arrays(optimizer._learning_rate))
    return out


@paddle.no_grad()
def _create_all_accumulators(optimizer: paddle.optimizer.Optimizer) -> None:
    """Create the accumulators Paddle would otherwise create lazily at the first step, so they can
    be filled from a checkpoint by identity instead of by guessing their generated names."""
    block = paddle.static.default_main_program().global_block()
    groups = optimizer._param_groups or []
    if groups and isinstance(groups[0], dict):
        for group in groups:
            params = [p for p in group["params"] if not p.stop_gradient]
            if params:
                # The group dict carries the group's betas etc., which set the beta-pow fill.
                optimizer._create_accumulators(block, {**group, "params": params})
    else:
        params = [p for p in groups if not p.stop_gradient]
        if params:
            optimizer._create_accumulators(block, params)


@paddle.no_grad()
def optimizer_state_from_named(optimizer: paddle.optimizer.Optimizer, model: paddle.nn.Layer,
                               named: Mapping[str, np.ndarray], strict: bool = False) -> None:
    """Load :func:`optimizer_state_to_named` output into ``optimizer`` (freshly built or not), so it
    continues exactly where the saved one stopped.

    Parameters without saved state (e.g. newly unfrozen ones) keep a fresh state and entries for
    parameters the optimizer does not train are ignored; both are logged. A saved tensor whose
    shape no longer matches (e.g. a resized head) is skipped with a warning. With ``strict``,
    any of these raises ValueError instead.
    """
    names = _param_names(model)
    by_internal = {p.name: names[id(p)] for p in model.parameters() if id(p) in names}
    _create_all_accumulators(optimizer)
    used: Set[str] = set()
    missing: List[str] = []
    mismatched: List[str] = []

    def load(var: paddle.Tensor, key: str) -> None:
        if key not in named:
            missing.append(key)
            return
        value = np.asarray(named[key])
        used.add(key)
        if tuple(value.shape) != tuple(var.shape):
            mismatched.append(f"{key} {tuple(value.shape)} vs {tuple(var.shape)}")
            return
        var.set_value(value)

    for acc_name, per_param in optimizer._accumulators.items():
        for internal, var in per_param.items():
            sname = by_internal.get(internal)
            if sname is not None:
                load(var, f"{sname}{STATE_SEP}{acc_name}")
    for internal, var in (getattr(optimizer, "_master_weights", None) or {}).items():
        sname = by_internal.get(internal)
        if sname is not None:
            load(var, f"{sname}{STATE_SEP}{_MASTER_WEIGHT}")
    if isinstance(optimizer._learning_rate, LRScheduler):
        _lr_state_from_arrays(optimizer._learning_rate, named)
        used.update(k for k in named if k.startswith(LR_STATE_PREFIX + STATE_SEP))
    unused = sorted(set(named) - used)

    problems = []
    if missing:
        params = sorted({k.rsplit(STATE_SEP, 1)[0] for k in missing})
        problems.append(f"{len(params)} parameters without saved state (e.g. {params[0]})")
        logger.info("optimizer state: %d parameters start fresh (e.g. %s)", len(params),
                    ", ".join(params[:3]))
    if unused:
        problems.append(f"{len(unused)} saved entries not used (e.g. {unused[0]})")
        logger.info("optimizer state: %d saved entries are for parameters not being optimised "
                    "(e.g. %s)", len(unused), ", ".join(unused[:3]))
    if mismatched:
        problems.append(f"{len(mismatched)} shape mismatches (e.g. {mismatched[0]})")
        logger.warning("optimizer state: shape changed, state reset for %s",
                       "; ".join(mismatched[:3]))
    if strict and problems:
        raise ValueError("optimizer state does not match the optimizer: " + "; ".join(problems))


# --------------------------------------------------------------------------------------------
# Learning-rate schedules

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
        return float(_to_plain(self.scheduler.last_lr))

    def state_dict(self) -> Dict[str, Any]:
        state = {} if self.scheduler is None else \
            {k: _to_plain(v) for k, v in self.scheduler.state_dict().items()}
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


def _warmup_iters(sec: _Section, steps_per_epoch: int, span: int, what: str) -> int:
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
    sec = _Section(cfg, "Scheduler", SCHEDULER_DEFAULTS)
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


# --------------------------------------------------------------------------------------------
# EMA

def _is_float(t: paddle.Tensor) -> bool:
    return t.dtype in (paddle.float32, paddle.float64, paddle.float16, paddle.bfloat16)


class ModelEMA:
    """Exponential moving average of a model's parameters and persistable buffers (BatchNorm
    running statistics), keyed like ``model.state_dict()``.

    After n earlier updates the decay is ``decay * min(1, n / warmup_steps)`` (just ``decay``
    without warmup), so with a warmup the average starts as a copy of the model and does not drag
    in the random initialisation for long. Non-float buffers are copied.
    """

    def __init__(self, model: paddle.nn.Layer, decay: float = 0.999,
                 warmup_steps: int = 0) -> None:
        if isinstance(decay, bool) or not isinstance(decay, (int, float)) or not 0.0 <= decay < 1.0:
            raise ConfigError(f"Optimizer.ema.decay: must be in [0, 1), got {decay!r}")
        if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, int) or warmup_steps < 0:
            raise ConfigError(f"Optimizer.ema.warmup_steps: must be an integer >= 0, got "
                              f"{warmup_steps!r}")
        self.decay, self.warmup_steps = float(decay), warmup_steps
        self.num_updates = 0
        with paddle.no_grad():
            self.shadow: Dict[str, paddle.Tensor] = {
                k: v.detach().clone() for k, v in model.state_dict().items()}

    def current_decay(self) -> float:
        """The decay the next :meth:`update` uses."""
        if self.warmup_steps > 0:
            return self.decay * min(1.0, self.num_updates / self.warmup_steps)
        return self.decay

    @paddle.no_grad()
    def update(self, model: paddle.nn.Layer) -> None:
        d = self.current_decay()
        for key, value in model.state_dict().items():
            if key not in self.shadow:
                raise KeyError(f"EMA: model has {key!r}, which the EMA was not built with")
            value = value.detach()
            shadow = self.shadow[key]
            if _is_float(value):
                # shadow + (1 - d) * (x - shadow): equal to d*shadow + (1-d)*x, and exactly
                # unchanged for weights that did not move (frozen ones).
                value = value.astype(shadow.dtype)
                self.shadow[key] = shadow + (value - shadow) * (1.0 - d)
            else:
                self.shadow[key] = value.clone()
        self.num_updates += 1

    def state_dict(self) -> Dict[str, np.ndarray]:
        """Shadow weights as arrays, plus ``__num_updates__`` (for the decay warmup)."""
        out = {k: np.array(v.numpy(), copy=True) for k, v in self.shadow.items()}
        out["__num_updates__"] = np.array([self.num_updates], np.int64)
        return out

    @paddle.no_grad()
    def set_state_dict(self, d: Mapping[str, np.ndarray]) -> None:
        missing = sorted(set(self.shadow) - set(d))
        if missing:
            raise ValueError(f"EMA state lacks {len(missing)} entries (e.g. {missing[0]})")
        for key in self.shadow:
            value = np.asarray(d[key])
            if tuple(value.shape) != tuple(self.shadow[key].shape):
                raise ValueError(f"EMA state {key!r}: shape {tuple(value.shape)}, model has "
                                 f"{tuple(self.shadow[key].shape)}")
            self.shadow[key] = paddle.to_tensor(value, dtype=self.shadow[key].dtype)
        if "__num_updates__" in d:
            self.num_updates = int(np.asarray(d["__num_updates__"]).reshape(-1)[0])

    @contextlib.contextmanager
    def apply_to(self, model: paddle.nn.Layer) -> Iterator[paddle.nn.Layer]:
        """``with ema.apply_to(model): validate(model)``: the EMA weights are in the model inside
        the block and the model's own weights are back afterwards (also on exceptions)."""
        state = model.state_dict()
        with paddle.no_grad():
            backup = {k: v.detach().clone() for k, v in state.items()}
            for key, value in state.items():
                value.set_value(self.shadow[key])
        try:
            yield model
        finally:
            with paddle.no_grad():
                for key, value in state.items():
                    value.set_value(backup[key])


def build_ema(cfg: Mapping[str, Any], model: paddle.nn.Layer) -> Optional[ModelEMA]:
    """A :class:`ModelEMA` from ``Optimizer.ema`` (``cfg`` is the Optimizer section), or None when
    it is not enabled."""
    ema = (cfg or {}).get("ema") or {}
    sec = _Section(ema, "Optimizer.ema", OPTIMIZER_DEFAULTS["ema"])
    if not sec.boolean("enabled"):
        return None
    return ModelEMA(model, sec.number("decay", minimum=0.0, below=1.0),
                    sec.integer("warmup_steps", minimum=0))

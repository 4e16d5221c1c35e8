"""Optimisers of the ``Optimizer`` config section: parameter groups, weight decay, global clipping.

Config section (a plain dict; every key has a default, see :data:`OPTIMIZER_DEFAULTS`)::

    Optimizer: {name: adamw, lr: 5.0e-4, weight_decay: 1.0e-4, betas: [0.9, 0.999], eps: 1.0e-8,
                momentum: 0.9, nesterov: false, clip_grad_norm: 5.0,
                ema: {enabled: false, decay: 0.999, warmup_steps: 0}}

The learning-rate schedule is :mod:`vinocr.engine.schedules`, the weight EMA
:mod:`vinocr.engine.ema` and the checkpointable optimizer state :mod:`vinocr.engine.optim_state`.

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
"""
from __future__ import annotations

import logging
import math
from typing import Any, Dict, List, Mapping, Optional, Set, Tuple, Union

import paddle
from paddle.optimizer.lr import LRScheduler

from vinocr.engine.config_section import ConfigSection
from vinocr.engine.ema import EMA_DEFAULTS
from vinocr.engine.schedules import Schedule
from vinocr.errors import ConfigError

logger = logging.getLogger(__name__)

__all__ = ["OPTIMIZER_DEFAULTS", "OPTIMIZERS", "ClippedAdam", "build_optimizer",
           "no_decay_param_names", "param_names_by_id"]

OPTIMIZERS = ("adam", "adamw", "sgd")

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
    "ema": dict(EMA_DEFAULTS),
}


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


def param_names_by_id(model: paddle.nn.Layer) -> Dict[int, str]:
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
    names = param_names_by_id(model)
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
    sec = ConfigSection(cfg, "Optimizer", OPTIMIZER_DEFAULTS)
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
    names = param_names_by_id(model)
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

"""Optimizer state keyed by structured parameter names, for checkpoints and optimizer rebuilds.

Paddle keys optimizer state by internal tensor names (``linear_0.w_0_moment1_0``) that change
from one model instance (or optimizer) to the next; :func:`optimizer_state_to_named` and
:func:`optimizer_state_from_named` key it by structured parameter names instead
(``<param>/<accumulator>``, see :data:`STATE_SEP`), so a freshly built optimizer continues exactly
where a saved one stopped.
"""
from __future__ import annotations

import logging
from typing import Dict, List, Mapping, Set

import numpy as np
import paddle
from paddle.optimizer.lr import LRScheduler

from vinocr.engine.optim import param_names_by_id
from vinocr.engine.schedules import to_plain

logger = logging.getLogger(__name__)

__all__ = ["LR_STATE_PREFIX", "MASTER_WEIGHT", "STATE_SEP", "optimizer_state_from_named",
           "optimizer_state_to_named", "state_key"]

#: Separator between a structured parameter name and the accumulator in named optimizer state
#: (``head.fc.weight/moment1``); structured names never contain it.
STATE_SEP = "/"
#: Prefix of the LR scheduler entries in named optimizer state (``LR_Scheduler/last_epoch``).
LR_STATE_PREFIX = "LR_Scheduler"
#: Accumulator name of a parameter's float32 master copy (mixed precision).
MASTER_WEIGHT = "master_weight"


def state_key(owner: str, entry: str) -> str:
    """The key of one named optimizer state entry: ``<param>/<accumulator>``
    (``head.fc.weight/moment1``) or ``LR_Scheduler/<field>``: the one definition of the format."""
    return f"{owner}{STATE_SEP}{entry}"


def _lr_state_to_arrays(scheduler: LRScheduler) -> Dict[str, np.ndarray]:
    # The checkpoint stores optimizer state as safetensors, so only numeric arrays: None (an
    # unset ReduceOnPlateau.best) travels as NaN, which is never a valid value of these fields.
    out = {}
    for key, value in scheduler.state_dict().items():
        value = to_plain(value)
        if value is None:
            out[state_key(LR_STATE_PREFIX, key)] = np.array([np.nan], np.float64)
        elif isinstance(value, bool) or not isinstance(value, (int, float)):
            logger.debug("LR scheduler state %s=%r is not a number; not saved", key, value)
        elif isinstance(value, int):
            out[state_key(LR_STATE_PREFIX, key)] = np.array([value], np.int64)
        else:
            out[state_key(LR_STATE_PREFIX, key)] = np.array([value], np.float64)
    return out


def _lr_state_from_arrays(scheduler: LRScheduler, named: Mapping[str, np.ndarray]) -> None:
    prefix = state_key(LR_STATE_PREFIX, "")
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
    names = param_names_by_id(model)
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
            out[state_key(sname, acc_name)] = np.array(var.numpy(), copy=True)
    for internal, var in (getattr(optimizer, "_master_weights", None) or {}).items():
        sname = by_internal.get(internal)
        if sname is None:
            skipped += 1
            continue
        out[state_key(sname, MASTER_WEIGHT)] = np.array(var.numpy(), copy=True)
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
    names = param_names_by_id(model)
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
                load(var, state_key(sname, acc_name))
    for internal, var in (getattr(optimizer, "_master_weights", None) or {}).items():
        sname = by_internal.get(internal)
        if sname is not None:
            load(var, state_key(sname, MASTER_WEIGHT))
    if isinstance(optimizer._learning_rate, LRScheduler):
        _lr_state_from_arrays(optimizer._learning_rate, named)
        used.update(k for k in named if k.startswith(state_key(LR_STATE_PREFIX, "")))
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

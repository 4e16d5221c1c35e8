"""The hook interface between the trainer and fine-tuning techniques: the technique contract.

The trainer knows hooks, never technique names. A technique (in ``techniques/``) subclasses
:class:`TrainerHooks` and overrides what it needs; several hooks stack through :class:`HookList`,
called in order: at most one technique that adapts the model (``adapts_model``: it decides what
trains, e.g. ``lora`` or ``gradual_unfreeze``), first, then loss-level ones (``label_smoothing``,
``distillation``). Hooks receive the model where they act on it and a :class:`RunView`, a
read-only view of the run, never the trainer itself.

A technique declares its options once, as a frozen dataclass (``Options``; fields made with
:func:`option` for ranges, choices and alternative spellings), and :func:`parse_options` is the
one validation of them (type, range, unknown key: a one-line ``ConfigError`` naming
``Technique.<key>``). The parsed options are ``self.options`` and go into ``report.json`` (the
``technique`` entry's ``options``)::

    @dataclass(frozen=True)
    class SmoothingOptions:
        epsilon: float = option(0.1, min=0.0, max=1.0)

    class Smoothing(TrainerHooks):
        Options = SmoothingOptions      # Smoothing(epsilon=0.2).options.epsilon == 0.2
"""
from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable, ClassVar, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from vinocr.errors import ConfigError


def read_only(value: Any) -> Any:
    """A deep read-only copy of a config value: mappings become ``MappingProxyType``, lists
    tuples."""
    if isinstance(value, Mapping):
        return MappingProxyType({k: read_only(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(read_only(v) for v in value)
    return value


def _zero() -> int:
    return 0


def _no_model() -> Any:
    return None


@dataclass(frozen=True)
class RunView:
    """What a hook may know about the run. Built by the trainer before ``prepare_model``; the
    fixed facts are fields, the live ones (``epoch``, ``global_step``, ``lr``, ``model``) are
    read through properties. Every field has a default, so tests and notebooks can build a view
    with only what a hook reads (``RunView(charset=..., image_shape=(3, 48, 320))``).

    Fields:
        charset: the run's :class:`~vinocr.charset.Charset` (``Global.charset``).
        image_shape: the model input ``(C, H, W)`` (``Global.image_shape``).
        cfg: the validated config, deeply read-only (mappings are ``MappingProxyType``).
        run_dir: the run directory (checkpoints, logs, ``report.json``).
        device: ``cpu`` or ``gpu`` (resolved from ``Global.device``).
        is_main: True on the process that writes files (rank 0 of a data-parallel run).
        world_size: number of data-parallel processes.
        train_size: training samples after filtering (the whole set, not one rank's shard).
        synthetic_share: the share (0..1) of training samples ``vinocr-synth`` generated
            (:func:`vinocr.data.provenance.synthetic_share`).
        epochs: ``Train.epochs``.
        steps_per_epoch: optimizer steps (batches) per epoch.
        planned_steps: optimizer steps the run will take: ``epochs x steps_per_epoch``, capped
            by ``Train.max_steps`` (early stopping can only shorten it).

    Live (properties):
        epoch: epochs completed (0 during the first epoch).
        global_step: optimizer steps taken.
        lr: the learning rate of the current step (0 before the optimizer is built).
        model: the model being trained (what ``prepare_model`` returned, once it has).

    A hook asks the trainer for something by return value only: ``prepare_model`` returns the
    model to train, ``param_groups`` the optimizer groups, ``on_epoch_start`` True to have the
    optimizer rebuilt, ``loss`` the loss.
    """

    charset: Any = None
    image_shape: Tuple[int, ...] = ()
    cfg: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    run_dir: Optional[Path] = None
    device: str = "cpu"
    is_main: bool = True
    world_size: int = 1
    train_size: int = 0
    synthetic_share: float = 0.0
    epochs: int = 0
    steps_per_epoch: int = 0
    planned_steps: int = 0
    epoch_fn: Callable[[], int] = field(default=_zero, repr=False, compare=False)
    global_step_fn: Callable[[], int] = field(default=_zero, repr=False, compare=False)
    lr_fn: Callable[[], float] = field(default=_zero, repr=False, compare=False)
    model_fn: Callable[[], Any] = field(default=_no_model, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "cfg", read_only(self.cfg))
        object.__setattr__(self, "image_shape", tuple(self.image_shape))

    @property
    def epoch(self) -> int:
        return int(self.epoch_fn())

    @property
    def global_step(self) -> int:
        return int(self.global_step_fn())

    @property
    def lr(self) -> float:
        return float(self.lr_fn())

    @property
    def model(self) -> Any:
        return self.model_fn()


# ------------------------------------------------------------------------------------- options

def option(default: Any, *, min: Optional[float] = None, max: Optional[float] = None,
           gt: Optional[float] = None, lt: Optional[float] = None,
           choices: Optional[Sequence[Any]] = None, aliases: Sequence[str] = (),
           check: Optional[Callable[[Any, str], None]] = None, doc: str = "") -> Any:
    """A field of a technique's options dataclass. ``min``/``max`` are inclusive bounds, ``gt``/
    ``lt`` exclusive ones; ``choices`` the allowed values; ``aliases`` other accepted spellings
    (e.g. ``lora_alpha`` for ``alpha``); ``check(value, key)`` raises a ``ConfigError`` for what
    types and ranges cannot say (it sees given values, not the default)."""
    meta = {"min": min, "max": max, "gt": gt, "lt": lt, "choices": choices,
            "aliases": tuple(aliases), "check": check, "doc": doc}
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class NoOptions:
    """The options of a technique that has none."""


def option_spellings(schema: type) -> Dict[str, str]:
    """``{accepted key: field name}`` of an options dataclass (field names and their aliases)."""
    out: Dict[str, str] = {}
    for f in dataclasses.fields(schema):
        out[f.name] = f.name
        for alias in f.metadata.get("aliases", ()):
            out[alias] = f.name
    return out


def parse_options(schema: type, raw: Mapping[str, Any], owner: str = "the technique") -> Any:
    """The one validation of a technique's options: ``raw`` (config keys -> values) checked
    against the dataclass ``schema`` (types from its annotations, then the :func:`option` bounds,
    choices and check) and returned as an instance; unset options keep their defaults.

    Every error is a one-line ``ConfigError`` starting with ``Technique.<key>``.
    """
    spellings = option_spellings(schema)
    fields = {f.name: f for f in dataclasses.fields(schema)}
    hints = typing.get_type_hints(schema)
    given: Dict[str, str] = {}
    values: Dict[str, Any] = {}
    for key, value in raw.items():
        name = spellings.get(key)
        if name is None:
            valid = ", ".join(spellings) or "none"
            raise ConfigError(f"Technique.{key}: not an option of {owner} (options: {valid})")
        if name in given:
            first, second = sorted((given[name], key), key=lambda k: k != name)
            raise ConfigError(f"Technique.{second}: give either {first} or {second}, not both")
        given[name] = key
        values[name] = _check_option(value, hints[name], fields[name].metadata,
                                     f"Technique.{key}")
    return schema(**values)


def _check_option(value: Any, tp: Any, meta: Mapping[str, Any], key: str) -> Any:
    value = _check_type(value, tp, key)
    if value is None:
        return None
    lo = ("[", meta.get("min")) if meta.get("min") is not None else ("(", meta.get("gt"))
    hi = ("]", meta.get("max")) if meta.get("max") is not None else (")", meta.get("lt"))
    if lo[1] is not None or hi[1] is not None:
        low_ok = lo[1] is None or (value >= lo[1] if lo[0] == "[" else value > lo[1])
        high_ok = hi[1] is None or (value <= hi[1] if hi[0] == "]" else value < hi[1])
        if not (low_ok and high_ok):
            if lo[1] is not None and hi[1] is not None:
                wanted = f"in {lo[0]}{lo[1]:g}, {hi[1]:g}{hi[0]}"
            elif lo[1] is not None:
                wanted = f"{'>=' if lo[0] == '[' else '>'} {lo[1]:g}"
            else:
                wanted = f"{'<=' if hi[0] == ']' else '<'} {hi[1]:g}"
            raise ConfigError(f"{key}: must be {wanted}, got {value!r}")
    choices = meta.get("choices")
    if choices is not None and value not in choices:
        raise ConfigError(f"{key}: {value!r} is not one of {', '.join(map(str, choices))}")
    if meta.get("check") is not None:
        meta["check"](value, key)
    return value


def _check_type(value: Any, tp: Any, key: str) -> Any:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return value
    if origin is Union:
        if value is None and type(None) in args:
            return None
        rest = [a for a in args if a is not type(None)]
        return _check_type(value, rest[0] if len(rest) == 1 else Any, key)
    what = f"{type(value).__name__} {value!r}"
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {what}")
        return value
    if tp in (int, float):
        number = (isinstance(value, (int, float)) and not isinstance(value, bool)
                  and math.isfinite(value))
        if tp is int and not (number and float(value).is_integer()):
            raise ConfigError(f"{key}: expected an integer, got {what}")
        if not number:
            raise ConfigError(f"{key}: expected a finite number, got {what}")
        return tp(value)
    if tp is str:
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{key}: expected a non-empty string, got {what}")
        return value
    if origin in (tuple, list, Sequence, typing.get_origin(Sequence[Any])):
        if isinstance(value, str):
            value = [value]  # one item may be given on its own
        if not isinstance(value, (list, tuple)) or not value:
            raise ConfigError(f"{key}: expected a non-empty list, got {what}")
        item = args[0] if args else Any
        return tuple(_check_type(v, item, key) for v in value)
    if origin in (dict, Mapping, typing.get_origin(Mapping[Any, Any])):
        if not isinstance(value, Mapping) or not value:
            raise ConfigError(f"{key}: expected a non-empty mapping, got {what}")
        return dict(value)
    raise TypeError(f"{key}: options of type {tp!r} are not supported")


def options_report(options: Any) -> Dict[str, Any]:
    """An options dataclass as JSON-able data (tuples as lists), for ``report.json``."""
    def plain(v: Any) -> Any:
        if isinstance(v, Mapping):
            return {str(k): plain(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        return v
    return plain(dataclasses.asdict(options)) if dataclasses.is_dataclass(options) else {}


# ------------------------------------------------------------------------------------- hooks

@dataclass
class LossOutput:
    """The loss to optimise plus named terms to log (``train/<name>``)."""

    loss: Any
    terms: Dict[str, float] = field(default_factory=dict)


class TrainerHooks:
    """Override any of these; the defaults change nothing. ``run`` is always a :class:`RunView`.

    ``adapts_model``: True for a technique that decides what trains (freezing, adapters,
    per-parameter learning rates); a stack holds at most one, and it comes first.
    """

    name = "base"
    adapts_model: ClassVar[bool] = False
    #: The options dataclass (see :func:`option`); ``self.options`` is its parsed instance.
    Options: ClassVar[type] = NoOptions

    def __init__(self, **options: Any) -> None:
        self.options = parse_options(type(self).Options, options, self.name)

    @classmethod
    def option_keys(cls) -> List[str]:
        """The config keys this technique accepts (option names and their aliases)."""
        return list(option_spellings(cls.Options))

    def options_report(self) -> Dict[str, Any]:
        """The options this run uses, defaults included (saved in ``report.json``)."""
        # getattr: a hook with its own __init__ that takes no options need not call super().
        return options_report(getattr(self, "options", None))

    def prepare_model(self, model: Any, run: RunView) -> Any:
        """Before the optimizer is built: freeze, wrap (e.g. LoRA), load a teacher... Returns the
        model to train (usually the same object)."""
        return model

    def param_groups(self, model: Any, run: RunView) -> Optional[List[Dict[str, Any]]]:
        """Optional parameter groups ``[{"params": [...], "lr_mult": x, "name": ...}]``."""
        return None

    def on_epoch_start(self, epoch: int, run: RunView) -> bool:
        """Called before each epoch; return True when trainable parameters changed so the trainer
        rebuilds the optimizer (keeping the state of parameters that were already training)."""
        return False

    def train_mode(self, model: Any, run: RunView) -> None:
        """After ``model.train()``: e.g. keep frozen BatchNorms (or a teacher) in eval mode."""

    def loss(self, out: LossOutput, logits: Any, batch: Dict[str, Any], run: RunView
             ) -> LossOutput:
        """Transform the loss (label smoothing, distillation...)."""
        return out

    def on_epoch_end(self, epoch: int, metrics: Dict[str, float], run: RunView) -> None:
        """After validation."""

    def state_dict(self) -> Dict[str, Any]:
        """JSON-able state saved in checkpoints (for exact resume)."""
        return {}

    def set_state_dict(self, state: Dict[str, Any]) -> None:
        pass

    def describe(self) -> Dict[str, Any]:
        """What the run report says about this technique (and why it was chosen)."""
        return {"name": self.name}


class HookList(TrainerHooks):
    """Several hooks acting as one, in order: one model-adapting technique first (if any), then
    the others; at most one may return optimizer groups."""

    def __init__(self, hooks: Sequence[TrainerHooks] = ()) -> None:
        self.hooks = list(hooks)
        self.name = "+".join(h.name for h in self.hooks) or "none"
        adapters = [h.name for h in self.hooks if h.adapts_model]
        if len(adapters) > 1:
            raise ConfigError(f"Technique.name={self.name}: {' and '.join(adapters)} "
                              f"{'both' if len(adapters) == 2 else 'all'} adapt the model; stack "
                              "one of them with loss-level techniques")
        if adapters and not self.hooks[0].adapts_model:
            raise ConfigError(f"Technique.name={self.name}: {adapters[0]} adapts the model, so "
                              "it must come first")
        self.adapts_model = bool(adapters)

    def prepare_model(self, model, run):
        for h in self.hooks:
            model = h.prepare_model(model, run)
        return model

    def param_groups(self, model, run):
        found = [(h.name, g) for h in self.hooks
                 if (g := h.param_groups(model, run)) is not None]
        if len(found) > 1:
            raise ConfigError(f"Technique.name={self.name}: two techniques return optimizer "
                              f"groups: {' and '.join(n for n, _ in found)}; only one may set "
                              "per-parameter learning rates")
        return found[0][1] if found else None

    def on_epoch_start(self, epoch, run):
        changed = False
        for h in self.hooks:
            changed = h.on_epoch_start(epoch, run) or changed
        return changed

    def train_mode(self, model, run):
        for h in self.hooks:
            h.train_mode(model, run)

    def loss(self, out, logits, batch, run):
        for h in self.hooks:
            out = h.loss(out, logits, batch, run)
        return out

    def on_epoch_end(self, epoch, metrics, run):
        for h in self.hooks:
            h.on_epoch_end(epoch, metrics, run)

    def state_dict(self):
        return {h.name: h.state_dict() for h in self.hooks}

    def set_state_dict(self, state):
        for h in self.hooks:
            if h.name in state:
                h.set_state_dict(state[h.name])

    def options_report(self):
        return {h.name: h.options_report() for h in self.hooks}

    def describe(self):
        return {"name": self.name, "parts": [h.describe() for h in self.hooks],
                "options": self.options_report()}

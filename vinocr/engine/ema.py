"""Exponential moving average of model weights (``Optimizer.ema`` config section)."""
from __future__ import annotations

import contextlib
from typing import Any, Dict, Iterator, Mapping, Optional

import numpy as np
import paddle

from vinocr.engine.config_section import ConfigSection
from vinocr.errors import ConfigError

__all__ = ["EMA_DEFAULTS", "ModelEMA", "build_ema"]

#: Defaults of the ``Optimizer.ema`` section.
EMA_DEFAULTS: Dict[str, Any] = {"enabled": False, "decay": 0.999, "warmup_steps": 0}


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
    sec = ConfigSection(ema, "Optimizer.ema", EMA_DEFAULTS)
    if not sec.boolean("enabled"):
        return None
    return ModelEMA(model, sec.number("decay", minimum=0.0, below=1.0),
                    sec.integer("warmup_steps", minimum=0))

"""The hook interface between the trainer and fine-tuning techniques.

The trainer knows hooks, never technique names. A technique (in ``techniques/``) subclasses
:class:`TrainerHooks` and overrides what it needs; several hooks stack (an adaptation technique plus
loss-level ones such as label smoothing) through :class:`HookList`, called in order.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence


@dataclass
class LossOutput:
    """The loss to optimise plus named terms to log (``train/<name>``)."""

    loss: Any
    terms: Dict[str, float] = field(default_factory=dict)


class TrainerHooks:
    """Override any of these; the defaults change nothing.

    What a hook may read from ``trainer`` (set before ``prepare_model``): ``model``,
    ``train_set`` (the filtered training samples; ``len`` counts them), ``epochs``,
    ``planned_steps`` (optimizer steps the run will take: epochs x batches, capped by
    ``Train.max_steps``) and ``cfg``.
    """

    name = "base"

    def prepare_model(self, model: Any, trainer: Any) -> Any:
        """Before the optimizer is built: freeze, wrap (e.g. LoRA), load a teacher... Returns the
        model to train (usually the same object)."""
        return model

    def param_groups(self, model: Any, trainer: Any) -> Optional[List[Dict[str, Any]]]:
        """Optional parameter groups ``[{"params": [...], "lr_mult": x, "name": ...}]``."""
        return None

    def on_epoch_start(self, epoch: int, trainer: Any) -> bool:
        """Called before each epoch; return True when trainable parameters changed so the trainer
        rebuilds the optimizer (keeping the state of parameters that were already training)."""
        return False

    def train_mode(self, model: Any, trainer: Any) -> None:
        """After ``model.train()``: e.g. keep frozen BatchNorms in eval mode."""

    def loss(self, out: LossOutput, logits: Any, batch: Dict[str, Any], trainer: Any) -> LossOutput:
        """Transform the loss (label smoothing, distillation...)."""
        return out

    def on_epoch_end(self, epoch: int, metrics: Dict[str, float], trainer: Any) -> None:
        """After validation."""

    def finalize(self, model: Any, trainer: Any) -> Any:
        """Before export: merge adapters, drop helpers. Returns the plain model."""
        return model

    def state_dict(self) -> Dict[str, Any]:
        """JSON-able state saved in checkpoints (for exact resume)."""
        return {}

    def set_state_dict(self, state: Dict[str, Any]) -> None:
        pass

    def describe(self) -> Dict[str, Any]:
        """What the run report says about this technique (and why it was chosen)."""
        return {"name": self.name}


class HookList(TrainerHooks):
    """Several hooks acting as one, in order."""

    def __init__(self, hooks: Sequence[TrainerHooks] = ()) -> None:
        self.hooks = list(hooks)
        self.name = "+".join(h.name for h in self.hooks) or "none"

    def prepare_model(self, model, trainer):
        for h in self.hooks:
            model = h.prepare_model(model, trainer)
        return model

    def param_groups(self, model, trainer):
        groups = None
        for h in self.hooks:
            g = h.param_groups(model, trainer)
            if g is not None:
                groups = g
        return groups

    def on_epoch_start(self, epoch, trainer):
        changed = False
        for h in self.hooks:
            changed = h.on_epoch_start(epoch, trainer) or changed
        return changed

    def train_mode(self, model, trainer):
        for h in self.hooks:
            h.train_mode(model, trainer)

    def loss(self, out, logits, batch, trainer):
        for h in self.hooks:
            out = h.loss(out, logits, batch, trainer)
        return out

    def on_epoch_end(self, epoch, metrics, trainer):
        for h in self.hooks:
            h.on_epoch_end(epoch, metrics, trainer)

    def finalize(self, model, trainer):
        for h in self.hooks:
            model = h.finalize(model, trainer)
        return model

    def state_dict(self):
        return {h.name: h.state_dict() for h in self.hooks}

    def set_state_dict(self, state):
        for h in self.hooks:
            if h.name in state:
                h.set_state_dict(state[h.name])

    def describe(self):
        return {"name": self.name, "parts": [h.describe() for h in self.hooks]}

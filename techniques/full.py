"""``full``: every parameter trains; the reference against which the others are measured."""
from __future__ import annotations

from typing import Any

from techniques import register_technique
from vinocr.engine.hooks import RunView, TrainerHooks


@register_technique("full")
class FullFineTune(TrainerHooks):
    adapts_model = True

    def prepare_model(self, model: Any, run: RunView) -> Any:
        from techniques.parts import running_stat_ids

        # BatchNorm running statistics are Paddle parameters too, but never trained.
        stats = running_stat_ids(model)
        for p in model.parameters():
            if id(p) not in stats:
                p.stop_gradient = False
        return model

    def describe(self):
        return {"name": self.name, "trainable": "all parameters"}

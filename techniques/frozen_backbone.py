"""``frozen_backbone``: the backbone keeps its pretrained weights *and* BatchNorm statistics; the
neck and head (and a GTC auxiliary head) train.

For very small datasets: far fewer parameters to fit, and the visual features the backbone learnt
on millions of crops cannot be overwritten by a few hundred. The BatchNorms of frozen parts stay in
eval mode during training (the trainer does this for every frozen BatchNorm), otherwise their
running statistics would follow the new data's batches while the frozen weights around them
cannot compensate.

Options: ``freeze`` (parts to freeze; default the three backbone parts) and ``parts`` (see
:mod:`techniques.parts`).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Tuple

from techniques import register_technique
from techniques.parts import BACKBONE_PARTS, PartMap, set_trainable_parts, trainable_summary
from vinocr.engine.hooks import RunView, TrainerHooks, option

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FrozenBackboneOptions:
    freeze: Tuple[str, ...] = option(BACKBONE_PARTS, doc="parts to freeze (or 'all')")
    parts: Optional[Mapping[str, str]] = option(None, doc="{part: regex} replacing the default "
                                                "parts")


@register_technique("frozen_backbone")
class FrozenBackbone(TrainerHooks):
    adapts_model = True
    Options = FrozenBackboneOptions

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.partmap = PartMap.from_option(self.options.parts)
        # Checked against the part names now (a typo fails at config time, not after data loading).
        self.frozen: List[str] = self.partmap.resolve(list(self.options.freeze), "Technique.freeze")
        self.summary: Dict[str, Any] = {}

    def prepare_model(self, model: Any, run: RunView) -> Any:
        train = [p for p in self.partmap.names if p not in self.frozen]
        set_trainable_parts(model, self.partmap, train)
        self.summary = trainable_summary(model)
        logger.info("frozen_backbone: frozen %s; %s", ", ".join(self.frozen),
                    self.summary["summary"])
        return model

    def describe(self) -> Dict[str, Any]:
        return {"name": self.name, "frozen_parts": list(self.frozen), **self.summary}

"""``lora``: low-rank adapters on the SVTR neck and the 1x1 convolutions; everything else frozen.

The model surgery (wrappers, :func:`~vinocr.models.lora.inject_lora`,
:func:`~vinocr.models.lora.merge_lora`, adapter files, the default targets and which layers can
take an adapter) is the library's :mod:`vinocr.models.lora`; this module is the training recipe:
freeze the model, wrap the targets, let the adapters (and the CTC head, ``train_head``) train.

BatchNorm running statistics are frozen too (the trainer keeps the BatchNorms of frozen layers,
here all of them, in eval mode while training): otherwise the "frozen" base would drift with the
fine-tuning data, the adapter file alone would no longer reproduce the trained model, and base
weights would not stay bit-identical.

Checkpoints hold the wrapped model's state dict (base keys plus ``<layer>.lora_A`` /
``<layer>.lora_B``) and the trainer records which layers carry adapters, so resume restores the
adapters through strict loading, and evaluation, export, prediction, ``Global.pretrained_model``
and distillation teachers load the run through
:func:`vinocr.engine.model_loading.load_trained`, which wraps the recorded layers again and merges
the adapters: they get the plain architecture. A run started from a LoRA run therefore starts from
its merged model (the same function as base + adapters) and trains fresh adapters on top.

Config (``Technique`` section)::

    Technique: {name: lora, rank: 8, alpha: 16, dropout: 0.0, train_head: true,
                targets: ['head\\.ctc_encoder\\.encoder\\.svtr_block\\.\\d+\\.mixer\\.(qkv|proj)']}

``lora_alpha`` is accepted as an alias of ``alpha`` (``alpha`` also names distillation's loss
weight, and options are handed to every technique that declares them).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import paddle.nn as nn

from techniques import register_technique
from vinocr.engine.hooks import RunView, TrainerHooks, option
from vinocr.errors import ConfigError
from vinocr.models.lora import (DEFAULT_ALPHA, DEFAULT_TARGETS, HEAD_LAYERS, compile_targets,
                                conv_ineligibility, find_head, inject_lora, lora_layers,
                                set_lora_meta, summarise_names)
from vinocr.models.trainable import trainable_summary

logger = logging.getLogger(__name__)

__all__ = ["LoRA", "LoRAOptions"]


def _check_targets(targets: Sequence[str], key: str) -> None:
    compile_targets(targets, key)


@dataclass(frozen=True)
class LoRAOptions:
    rank: int = option(8, min=1, doc="rank r of each update B @ A")
    alpha: float = option(DEFAULT_ALPHA, gt=0, aliases=("lora_alpha",), doc="scale: the update is "
                          "(alpha / r) * B @ A; lora_alpha is the spelling that stacks with "
                          "distillation's alpha")
    dropout: float = option(0.0, min=0.0, lt=1.0, doc="dropout on the adapter's input")
    targets: Tuple[str, ...] = option(DEFAULT_TARGETS, check=_check_targets,
                                      doc="regexes fully matching the layers to wrap")
    train_head: bool = option(True, doc="the CTC head trains fully (no adapter on it)")


@register_technique("lora")
class LoRA(TrainerHooks):
    """Frozen model + low-rank adapters (+ the CTC head, ``train_head``)."""

    adapts_model = True
    Options = LoRAOptions

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.wrapped: List[str] = []
        self.head: Optional[str] = None
        self.counts: Dict[str, Any] = {"trainable": 0, "total": 0, "trainable_percent": 0.0}

    # -------------------------------------------------------------- hooks
    def prepare_model(self, model: Any, run: RunView) -> Any:
        o = self.options
        for p in model.parameters():
            p.stop_gradient = True
        self.head = find_head(model)
        if o.train_head and self.head is None:
            raise ConfigError(f"Technique.train_head: {getattr(model, 'arch', 'the model')} has "
                              f"no CTC head layer ({' or '.join(HEAD_LAYERS)})")
        # A fully trained head needs no adapter on top.
        exclude = [self.head] if o.train_head and self.head else []
        self.wrapped = inject_lora(model, o.targets, o.rank, o.alpha, o.dropout, exclude)
        if not self.wrapped:
            eligible = [n for n, l in model.named_sublayers()
                        if isinstance(l, nn.Linear) or
                        (isinstance(l, nn.Conv2D) and conv_ineligibility(l) is None)]
            raise ConfigError(f"Technique.targets: no eligible layer of "
                              f"{getattr(model, 'arch', type(model).__name__)} matches "
                              f"{o.targets}; eligible layers include "
                              f"{summarise_names(eligible, 4)}")
        if o.train_head and self.head:
            head_layer = dict(model.named_sublayers())[self.head]
            for p in head_layer.parameters():
                p.stop_gradient = False
        for _, layer in lora_layers(model):
            layer.lora_A.stop_gradient = False
            layer.lora_B.stop_gradient = False
        set_lora_meta(model, o.targets, o.rank, o.alpha, self.head, o.train_head)
        self.counts = trainable_summary(model)
        logger.info("LoRA: %d layers wrapped (rank %d, alpha %g, dropout %g)%s; %s",
                    len(self.wrapped), o.rank, o.alpha, o.dropout,
                    f", CTC head {self.head} trains fully" if o.train_head else "",
                    self.counts["summary"])
        return model

    def state_dict(self) -> Dict[str, Any]:
        o = self.options
        return {"rank": o.rank, "alpha": o.alpha, "layers": list(self.wrapped),
                "train_head": o.train_head}

    def set_state_dict(self, state: Dict[str, Any]) -> None:
        # Resume with other LoRA settings would fail on shapes (rank) or, worse, silently change
        # the model (alpha): say which setting differs instead.
        for key, mine in (("rank", self.options.rank), ("alpha", self.options.alpha),
                          ("train_head", self.options.train_head)):
            if key in state and state[key] != mine:
                raise ConfigError(f"Technique.{key}: the checkpoint was trained with {key} "
                                  f"{state[key]!r}, the config says {mine!r}")
        if "layers" in state and self.wrapped and sorted(state["layers"]) != sorted(self.wrapped):
            raise ConfigError(f"Technique.targets: the checkpoint has adapters on "
                              f"{len(state['layers'])} layers, the config wraps "
                              f"{len(self.wrapped)}")

    def describe(self) -> Dict[str, Any]:
        o, c = self.options, self.counts
        return {"name": self.name, "rank": o.rank, "alpha": o.alpha, "dropout": o.dropout,
                "targets": list(o.targets), "train_head": o.train_head,
                "wrapped_layers": len(self.wrapped),
                "trainable": f"trainable {c['trainable']:,} of {c['total']:,} "
                             f"({c['trainable_percent']:.1f}%)",
                "trainable_parameters": c["trainable"], "total_parameters": c["total"],
                "why": "few trainable parameters: little data, little memory, small adapter "
                       "files; the frozen base keeps its pretrained features"}

"""``confidence_penalty``: a loss-level vinocr technique, installed as its own package.

A confidence penalty (Pereyra et al., 2017, "Regularizing Neural Networks by Penalizing Confident
Output Distributions") discourages the recogniser from putting all of every frame's probability on
one class, which keeps it from over-fitting a small fine-tuning set. It is written here as the KL
divergence from the uniform distribution, which has the gradient of the negative entropy but is
never negative (0 iff a frame's output is uniform)::

    loss = CTC + w * mean over frames of KL(softmax(logits_t) || U)
    KL(p || U) = sum_c p_c log p_c + log C = log C - H(p)

``w`` is ``weight``, reached linearly over the first ``warmup_steps`` optimizer steps (0: at
once). The added term is logged as ``train/confidence_penalty``, and the run report
(``report.json``) says how large it was on average.

Stack it after an adaptation technique: ``--technique frozen_backbone+confidence_penalty``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict

import paddle.nn.functional as F

from vinocr.engine.hooks import LossOutput, RunView, TrainerHooks, option


@dataclass(frozen=True)
class ConfidencePenaltyOptions:
    weight: float = option(0.1, min=0.0, doc="weight w of the penalty")
    warmup_steps: int = option(0, min=0, doc="optimizer steps over which w ramps up from 0")


class ConfidencePenalty(TrainerHooks):
    name = "confidence_penalty"  # vinocr sets it to the entry point's name when it loads the class
    # adapts_model stays False: this technique only changes the loss, so it stacks after any
    # adaptation technique.
    Options = ConfidencePenaltyOptions

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)  # validates the options into self.options
        self.steps = 0
        self.penalty_sum = 0.0

    def current_weight(self, run: RunView) -> float:
        o = self.options
        if o.warmup_steps == 0:
            return o.weight
        return o.weight * min(1.0, (run.global_step + 1) / o.warmup_steps)

    def loss(self, out: LossOutput, logits: Any, batch: Dict[str, Any], run: RunView
             ) -> LossOutput:
        w = self.current_weight(run)
        if w == 0.0:
            return out
        # logits: [batch, frames, classes]; float32 even under AMP.
        log_p = F.log_softmax(logits.astype("float32"), axis=-1)
        kl = (log_p.exp() * log_p).sum(axis=-1).mean() + math.log(int(logits.shape[-1]))
        term = w * kl
        self.steps += 1
        self.penalty_sum += float(term)
        return LossOutput(out.loss + term, {**out.terms, "confidence_penalty": float(term)})

    # Saved in every checkpoint, so a resumed run reports the same averages.
    def state_dict(self) -> Dict[str, Any]:
        return {"steps": self.steps, "penalty_sum": self.penalty_sum}

    def set_state_dict(self, state: Dict[str, Any]) -> None:
        self.steps = int(state.get("steps", 0))
        self.penalty_sum = float(state.get("penalty_sum", 0.0))

    def describe(self) -> Dict[str, Any]:
        return {"name": self.name, "penalty": "w * mean per-frame KL(softmax || uniform)",
                "penalised_steps": self.steps,
                "mean_penalty": self.penalty_sum / self.steps if self.steps else 0.0}

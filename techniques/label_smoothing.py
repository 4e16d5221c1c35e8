"""``label_smoothing``: a loss-level technique (stack it: ``full+label_smoothing``).

CTC has no one-hot targets to smooth, so the usual equivalent is used: a penalty pulling every
frame's output distribution towards uniform, which keeps the model from becoming over-confident on
a small fine-tuning set (better-calibrated confidences, softer fits to label noise)::

    loss = CTC + epsilon * mean over frames and samples of KL(U || softmax(logits_t))
    KL(U || p) = sum_c (1/C) log((1/C) / p_c) = -mean_c log p_c - log C      (>= 0, 0 iff uniform)

Every one of the T frames counts: the recogniser sees fixed-size inputs, so there are no padded
frames to mask. The logged term ``smooth`` is the added ``epsilon * KL`` (so the logged ``ctc`` and
``smooth`` add up to the loss).
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Dict

import paddle
import paddle.nn.functional as F

from techniques import register_technique
from vinocr.engine.hooks import LossOutput, RunView, TrainerHooks, option

logger = logging.getLogger(__name__)


def uniform_kl(logits: paddle.Tensor) -> paddle.Tensor:
    """Mean over frames (and batch) of KL(uniform || softmax(logits)) for logits [..., C]."""
    # float32: log-softmax under float16 AMP loses the small probabilities this term is about.
    log_probs = F.log_softmax(logits.astype("float32"), axis=-1)
    per_frame = -log_probs.mean(axis=-1) - math.log(int(logits.shape[-1]))
    return per_frame.mean()


@dataclass(frozen=True)
class LabelSmoothingOptions:
    epsilon: float = option(0.1, min=0.0, max=1.0, doc="weight of the KL-to-uniform penalty")


@register_technique("label_smoothing")
class LabelSmoothing(TrainerHooks):
    Options = LabelSmoothingOptions

    @property
    def epsilon(self) -> float:
        return self.options.epsilon

    def loss(self, out: LossOutput, logits: Any, batch: Dict[str, Any], run: RunView
             ) -> LossOutput:
        if self.epsilon == 0.0:
            return out
        smooth = self.epsilon * uniform_kl(logits)
        return LossOutput(out.loss + smooth, {**out.terms, "smooth": float(smooth)})

    def describe(self) -> Dict[str, Any]:
        return {"name": self.name, "epsilon": self.epsilon,
                "penalty": "epsilon * mean per-frame KL(uniform || softmax)"}

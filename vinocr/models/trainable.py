"""What of a model trains: the one way to count trainable parameters and to keep the BatchNorms of
frozen layers frozen. Used by the engine and by the techniques (which get it through
``techniques.parts``), so both count and freeze alike.

BatchNorm running statistics (``_mean`` / ``_variance``) are Paddle parameters that never train
(``stop_gradient`` always True): they are not counted as parameters here.
"""
from __future__ import annotations

from typing import Any, Dict, List, Set, Tuple

import numpy as np
import paddle

from vinocr.models.layers import batchnorm_layers, running_stat_ids


def learnable_parameters(model: paddle.nn.Layer) -> List[Tuple[str, paddle.Tensor]]:
    """``(name, parameter)`` of every parameter that can train: running statistics excluded, shared
    parameters once (first name)."""
    stats = running_stat_ids(model)
    seen: Set[int] = set()
    out = []
    for name, p in model.named_parameters():
        if id(p) in stats or id(p) in seen:
            continue
        seen.add(id(p))
        out.append((name, p))
    return out


def count_params(model: paddle.nn.Layer) -> Tuple[int, int]:
    """``(trainable, total)`` numbers of parameter elements (BatchNorm statistics not counted)."""
    trainable = total = 0
    for _, p in learnable_parameters(model):
        n = int(np.prod(p.shape)) if len(p.shape) else 1
        total += n
        if not p.stop_gradient:
            trainable += n
    return trainable, total


def trainable_summary(model: paddle.nn.Layer) -> Dict[str, Any]:
    """Counts plus the sentence ``trainable X of Y parameters (Z%)`` for logs and reports."""
    trainable, total = count_params(model)
    percent = 100.0 * trainable / total if total else 0.0
    return {"trainable": trainable, "total": total, "trainable_percent": round(percent, 3),
            "summary": f"trainable {trainable:,} of {total:,} parameters ({percent:.2f}%)"}


def eval_frozen_batchnorms(model: paddle.nn.Layer) -> List[str]:
    """Put every BatchNorm whose affine parameters are all frozen in eval mode, so a frozen layer
    keeps its statistics too (in train mode they would drift towards the new data's batches while
    the weights around them cannot adapt). The trainer calls it after every ``model.train()``.
    Returns the layer names."""
    names = []
    for name, layer in batchnorm_layers(model):
        affine = [p for p in (getattr(layer, "weight", None), getattr(layer, "bias", None))
                  if p is not None]
        if affine and all(p.stop_gradient for p in affine):
            layer.eval()
            names.append(name)
    return names

"""The recogniser: ``backbone`` + ``head``, producing CTC logits [N, T, num_classes]."""
from __future__ import annotations

from typing import Any, Dict

import paddle
import paddle.nn as nn
import paddle.nn.functional as F


class Recognizer(nn.Layer):
    """``forward`` returns logits; :meth:`predict_proba` the softmax used by decoders and export.

    Attributes ``arch`` and ``arch_kwargs`` record how the model was built so checkpoints and
    exports can rebuild it.
    """

    def __init__(self, backbone: nn.Layer, head: nn.Layer, arch: str, num_classes: int,
                 arch_kwargs: Dict[str, Any]) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.arch = arch
        self.num_classes = num_classes
        self.arch_kwargs = dict(arch_kwargs)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.head(self.backbone(x))

    def predict_proba(self, x: paddle.Tensor) -> paddle.Tensor:
        return F.softmax(self.forward(x), axis=-1)

    def optimize_for_inference(self) -> "Recognizer":
        """Exact, inference-only simplifications (after :meth:`rep`): BatchNorms folded into
        their convs and learnable affines folded into neighbouring convs. The result no longer
        loads training checkpoints by key; export works on a copy."""
        self.eval()
        self.rep()
        if hasattr(self.backbone, "fold_affine"):
            self.backbone.fold_affine()
        for layer in self.sublayers():
            if hasattr(layer, "fold_bn"):
                layer.fold_bn()
        return self

    @property
    def is_deploy(self) -> bool:
        return not any(getattr(l, "is_repped", True) is False for l in self.sublayers())

    def rep(self) -> "Recognizer":
        """Fold re-parameterisable branches into single convolutions (training -> deploy form).

        Outputs are equal in eval mode. Call on a model in eval mode or after training."""
        if hasattr(self.backbone, "rep"):
            self.backbone.rep()
        self.arch_kwargs["deploy"] = True
        return self

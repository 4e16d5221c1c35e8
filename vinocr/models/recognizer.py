"""The recognition network: ``backbone`` + ``head``, producing CTC logits [N, T, num_classes]
(the inference API over an exported model is :class:`vinocr.predict.Recognizer`)."""
from __future__ import annotations

from typing import Any, Dict, Tuple

import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F


def ctc_to_gtc_targets(labels: paddle.Tensor, lengths: paddle.Tensor) -> paddle.Tensor:
    """CTC label ids [N, L] -> GTC targets [N, L + 2]: ``<s>`` (2), id + 3 per character, ``</s>``
    (3), padding 0 (PaddleOCR's NRTR class layout: blank, <unk>, <s>, </s>, dictionary...)."""
    ids = labels.numpy()
    lens = lengths.numpy().reshape(-1)
    out = np.zeros((ids.shape[0], ids.shape[1] + 2), dtype="int64")
    for row, (seq, n) in enumerate(zip(ids, lens)):
        out[row, 0] = 2
        out[row, 1:n + 1] = seq[:n] + 3
        out[row, n + 1] = 3
    return paddle.to_tensor(out)


class RecognitionNet(nn.Layer):
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

    def forward_train(self, x: paddle.Tensor, labels: paddle.Tensor, lengths: paddle.Tensor
                      ) -> Tuple[paddle.Tensor, Dict[str, paddle.Tensor]]:
        """CTC logits plus auxiliary losses of training-only branches (GTC), keyed by name."""
        features = self.backbone(x)
        logits = self.head(features)
        aux: Dict[str, paddle.Tensor] = {}
        if getattr(self.head, "has_gtc", False):
            from vinocr.models.gtc_head import gtc_loss, trim_gtc_targets

            targets = trim_gtc_targets(ctc_to_gtc_targets(labels, lengths))
            aux["gtc"] = gtc_loss(self.head.gtc_logits(features, targets), targets)
        return logits, aux

    def predict_proba(self, x: paddle.Tensor) -> paddle.Tensor:
        return F.softmax(self.forward(x), axis=-1)

    def feature_stages(self) -> Tuple[Tuple[str, nn.Layer], ...]:
        """The leading stages whose outputs can be computed once and fed to the rest of the
        network (the trainer's feature cache): ``(name, layer)`` pairs in forward order, each
        layer taking the previous one's output. ``()`` when the architecture does not offer it,
        i.e. when its head declares no ``feature_stages`` (CRNN). PP-OCRv4: ``backbone``, then
        ``neck`` (the head's SVTR encoder)."""
        head_stages = getattr(self.head, "feature_stages", None)
        if head_stages is None:
            return ()
        return (("backbone", self.backbone),) + tuple(head_stages())

    def forward_from(self, features: paddle.Tensor, stage: str) -> paddle.Tensor:
        """CTC logits from the output of feature stage ``stage`` (see :meth:`feature_stages`)."""
        if stage == "backbone":
            return self.head(features)
        return self.head.forward_from(features, stage)

    def optimize_for_inference(self) -> "RecognitionNet":
        """Exact, inference-only simplifications (after :meth:`rep`): BatchNorms folded into
        their convs and learnable affines folded into neighbouring convs. The result no longer
        loads training checkpoints by key; export works on a copy."""
        self.eval()
        self.rep()
        if hasattr(self.head, "drop_gtc"):
            self.head.drop_gtc()
        if hasattr(self.backbone, "fold_affine"):
            self.backbone.fold_affine()
        for layer in self.sublayers():
            if hasattr(layer, "fold_bn"):
                layer.fold_bn()
        return self

    @property
    def is_deploy(self) -> bool:
        return not any(getattr(l, "is_repped", True) is False for l in self.sublayers())

    def rep(self) -> "RecognitionNet":
        """Fold re-parameterisable branches into single convolutions (training -> deploy form).

        Outputs are equal in eval mode. Call on a model in eval mode or after training."""
        if hasattr(self.backbone, "rep"):
            self.backbone.rep()
        self.arch_kwargs["deploy"] = True
        return self

"""Recognition heads with PaddleOCR's key names: ``head.ctc_encoder.encoder.*``, ``head.ctc_head.fc.*``."""
from __future__ import annotations

from typing import Any, Dict, Optional

import paddle
import paddle.nn as nn

from vinocr.models.svtr_neck import EncoderWithSVTR


class SequenceEncoder(nn.Layer):
    """SVTR neck, then [N, C, 1, T] -> [N, T, C]."""

    def __init__(self, in_channels: int, **neck: Any) -> None:
        super().__init__()
        self.encoder = EncoderWithSVTR(in_channels, **neck)
        self.out_channels = self.encoder.out_channels

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        z = self.encoder(x)
        return z.squeeze(2).transpose([0, 2, 1])


class CTCHead(nn.Layer):
    """Linear projection to class logits (key ``fc``; Paddle Linear weights are [in, out])."""

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.fc = nn.Linear(in_channels, num_classes)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.fc(x)


class MultiHead(nn.Layer):
    """PP-OCRv4's head container. vinocr trains the CTC branch (SVTR neck + linear); the key
    layout matches PaddleOCR so official checkpoints load. The GTC/NRTR auxiliary branch of the
    official training recipe is not built here; its checkpoint keys are reported as skipped."""

    def __init__(self, in_channels: int, num_classes: int,
                 neck: Optional[Dict[str, Any]] = None) -> None:
        super().__init__()
        self.ctc_encoder = SequenceEncoder(in_channels, **(neck or {}))
        self.ctc_head = CTCHead(self.ctc_encoder.out_channels, num_classes)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.ctc_head(self.ctc_encoder(x))

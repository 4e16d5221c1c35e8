"""Recognition heads with PaddleOCR's key names: ``head.ctc_encoder.encoder.*``, ``head.ctc_head.fc.*``."""
from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import paddle
import paddle.nn as nn

from vinocr.models.svtr_neck import EncoderWithSVTR


class SequenceEncoder(nn.Layer):
    """SVTR neck, then [N, C, 1, T] -> [N, T, C]. ``encoder`` replaces the PP-OCRv4 neck built
    from ``neck`` (PP-OCRv6 brings its own; it must map [N, C, 1, T] to [N, C', 1, T] and have
    ``out_channels``)."""

    def __init__(self, in_channels: int, encoder: Optional[nn.Layer] = None, **neck: Any) -> None:
        super().__init__()
        self.encoder = encoder if encoder is not None else EncoderWithSVTR(in_channels, **neck)
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
    """PP-OCRv4's head container: the CTC branch (SVTR neck + linear) and, with ``gtc=True``, the
    GTC/NRTR attention branch that only trains (keys ``before_gtc.*``, ``gtc_head.*``, as in
    PaddleOCR, so official training checkpoints load whole). ``forward`` is always CTC only."""

    def __init__(self, in_channels: int, num_classes: int,
                 neck: Optional[Dict[str, Any]] = None, gtc: bool = False,
                 encoder: Optional[nn.Layer] = None) -> None:
        super().__init__()
        self.ctc_encoder = SequenceEncoder(in_channels, encoder, **(neck or {}))
        self.ctc_head = CTCHead(self.ctc_encoder.out_channels, num_classes)
        self.has_gtc = gtc
        if gtc:
            from vinocr.models.gtc_head import GTCBranch

            # GTC classes = CTC classes + 4 special tokens (PaddleOCR's NRTR convention).
            branch = GTCBranch(in_channels, num_classes + 4)
            self.before_gtc, self.gtc_head = branch.before_gtc, branch.gtc_head

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.ctc_head(self.ctc_encoder(x))

    def feature_stages(self) -> Tuple[Tuple[str, nn.Layer], ...]:
        """The stages of this head that run apart, after the backbone: the SVTR neck (see
        :meth:`vinocr.models.recognizer.RecognitionNet.feature_stages`)."""
        return (("neck", self.ctc_encoder),)

    def forward_from(self, features: paddle.Tensor, stage: str) -> paddle.Tensor:
        """CTC logits from the output of the head's stage ``stage`` (``neck``)."""
        if stage != "neck":
            raise ValueError(f"unknown feature stage {stage!r}; this head has: neck")
        return self.ctc_head(features)

    def gtc_logits(self, features: paddle.Tensor, targets: paddle.Tensor) -> paddle.Tensor:
        """Teacher-forced GTC logits from the backbone features (training only)."""
        return self.gtc_head(self.before_gtc(features), targets)

    def drop_gtc(self) -> None:
        """Remove the training-only branch (before export)."""
        if self.has_gtc:
            del self.before_gtc
            del self.gtc_head
            self.has_gtc = False

"""CRNN baseline: a VGG-style CNN, a 2-layer bidirectional LSTM and a CTC projection.

Small enough to train from scratch on CPU; T = W / 8 like PP-OCRv4, so the same decoders, labels
and max_text_length apply.
"""
from __future__ import annotations

import paddle
import paddle.nn as nn


def _conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2D(cin, cout, 3, padding=1, bias_attr=False), nn.BatchNorm2D(cout),
                         nn.ReLU())


class CRNNBackbone(nn.Layer):
    """48 x W -> [N, C, 1, W/8]: pools (2,2), (2,2), (2,1), (2,2) then average over height."""

    def __init__(self, channels: tuple = (32, 64, 128, 256)) -> None:
        super().__init__()
        c1, c2, c3, c4 = channels
        self.features = nn.Sequential(
            _conv(3, c1), nn.MaxPool2D(2, 2),
            _conv(c1, c2), nn.MaxPool2D(2, 2),
            _conv(c2, c3), _conv(c3, c3), nn.MaxPool2D((2, 1), (2, 1)),
            _conv(c3, c4), _conv(c4, c4), nn.MaxPool2D(2, 2))
        self.out_channels = c4

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.features(x).mean(axis=2, keepdim=True)


class RNNHead(nn.Layer):
    def __init__(self, in_channels: int, num_classes: int, hidden: int = 128) -> None:
        super().__init__()
        self.rnn = nn.LSTM(in_channels, hidden, num_layers=2, direction="bidirect")
        self.fc = nn.Linear(2 * hidden, num_classes)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        seq = x.squeeze(2).transpose([0, 2, 1])
        out, _ = self.rnn(seq)
        return self.fc(out)

"""PP-OCRv6 small recogniser: PP-LCNetV4 backbone + a light SVTR neck + CTC.

Written from paddlex 3.7's dygraph definition (``text_recognition/modeling/pp_ocrv6_small_rec.py``
and ``image_classification/modeling/pplcnetv4.py``) and checked against the ONNX that
``rapidocr==3.10.0`` ships (:mod:`vinocr.models.onnx_import` imports it exactly). The network
exists here in one form only: the ONNX's, with every backbone BatchNorm folded into its conv
(convs with bias, like PP-OCRv4's deploy form). The neck keeps its BatchNorms, as the ONNX does.

Shapes for a 48 x W input: the stem halves twice (12 x W/4, 96 channels), stages 3 and 4 halve the
height only (3 x W/4, 384 channels), and ``avg_pool2d([3, 2])`` gives 1 x W/8: T = W/8 as in
PP-OCRv4, so labels, decoders and export are shared.

Parameter names (what the techniques address, see :mod:`techniques.parts`)::

    backbone.stem.{stem1,stem2a,stem2b,stem3,stem4}.conv
    backbone.stages.{0..3}.{j}.token_conv           depthwise 3 x 3 (vinocr's fast CPU op)
    backbone.stages.{0..3}.{j}.se.{conv1,conv2}     squeeze-excitation (some blocks)
    backbone.stages.{0..3}.{j}.channel_conv{1,2}    1 x 1 pointwise (LoRA targets)
    head.ctc_encoder.encoder.conv_block.{0,1,2}     1 x 1, 1 x 1, depthwise 1 x 7 (+ BN, swish)
    head.ctc_encoder.encoder.svtr_block.{i}.*       transformer blocks (as PP-OCRv4's)
    head.ctc_encoder.encoder.norm, head.ctc_head.fc
"""
from __future__ import annotations

from typing import Sequence, Tuple, Union

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from vinocr.models.layers import SELayer
from vinocr.models.svtr_neck import Block, ConvBNAct, mix_tokens

Stride = Union[int, Tuple[int, int]]

#: (kernel, in, out, stride, SE) per block and stage: paddlex's defaults for PP-OCRv6 small
#: (``_config_pplcnetv4.DEFAULT_BLOCK_CONFIGS``), which the rapidocr ONNX matches block by block.
#: Stride (2, 1) halves the height only, keeping the horizontal resolution CTC needs.
SMALL_STAGES: Tuple[Tuple[Tuple[int, int, int, Stride, bool], ...], ...] = (
    ((3, 96, 96, 1, True),),
    ((3, 96, 96, 1, False), (3, 96, 96, 1, False)),
    ((3, 96, 192, (2, 1), False),) + ((3, 192, 192, 1, True), (3, 192, 192, 1, False)) * 3,
    ((3, 192, 384, (2, 1), False), (3, 384, 384, 1, True), (3, 384, 384, 1, False)),
)
#: (input, stem width, output) channels of the stem.
SMALL_STEM = (3, 48, 96)
#: One row / column of padding at the bottom / right ([top, bottom, left, right]).
_BOTTOM_RIGHT = [0, 1, 0, 1]


class ConvReLU(nn.Layer):
    """Conv with bias (its BatchNorm folded in) + ReLU: one layer of the stem (key ``conv``).
    ``padding`` defaults to ``(k - 1) // 2`` on every side."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 padding: Union[int, Sequence[int], None] = None) -> None:
        super().__init__()
        self.conv = nn.Conv2D(in_channels, out_channels, kernel_size, stride=stride,
                              padding=(kernel_size - 1) // 2 if padding is None else padding)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return F.relu(self.conv(x))


class LargeStem(nn.Layer):
    """PP-LCNetV4's "large" stem: a 3 x 3 stride-2 conv, then two paths (a max pool, and two
    2 x 2 convs) concatenated, then a 3 x 3 stride-2 conv and a 1 x 1 conv."""

    def __init__(self, channels: Sequence[int] = SMALL_STEM) -> None:
        super().__init__()
        c_in, c_mid, c_out = channels
        self.stem1 = ConvReLU(c_in, c_mid, 3, stride=2)
        # PaddleOCR pads one zero row and column at the bottom/right before each 2 x 2 conv
        # (F.pad): the same as the conv's own asymmetric padding [top, bottom, left, right].
        # Written as conv padding because paddle2onnx 2.1 exports that F.pad wrongly (its ONNX
        # then reads uninitialised memory); the rapidocr ONNX has it as SAME_UPPER.
        self.stem2a = ConvReLU(c_mid, c_mid // 2, 2, padding=_BOTTOM_RIGHT)
        self.stem2b = ConvReLU(c_mid // 2, c_mid, 2, padding=_BOTTOM_RIGHT)
        self.stem3 = ConvReLU(c_mid * 2, c_mid, 3, stride=2)
        self.stem4 = ConvReLU(c_mid, c_out, 1)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        x = self.stem1(x)
        branch = self.stem2b(self.stem2a(x))
        # Max pool over the same bottom/right-padded map. PaddleOCR pads with zeros, pooling
        # ignores padding; equal here because x >= 0 after the ReLU and every window holds a
        # real pixel.
        pooled = F.max_pool2d(x, kernel_size=2, stride=1, padding=_BOTTOM_RIGHT)
        x = paddle.concat([pooled, branch], axis=1)
        return self.stem4(self.stem3(x))


class LCNetV4Block(nn.Layer):
    """Depthwise k x k (``token_conv``), optional SE, then a 1 x 1 expand (x2) / GELU / 1 x 1
    project pair (``channel_conv1``/``channel_conv2``), with a residual around that pair when
    shape is kept. No activation after the depthwise conv (PP-LCNetV4 differs from V3 here)."""

    def __init__(self, kernel_size: int, in_channels: int, out_channels: int, stride: Stride,
                 use_se: bool) -> None:
        super().__init__()
        self.token_conv = nn.Conv2D(in_channels, in_channels, kernel_size, stride=stride,
                                    padding=kernel_size // 2, groups=in_channels)
        self.se = SELayer(in_channels) if use_se else None
        self.channel_conv1 = nn.Conv2D(in_channels, in_channels * 2, 1)
        self.channel_conv2 = nn.Conv2D(in_channels * 2, out_channels, 1)
        self.has_residual = in_channels == out_channels and stride == 1

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        x = self.token_conv(x)
        if self.se is not None:
            x = self.se(x)
        out = self.channel_conv2(F.gelu(self.channel_conv1(x)))
        return x + out if self.has_residual else out


class PPLCNetV4(nn.Layer):
    """Backbone; output [N, 384, 1, W/8] for 48-pixel-high inputs (``avg_pool2d([3, 2])`` in
    training and inference alike, as :class:`vinocr.models.pplcnetv3.PPLCNetV3` does)."""

    def __init__(self, stages: Sequence[Sequence[Tuple]] = SMALL_STAGES,
                 stem: Sequence[int] = SMALL_STEM) -> None:
        super().__init__()
        self.stem = LargeStem(stem)
        self.stages = nn.LayerList([nn.Sequential(*[LCNetV4Block(*cfg) for cfg in blocks])
                                    for blocks in stages])
        self.out_channels = int(stages[-1][-1][2])

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        return F.avg_pool2d(x, [3, 2])


class LightSVTRNeck(nn.Layer):
    """PP-OCRv6's neck: two 1 x 1 ConvBNAct from the backbone features (one is the shortcut), a
    depthwise 1 x 7 ConvBNAct added to the other, ``depth`` SVTR transformer blocks over the
    feature row, a LayerNorm, and the shortcut added back. [N, C, 1, T] -> [N, dims, 1, T].

    Lighter than PP-OCRv4's neck: no ``in_channels // 8`` squeeze, no concat with the input.
    LayerNorm epsilon 1e-5 in the blocks and 1e-6 in the final norm, as in the rapidocr ONNX
    (and PP-OCRv4's neck; paddlex's config says 1e-6 for all; the importer checks the ONNX's)."""

    def __init__(self, in_channels: int, dims: int = 120, depth: int = 2, num_heads: int = 8,
                 mlp_ratio: float = 2.0, kernel_size: Sequence[int] = (1, 7),
                 drop_rate: float = 0.1, attn_drop_rate: float = 0.1) -> None:
        super().__init__()
        pad = [kernel_size[0] // 2, kernel_size[1] // 2]
        self.conv_block = nn.LayerList([
            ConvBNAct(in_channels, dims),
            ConvBNAct(in_channels, dims),
            ConvBNAct(dims, dims, kernel_size, pad, groups=dims),
        ])
        self.svtr_block = nn.LayerList([Block(dims, num_heads, mlp_ratio, drop_rate,
                                              attn_drop_rate, 1e-5) for _ in range(depth)])
        self.norm = nn.LayerNorm(dims, epsilon=1e-6)
        self.out_channels = dims

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        shortcut = self.conv_block[0](x)
        z = self.conv_block[1](x)
        z = z + self.conv_block[2](z)
        return mix_tokens(z, self.svtr_block, self.norm) + shortcut


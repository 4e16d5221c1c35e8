"""PP-LCNetV3, the recognition variant used by PP-OCRv4 mobile (scale 0.95 -> 16..480 channels)."""
from __future__ import annotations

from typing import Dict, List, Tuple

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from vinocr.models.layers import ConvBN, LearnableRepLayer, SELayer, make_divisible

# (kernel, in, out, depthwise stride, SE) per block, before scaling; strides act on (H, W), so
# (2, 1) halves the height only: text lines keep their horizontal resolution for CTC.
NET_CONFIG_REC: Dict[str, List[Tuple]] = {
    "blocks2": [(3, 16, 32, 1, False)],
    "blocks3": [(3, 32, 64, 1, False), (3, 64, 64, 1, False)],
    "blocks4": [(3, 64, 128, (2, 1), False), (3, 128, 128, 1, False)],
    "blocks5": [(3, 128, 256, (1, 2), False)] + [(5, 256, 256, 1, False)] * 4,
    "blocks6": [(5, 256, 512, (2, 1), True), (5, 512, 512, 1, True), (5, 512, 512, (2, 1), False),
                (5, 512, 512, 1, False)],
}
STAGES = ("blocks2", "blocks3", "blocks4", "blocks5", "blocks6")


class LCNetV3Block(nn.Layer):
    def __init__(self, in_channels: int, out_channels: int, stride, dw_size: int, use_se: bool,
                 num_conv_branches: int, deploy: bool) -> None:
        super().__init__()
        self.dw_conv = LearnableRepLayer(in_channels, in_channels, dw_size, stride,
                                         groups=in_channels, num_conv_branches=num_conv_branches,
                                         deploy=deploy)
        self.se = SELayer(in_channels) if use_se else None
        self.pw_conv = LearnableRepLayer(in_channels, out_channels, 1, 1,
                                         num_conv_branches=num_conv_branches, deploy=deploy)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        x = self.dw_conv(x)
        if self.se is not None:
            x = self.se(x)
        return self.pw_conv(x)


class PPLCNetV3(nn.Layer):
    """Backbone; output [N, C, 1, W/8] for 48-pixel-high inputs.

    The final pooling is ``avg_pool2d([3, 2])`` in training *and* inference. PaddleOCR trains with
    ``adaptive_avg_pool2d([1, 40])`` and infers with ``avg_pool2d([3, 2])``; the two agree only at
    width 320, and one rule everywhere keeps fine-tuning, evaluation and export consistent at any
    width.
    """

    def __init__(self, scale: float = 0.95, num_conv_branches: int = 4, deploy: bool = False
                 ) -> None:
        super().__init__()
        self.scale = scale
        self.conv1 = ConvBN(3, make_divisible(16 * scale), 3, stride=2)
        for stage in STAGES:
            blocks = [LCNetV3Block(make_divisible(cin * scale), make_divisible(cout * scale), s, k,
                                   se, num_conv_branches, deploy)
                      for k, cin, cout, s, se in NET_CONFIG_REC[stage]]
            setattr(self, stage, nn.Sequential(*blocks))
        self.out_channels = make_divisible(NET_CONFIG_REC["blocks6"][-1][2] * scale)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        x = self.conv1(x)
        for stage in STAGES:
            x = getattr(self, stage)(x)
        return F.avg_pool2d(x, [3, 2])

    def rep(self) -> None:
        for layer in self.sublayers():
            if isinstance(layer, LearnableRepLayer):
                layer.rep()

    def freeze_rep_batchnorm(self) -> None:
        """Training form: normalise every branch with its running statistics, in training too
        (and never update them). Without this, batch statistics would replace the statistics a
        training form expanded from deploy weights depends on, and change its function."""
        for layer in self.sublayers():
            if isinstance(layer, LearnableRepLayer):
                for bn in layer.batchnorms():
                    bn._use_global_stats = True

    def fold_affine(self) -> None:
        """Inference-only: fold every learnable affine into a neighbouring conv where exact.

        ``lab`` after each conv folds into that conv. ``act.lab`` after the depthwise conv folds
        into the following 1x1 pointwise conv when no SE sits between them (a 1x1 conv has no
        padding, so a constant shift passes through it exactly; a padded k x k conv would not).
        """
        self.rep()
        for stage in STAGES:
            for block in getattr(self, stage):
                block.dw_conv.fold_affine()
                block.pw_conv.fold_affine()
                act = block.dw_conv.act
                if block.se is None and not act.lab_folded and block.dw_conv.stride != 2:
                    s = float(act.lab.scale.numpy()[0])
                    b = float(act.lab.bias.numpy()[0])
                    conv = block.pw_conv.reparam_conv
                    w = conv.weight.numpy()
                    # pw(s*h + b) = (s*W) h + (bias + s_pw-independent W.sum * b)
                    conv.bias.set_value(conv.bias.numpy() + b * w.sum(axis=(1, 2, 3)))
                    conv.weight.set_value(w * s)
                    act.lab_folded = True

"""Building blocks of PP-LCNetV3 with PaddleOCR's parameter names.

A :class:`LearnableRepLayer` exists in two forms. The *training form* sums several k x k ConvBN
branches, a 1 x 1 ConvBN branch and an identity BatchNorm (MobileOne-style re-parameterisation).
The *deploy form* holds one convolution with bias (``reparam_conv``). :meth:`LearnableRepLayer.rep`
folds the training form into the deploy form at equal outputs (in eval mode, where BatchNorm uses
its running statistics).
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Set, Tuple, Union

import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

Stride = Union[int, Tuple[int, int], Sequence[int]]


def make_divisible(v: float, divisor: int = 16, min_value: Optional[int] = None) -> int:
    """Round channel counts to multiples of 16, as PP-LCNetV3 does (scale 0.95: 256 -> 240)."""
    min_value = min_value or divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def _is_unit(stride: Stride) -> bool:
    return stride == 1 or (not isinstance(stride, int) and tuple(stride) == (1, 1))


class ConvBN(nn.Layer):
    """Conv (no bias) + BatchNorm; keys ``conv.weight``, ``bn.{weight,bias,_mean,_variance}``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: Stride = 1,
                 groups: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2D(in_channels, out_channels, kernel_size, stride=stride,
                              padding=(kernel_size - 1) // 2, groups=groups, bias_attr=False)
        self.bn = nn.BatchNorm2D(out_channels)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.bn(self.conv(x))

    def fold_bn(self) -> None:
        """Inference-only: fold the BatchNorm into the conv (exact in eval mode)."""
        self.conv, self.bn = fuse_conv_bn(self.conv, self.bn), nn.Identity()


class LearnableAffineBlock(nn.Layer):
    """``scale * x + bias`` with two learnable scalars (keys ``scale``, ``bias``)."""

    def __init__(self, scale_value: float = 1.0, bias_value: float = 0.0) -> None:
        super().__init__()
        self.scale = self.create_parameter(
            [1], default_initializer=nn.initializer.Constant(scale_value))
        self.bias = self.create_parameter(
            [1], default_initializer=nn.initializer.Constant(bias_value))

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.scale * x + self.bias


class Act(nn.Layer):
    """Hardswish followed by a learnable affine (keys ``lab.scale``, ``lab.bias``)."""

    def __init__(self) -> None:
        super().__init__()
        self.act = nn.Hardswish()
        self.lab = LearnableAffineBlock()
        self.lab_folded = False  # set when the next 1x1 conv absorbed the affine (export only)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        out = self.act(x)
        return out if self.lab_folded else self.lab(out)


def fuse_conv_bn(conv: nn.Conv2D, bn: nn.Layer) -> nn.Conv2D:
    """A conv with bias equal to ``bn(conv(x))`` with BatchNorm's running statistics."""
    if isinstance(bn, nn.Identity):
        return conv
    scale, shift = _bn_scale_shift(bn)
    fused = nn.Conv2D(conv._in_channels, conv._out_channels, conv._kernel_size,
                      stride=conv._stride, padding=conv._padding, groups=conv._groups)
    fused.weight.set_value(conv.weight.numpy() * scale[:, None, None, None])
    bias = conv.bias.numpy() if conv.bias is not None else 0.0
    fused.bias.set_value((bias * scale + shift).astype("float32"))
    return fused


def _bn_scale_shift(bn: nn.BatchNorm2D) -> Tuple[np.ndarray, np.ndarray]:
    std = np.sqrt(bn._variance.numpy() + bn._epsilon)
    scale = bn.weight.numpy() / std
    return scale, bn.bias.numpy() - bn._mean.numpy() * scale


class LearnableRepLayer(nn.Layer):
    """Re-parameterisable conv layer: training form (branches) or deploy form (``reparam_conv``)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: Stride = 1,
                 groups: int = 1, num_conv_branches: int = 4, deploy: bool = False) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.groups = kernel_size, stride, groups
        self.padding = (kernel_size - 1) // 2
        self.is_repped = deploy
        if deploy:
            self.reparam_conv = nn.Conv2D(in_channels, out_channels, kernel_size, stride=stride,
                                          padding=self.padding, groups=groups)
        else:
            self.identity = (nn.BatchNorm2D(in_channels)
                             if out_channels == in_channels and _is_unit(stride) else None)
            self.conv_kxk = nn.LayerList([ConvBN(in_channels, out_channels, kernel_size, stride,
                                                 groups) for _ in range(num_conv_branches)])
            self.conv_1x1 = (ConvBN(in_channels, out_channels, 1, stride, groups)
                             if kernel_size > 1 else None)
        self.lab = LearnableAffineBlock()
        self.act = Act()
        # Set by fold_affine() for inference export: the affines live inside the convs instead.
        self.lab_folded = False

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        if self.is_repped:
            out = self.reparam_conv(x)
            if not self.lab_folded:
                out = self.lab(out)
        else:
            out = 0
            if self.identity is not None:
                out = out + self.identity(x)
            if self.conv_1x1 is not None:
                out = out + self.conv_1x1(x)
            for conv in self.conv_kxk:
                out = out + conv(x)
            out = self.lab(out)
        # PaddleOCR skips the activation only for an integer stride of 2 (the detection variant);
        # the recogniser's strides are 1, (2, 1) or (1, 2), so every layer is activated.
        if self.stride != 2:
            out = self.act(out)
        return out

    def fold_affine(self) -> None:
        """Fold ``lab`` (scale*y + bias right after the conv) into ``reparam_conv``: exact, and it
        lets oneDNN fuse conv + hardswish at inference. Deploy form only; not for training."""
        if not self.is_repped or self.lab_folded:
            return
        scale = float(self.lab.scale.numpy()[0])
        shift = float(self.lab.bias.numpy()[0])
        conv = self.reparam_conv
        conv.weight.set_value(conv.weight.numpy() * scale)
        conv.bias.set_value(conv.bias.numpy() * scale + shift)
        self.lab_folded = True

    def fused_kernel_bias(self) -> Tuple[np.ndarray, np.ndarray]:
        """The single (kernel, bias) equal to the sum of the branches (BatchNorm in eval mode)."""
        k, pad = self.kernel_size, self.kernel_size // 2
        kernel = np.zeros([self.out_channels, self.in_channels // self.groups, k, k], np.float32)
        bias = np.zeros([self.out_channels], np.float32)
        for branch in self.conv_kxk:
            scale, shift = _bn_scale_shift(branch.bn)
            kernel += branch.conv.weight.numpy() * scale[:, None, None, None]
            bias += shift
        if self.conv_1x1 is not None:
            scale, shift = _bn_scale_shift(self.conv_1x1.bn)
            k1 = self.conv_1x1.conv.weight.numpy() * scale[:, None, None, None]
            kernel += np.pad(k1, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
            bias += shift
        if self.identity is not None:
            scale, shift = _bn_scale_shift(self.identity)
            per_group = self.in_channels // self.groups
            ident = np.zeros_like(kernel)
            for c in range(self.in_channels):
                ident[c, c % per_group, pad, pad] = 1.0
            kernel += ident * scale[:, None, None, None]
            bias += shift
        return kernel, bias

    def batchnorms(self) -> List[nn.BatchNorm2D]:
        """The branches' BatchNorms (empty in deploy form)."""
        if self.is_repped:
            return []
        bns = [branch.bn for branch in self.conv_kxk]
        if self.conv_1x1 is not None:
            bns.append(self.conv_1x1.bn)
        if self.identity is not None:
            bns.append(self.identity)
        return bns

    def rep(self) -> None:
        """Fold the branches into ``reparam_conv`` (in place); a no-op in deploy form."""
        if self.is_repped:
            return
        kernel, bias = self.fused_kernel_bias()
        self.reparam_conv = nn.Conv2D(self.in_channels, self.out_channels, self.kernel_size,
                                      stride=self.stride, padding=self.padding, groups=self.groups)
        self.reparam_conv.weight.set_value(kernel)
        self.reparam_conv.bias.set_value(bias)
        del self.conv_kxk
        del self.conv_1x1
        del self.identity
        self.is_repped = True


class SELayer(nn.Layer):
    """Squeeze-and-excitation with a hard-sigmoid gate (keys ``conv1``, ``conv2``)."""

    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        self.conv1 = nn.Conv2D(channels, channels // reduction, 1)
        self.conv2 = nn.Conv2D(channels // reduction, channels, 1)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        gate = F.adaptive_avg_pool2d(x, 1)
        gate = F.hardsigmoid(self.conv2(F.relu(self.conv1(gate))), slope=1.0 / 6, offset=0.5)
        return x * gate


def batchnorm_layers(model: nn.Layer) -> List[Tuple[str, nn.Layer]]:
    """``(name, layer)`` of every BatchNorm sublayer of ``model``."""
    return [(name, layer) for name, layer in model.named_sublayers()
            if isinstance(layer, nn.layer.norm._BatchNormBase)]


def running_stat_ids(model: nn.Layer) -> Set[int]:
    """ids of the BatchNorm running statistics, which Paddle stores as (never-trained) parameters."""
    ids: Set[int] = set()
    for _, layer in batchnorm_layers(model):
        for attr in ("_mean", "_variance"):
            stat = getattr(layer, attr, None)
            if stat is not None:
                ids.add(id(stat))
    return ids


def weight_parameters(model: nn.Layer) -> List[paddle.Tensor]:
    """``model``'s parameters without the BatchNorm running statistics: what an optimizer may
    update and what counts when asking whether a part is frozen."""
    stats = running_stat_ids(model)
    return [p for p in model.parameters() if id(p) not in stats]

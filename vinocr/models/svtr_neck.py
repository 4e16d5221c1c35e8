"""SVTR sequence neck (EncoderWithSVTR) as PP-OCRv4 uses it, with PaddleOCR's key names."""
from __future__ import annotations

from typing import Sequence

import paddle
import paddle.nn as nn


class ConvBNAct(nn.Layer):
    """Conv (no bias) + BatchNorm + Swish; keys ``conv.weight``, ``norm.*`` (SVTR's naming)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Sequence[int] = (1, 1),
                 padding: Sequence[int] = (0, 0), groups: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2D(in_channels, out_channels, list(kernel_size), padding=list(padding),
                              groups=groups, bias_attr=False)
        self.norm = nn.BatchNorm2D(out_channels)
        self.act = nn.Swish()

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.act(self.norm(self.conv(x)))

    def fold_bn(self) -> None:
        """Inference-only: fold the BatchNorm into the conv (exact in eval mode)."""
        from vinocr.models.layers import fuse_conv_bn

        self.conv, self.norm = fuse_conv_bn(self.conv, self.norm), nn.Identity()


class Attention(nn.Layer):
    """Global multi-head self-attention (keys ``qkv``, ``proj``)."""

    def __init__(self, dim: int, num_heads: int = 8, qkv_bias: bool = True,
                 attn_drop: float = 0.0, proj_drop: float = 0.0) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias_attr=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        n, c = x.shape[1], x.shape[2]
        qkv = self.qkv(x).reshape([0, -1, 3, self.num_heads, self.head_dim])
        qkv = qkv.transpose([2, 0, 3, 1, 4])
        q, k, v = qkv[0] * self.scale, qkv[1], qkv[2]
        attn = nn.functional.softmax(q.matmul(k.transpose([0, 1, 3, 2])), axis=-1)
        attn = self.attn_drop(attn)
        out = attn.matmul(v).transpose([0, 2, 1, 3]).reshape([0, -1, self.num_heads *
                                                              self.head_dim])
        return self.proj_drop(self.proj(out))


class Mlp(nn.Layer):
    def __init__(self, dim: int, hidden: int, drop: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.Swish()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class Block(nn.Layer):
    """Pre-LayerNorm transformer block (keys ``norm1``, ``mixer``, ``norm2``, ``mlp``)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 2.0, drop: float = 0.1,
                 attn_drop: float = 0.1, epsilon: float = 1e-5) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, epsilon=epsilon)
        self.mixer = Attention(dim, num_heads, attn_drop=attn_drop, proj_drop=drop)
        self.norm2 = nn.LayerNorm(dim, epsilon=epsilon)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        x = x + self.mixer(self.norm1(x))
        return x + self.mlp(self.norm2(x))


def mix_tokens(z: paddle.Tensor, blocks: Sequence[nn.Layer], norm: nn.Layer) -> paddle.Tensor:
    """[N, C, H, W] as H*W tokens through the transformer ``blocks`` and ``norm``, back to
    [N, C, H, W] (the SVTR necks of PP-OCRv4 and PP-OCRv6 share this)."""
    _, c, height, width = z.shape
    z = z.flatten(2).transpose([0, 2, 1])
    for block in blocks:
        z = block(z)
    z = norm(z)
    return z.reshape([0, height, width, c]).transpose([0, 3, 1, 2])


class EncoderWithSVTR(nn.Layer):
    """Local convs + global attention over the backbone's feature row, with a shortcut.

    ``detach_input`` reproduces PaddleOCR's ``use_guide`` (the CTC branch then does not train the
    backbone; PaddleOCR relies on its GTC branch for that). vinocr fine-tunes with CTC only by
    default, so it is off unless the config asks for it.
    """

    def __init__(self, in_channels: int, dims: int = 120, depth: int = 2, hidden_dims: int = 120,
                 num_heads: int = 8, mlp_ratio: float = 2.0, kernel_size: Sequence[int] = (1, 3),
                 drop_rate: float = 0.1, attn_drop_rate: float = 0.1,
                 detach_input: bool = False) -> None:
        super().__init__()
        pad = [kernel_size[0] // 2, kernel_size[1] // 2]
        self.detach_input = detach_input
        self.conv1 = ConvBNAct(in_channels, in_channels // 8, kernel_size, pad)
        self.conv2 = ConvBNAct(in_channels // 8, hidden_dims)
        self.svtr_block = nn.LayerList([Block(hidden_dims, num_heads, mlp_ratio, drop_rate,
                                              attn_drop_rate) for _ in range(depth)])
        self.norm = nn.LayerNorm(hidden_dims, epsilon=1e-6)
        self.conv3 = ConvBNAct(hidden_dims, in_channels)
        self.conv4 = ConvBNAct(2 * in_channels, in_channels // 8, kernel_size, pad)
        self.conv1x1 = ConvBNAct(in_channels // 8, dims)
        self.out_channels = dims

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        if self.detach_input:
            x = x.detach()
        h = x
        z = self.conv3(mix_tokens(self.conv2(self.conv1(x)), self.svtr_block, self.norm))
        z = paddle.concat([h, z], axis=1)
        return self.conv1x1(self.conv4(z))

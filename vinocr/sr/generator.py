"""LP-ASRN-style super-resolution generator for low-resolution licence plates.

Layout (H x W, LR 16x48 -> SR 32x96 for ``scale=2``)::

    x -> shallow conv -> [RRDB -> shared attention] x N -> trunk conv (+ long skip)
      -> upsample (conv + PixelShuffle(2): once for x2, twice for x4) -> HR conv -> conv to 3ch
      -> residual;  output = residual + bicubic(x)

* RRDB (ESRGAN): three residual dense blocks of five 3x3 convs with ``growth`` channels each, every
  residual scaled by ``res_scale`` (0.2) so a deep stack starts close to the identity.
* Shared attention (Nascimento/Laroca et al.): ONE module instance, i.e. one set of parameters,
  applied after every RRDB. Sharing keeps the parameter count flat in depth and makes every block
  learn features the same gate understands (what to keep of the characters, where they are).
  Its gate is a channel unit (global average pool -> 1x1 reduce -> ReLU -> 1x1 -> sigmoid) times
  a height gate and a width gate (strip pooling over W and over H -> 1x1 convs -> sigmoid).
* The network predicts only the residual over the bicubic upsampling of its input, so an untrained
  (or zeroed) residual branch already yields the bicubic baseline.

``forward`` returns an unclipped float tensor: clipping or a sigmoid would zero the gradient of
every pixel that overshoots [0, 1] and stall training. Callers clip for display and export
(:func:`vinocr.export.sr.export_sr` puts the clip inside the exported graph).
"""
from __future__ import annotations

import logging
from typing import Any, Dict, List

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from vinocr.errors import ConfigError

logger = logging.getLogger(__name__)

__all__ = ["SRGenerator", "SharedAttention", "GENERATOR_CONFIGS", "SCALES", "build_generator",
           "count_parameters"]

#: Named configurations. ``small`` is the CPU default (0.42M parameters, 2 RRDBs: training speed
#: falls about linearly with the number of RRDBs, see ``tools/bench_sr.py``); ``medium`` is the
#: 4-RRDB variant (0.78M);
#: ``large`` is the GPU configuration (64 features, 12 RRDBs, ~8.9M parameters).
GENERATOR_CONFIGS: Dict[str, Dict[str, Any]] = {
    "small": {"num_feat": 32, "growth": 16, "num_blocks": 2},
    "medium": {"num_feat": 32, "growth": 16, "num_blocks": 4},
    "large": {"num_feat": 64, "growth": 32, "num_blocks": 12},
}

#: Upscaling factors the generator supports (one or two PixelShuffle(2) stages).
SCALES = (2, 4)

# Gate logits start at this bias so sigmoid(bias) ~ 0.95: three gates multiplied together then
# pass ~87% of the trunk at initialisation instead of 0.5**3 = 12.5% after *every* block, which
# would starve the deep blocks of signal and gradient in the 12-block config.
_GATE_BIAS_INIT = 3.0


def _conv(cin: int, cout: int, k: int = 3) -> nn.Conv2D:
    return nn.Conv2D(cin, cout, k, padding=k // 2)


def _scale_init(layer: nn.Layer, factor: float) -> None:
    """Kaiming-normal weights scaled by ``factor`` and zero biases (ESRGAN's init for dense
    blocks: small residual branches keep the deep stack stable at the start of training)."""
    init = nn.initializer.KaimingNormal(negative_slope=0.2, nonlinearity="leaky_relu")
    for sub in layer.sublayers(include_self=True):
        if isinstance(sub, nn.Conv2D):
            init(sub.weight)
            sub.weight.set_value(sub.weight * factor)
            if sub.bias is not None:
                sub.bias.set_value(paddle.zeros_like(sub.bias))


class ResidualDenseBlock(nn.Layer):
    """Five densely connected 3x3 convs; the fifth maps back to ``num_feat``; residual * scale."""

    def __init__(self, num_feat: int, growth: int, res_scale: float = 0.2) -> None:
        super().__init__()
        self.res_scale = res_scale
        self.convs = nn.LayerList([_conv(num_feat + i * growth, growth) for i in range(4)])
        self.conv_out = _conv(num_feat + 4 * growth, num_feat)
        self.act = nn.LeakyReLU(0.2)
        _scale_init(self, 0.1)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        feats: List[paddle.Tensor] = [x]
        for conv in self.convs:
            feats.append(self.act(conv(paddle.concat(feats, axis=1))))
        out = self.conv_out(paddle.concat(feats, axis=1))
        return x + out * self.res_scale


class RRDB(nn.Layer):
    """Residual-in-residual dense block: three RDBs and an outer scaled residual."""

    def __init__(self, num_feat: int, growth: int, res_scale: float = 0.2) -> None:
        super().__init__()
        self.res_scale = res_scale
        self.rdb1 = ResidualDenseBlock(num_feat, growth, res_scale)
        self.rdb2 = ResidualDenseBlock(num_feat, growth, res_scale)
        self.rdb3 = ResidualDenseBlock(num_feat, growth, res_scale)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return x + self.rdb3(self.rdb2(self.rdb1(x))) * self.res_scale


class SharedAttention(nn.Layer):
    """Channel unit x height gate x width gate, all sigmoid; ``out = x * gates``.

    Strip pooling (mean over W gives an (H, 1) profile, mean over H a (1, W) profile) suits
    plates: rows locate the character band, columns the character positions, at the cost of two
    1x1 convs instead of a full spatial attention map.
    """

    def __init__(self, num_feat: int, reduction: int = 8) -> None:
        super().__init__()
        mid = max(num_feat // reduction, 4)
        self.channel_reduce = nn.Conv2D(num_feat, mid, 1)
        self.channel_expand = nn.Conv2D(mid, num_feat, 1)
        self.height_gate = nn.Conv2D(num_feat, num_feat, 1)
        self.width_gate = nn.Conv2D(num_feat, num_feat, 1)
        for conv in (self.channel_expand, self.height_gate, self.width_gate):
            conv.bias.set_value(paddle.full_like(conv.bias, _GATE_BIAS_INIT))

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        pooled = x.mean(axis=[2, 3], keepdim=True)                     # N, C, 1, 1
        channel = F.sigmoid(self.channel_expand(F.relu(self.channel_reduce(pooled))))
        height = F.sigmoid(self.height_gate(x.mean(axis=3, keepdim=True)))  # N, C, H, 1
        width = F.sigmoid(self.width_gate(x.mean(axis=2, keepdim=True)))    # N, C, 1, W
        return x * (channel * height * width)


class SRGenerator(nn.Layer):
    """RRDB generator with one shared attention module; predicts a residual over bicubic.

    ``self.arch_kwargs`` rebuilds the same architecture (``SRGenerator(**arch_kwargs)``), which
    is what exports and checkpoints record; ``self.scale`` is the upscaling factor.
    """

    def __init__(self, num_feat: int = 32, growth: int = 16, num_blocks: int = 4, scale: int = 2,
                 reduction: int = 8, res_scale: float = 0.2, in_channels: int = 3,
                 frames: int = 1) -> None:
        super().__init__()
        if scale not in SCALES:
            raise ConfigError(f"SR scale must be one of {list(SCALES)}, got {scale!r}")
        for key, value in (("num_feat", num_feat), ("growth", growth),
                           ("num_blocks", num_blocks), ("reduction", reduction),
                           ("frames", frames)):
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"SR generator {key} must be a positive integer, got {value!r}")
        self.arch_kwargs: Dict[str, Any] = {
            "num_feat": num_feat, "growth": growth, "num_blocks": num_blocks, "scale": scale,
            "reduction": reduction, "res_scale": res_scale, "in_channels": in_channels}
        if frames != 1:  # recorded only when used, so single-frame records stay as they were
            self.arch_kwargs["frames"] = frames
        self.scale = scale
        #: LR frames read per output image (their channels concatenated, the first one the frame
        #: being super-resolved; see :func:`vinocr.sr.preprocess.frame_stacks`).
        self.frames = frames
        self.in_channels = in_channels
        #: Name of the config this was built from (set by :func:`build_generator`).
        self.config_name = "custom"
        act = nn.LeakyReLU(0.2)

        # A multi-frame generator sees every frame in its first conv: the frames are registered
        # (rectified by their corners), so fusing them early lets the trunk average out noise
        # and compression before upsampling.
        self.conv_first = _conv(in_channels * frames, num_feat)
        self.blocks = nn.LayerList([RRDB(num_feat, growth, res_scale) for _ in range(num_blocks)])
        # One instance, hence one set of parameters, called after every block in ``forward``.
        self.attention = SharedAttention(num_feat, reduction)
        self.conv_trunk = _conv(num_feat, num_feat)
        ups: List[nn.Layer] = []
        for _ in range({2: 1, 4: 2}[scale]):
            ups += [_conv(num_feat, num_feat * 4), nn.PixelShuffle(2), act]
        self.upsample = nn.Sequential(*ups)
        self.conv_hr = _conv(num_feat, num_feat)
        self.act = act
        self.conv_last = _conv(num_feat, in_channels)

    def residual(self, x: paddle.Tensor) -> paddle.Tensor:
        """The learned correction added to the bicubic upsampling (the residual branch)."""
        feat = self.conv_first(x)
        body = feat
        for block in self.blocks:
            body = self.attention(block(body))
        feat = feat + self.conv_trunk(body)
        return self.conv_last(self.act(self.conv_hr(self.upsample(feat))))

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        """(N, 3F, H, W) in [0, 1] -> (N, 3, sH, sW), *not* clipped (see the module docstring).

        F is ``frames``; the residual is added to the bicubic upsampling of the first frame.
        """
        # Bicubic (a = -0.75, half-pixel centres) runs forward and backward on CPU in Paddle 3.3
        # and matches cv2.INTER_CUBIC, i.e. preprocess.bicubic_upscale, to float precision.
        first = x[:, :self.in_channels] if self.frames > 1 else x
        base = F.interpolate(first, scale_factor=self.scale, mode="bicubic", align_corners=False)
        return base + self.residual(x)


def count_parameters(layer: nn.Layer) -> int:
    """Number of scalar parameters (each shared parameter counted once)."""
    return int(sum(int(p.size) for p in layer.parameters()))


def build_generator(name: str = "small", scale: int = 2, **overrides: Any) -> SRGenerator:
    """The named configuration (``GENERATOR_CONFIGS``) at ``scale``; ``overrides`` replace
    individual architecture arguments (e.g. ``num_blocks=6``)."""
    if name not in GENERATOR_CONFIGS:
        raise ConfigError(f"unknown SR generator {name!r}; choose one of "
                          f"{sorted(GENERATOR_CONFIGS)}")
    if scale not in SCALES:
        raise ConfigError(f"SR scale must be one of {list(SCALES)}, got {scale!r}")
    allowed = {"num_feat", "growth", "num_blocks", "reduction", "res_scale", "in_channels",
               "frames"}
    unknown = sorted(set(overrides) - allowed)
    if unknown:
        raise ConfigError(f"unknown SR generator option(s) {unknown}; valid: {sorted(allowed)}")
    kwargs = {**GENERATOR_CONFIGS[name], **overrides, "scale": scale}
    generator = SRGenerator(**kwargs)
    generator.config_name = name
    logger.debug("built SR generator %s x%d: %d parameters", name, scale,
                 count_parameters(generator))
    return generator

"""Architectures by name (timm-style): ``build_model("ppocrv4_mobile", num_classes=35)``."""
from __future__ import annotations

from typing import Any, Callable, Dict, List

from vinocr.errors import ConfigError
from vinocr.models.recognizer import RecognitionNet

_MODELS: Dict[str, Callable[..., RecognitionNet]] = {}
#: Other names for a registered network. PP-OCRv5 mobile is the PP-OCRv4 mobile network with other
#: weights and dictionary (``Architecture.pretrained: ppocrv5_mobile`` picks those), so its name
#: builds that network, recorded as ``ppocrv4_mobile`` (checkpoints and pretrained files agree).
ALIASES: Dict[str, str] = {"ppocrv5_mobile": "ppocrv4_mobile"}


def register_model(name: str
                   ) -> Callable[[Callable[..., RecognitionNet]], Callable[..., RecognitionNet]]:
    def wrap(fn: Callable[..., RecognitionNet]) -> Callable[..., RecognitionNet]:
        _MODELS[name] = fn
        return fn
    return wrap


def list_models() -> List[str]:
    return sorted([*_MODELS, *ALIASES])


def canonical_name(name: str) -> str:
    """The registered network behind ``name`` (itself unless it is an alias)."""
    return ALIASES.get(name, name)


def build_model(name: str, num_classes: int, **kwargs: Any) -> RecognitionNet:
    name = canonical_name(name)
    if name not in _MODELS:
        raise ConfigError(f"Architecture.name: unknown model {name!r}; valid: "
                          f"{', '.join(list_models())}")
    try:
        return _MODELS[name](num_classes=num_classes, **kwargs)
    except TypeError as exc:
        raise ConfigError(f"Architecture.params: {exc}") from None


@register_model("ppocrv4_mobile")
def ppocrv4_mobile(num_classes: int, deploy: bool = True, scale: float = 0.95,
                   num_conv_branches: int = 4, neck_depth: int = 2, neck_dims: int = 120,
                   neck_hidden: int = 120, detach_neck_input: bool = False,
                   drop_rate: float = 0.1, gtc: bool = False,
                   frozen_rep_bn: bool = False) -> RecognitionNet:
    """PP-OCRv4 mobile recogniser (PPLCNetV3 x0.95 + SVTR neck + CTC). ``deploy=True`` builds the
    single-conv form that the pretrained ONNX holds; ``False`` the re-parameterisable one.
    ``gtc=True`` adds PaddleOCR's GTC/NRTR attention branch as an auxiliary training loss.
    ``frozen_rep_bn=True`` (training form) makes the branches' BatchNorms use their running
    statistics in training too, so a training form expanded from deploy weights starts as exactly
    the deploy model (see :func:`vinocr.models.weights.deploy_to_training_state`)."""
    from vinocr.models.heads import MultiHead
    from vinocr.models.pplcnetv3 import PPLCNetV3

    kwargs = dict(deploy=deploy, scale=scale, num_conv_branches=num_conv_branches,
                  neck_depth=neck_depth, neck_dims=neck_dims, neck_hidden=neck_hidden,
                  detach_neck_input=detach_neck_input, drop_rate=drop_rate, gtc=gtc,
                  frozen_rep_bn=frozen_rep_bn)
    backbone = PPLCNetV3(scale=scale, num_conv_branches=num_conv_branches, deploy=deploy)
    if frozen_rep_bn:
        backbone.freeze_rep_batchnorm()
    neck = dict(dims=neck_dims, depth=neck_depth, hidden_dims=neck_hidden,
                detach_input=detach_neck_input, drop_rate=drop_rate, attn_drop_rate=drop_rate)
    head = MultiHead(backbone.out_channels, num_classes, neck, gtc=gtc)
    return RecognitionNet(backbone, head, "ppocrv4_mobile", num_classes, kwargs)


@register_model("ppocrv4_teacher")
def ppocrv4_teacher(num_classes: int, deploy: bool = False, scale: float = 1.5,
                    num_conv_branches: int = 4, neck_depth: int = 4, neck_dims: int = 160,
                    neck_hidden: int = 192, detach_neck_input: bool = False,
                    drop_rate: float = 0.1, gtc: bool = False) -> RecognitionNet:
    """A wider backbone (x1.5: 32..768 channels) and a deeper, wider SVTR neck: a distillation
    teacher for the mobile student (same T = W/8, same classes)."""
    model = ppocrv4_mobile(num_classes, deploy=deploy, scale=scale,
                           num_conv_branches=num_conv_branches, neck_depth=neck_depth,
                           neck_dims=neck_dims, neck_hidden=neck_hidden,
                           detach_neck_input=detach_neck_input, drop_rate=drop_rate, gtc=gtc)
    model.arch = "ppocrv4_teacher"
    return model


@register_model("ppocrv6_small")
def ppocrv6_small(num_classes: int, neck_depth: int = 2, neck_dims: int = 120,
                  drop_rate: float = 0.1) -> RecognitionNet:
    """PP-OCRv6 small recogniser (PPLCNetV4 + light SVTR neck + CTC; T = W/8 like PP-OCRv4), in
    the single form of its pretrained ONNX (backbone BatchNorms folded into the convs).
    ``drop_rate`` is the neck's dropout while training (the same default as PP-OCRv4's neck)."""
    from vinocr.models.heads import MultiHead
    from vinocr.models.pplcnetv4 import LightSVTRNeck, PPLCNetV4

    backbone = PPLCNetV4()
    neck = LightSVTRNeck(backbone.out_channels, dims=neck_dims, depth=neck_depth,
                         drop_rate=drop_rate, attn_drop_rate=drop_rate)
    head = MultiHead(backbone.out_channels, num_classes, encoder=neck)
    return RecognitionNet(backbone, head, "ppocrv6_small", num_classes,
                          dict(neck_depth=neck_depth, neck_dims=neck_dims, drop_rate=drop_rate))


@register_model("crnn")
def crnn(num_classes: int, hidden: int = 128, channels: tuple = (32, 64, 128, 256)
         ) -> RecognitionNet:
    """CRNN baseline (CNN + 2-layer BiLSTM + CTC), trained from scratch."""
    from vinocr.models.crnn import CRNNBackbone, RNNHead

    backbone = CRNNBackbone(tuple(channels))
    head = RNNHead(backbone.out_channels, num_classes, hidden)
    return RecognitionNet(backbone, head, "crnn", num_classes,
                      dict(hidden=hidden, channels=list(channels)))

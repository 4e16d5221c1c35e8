"""Loading weights into a model: a loud report instead of silent skips, and head transfer.

PaddleOCR's loader skips mismatched keys with a warning and keeps the init of missing keys
without a word. Here every load returns (and logs) a table of loaded, skipped (with both shapes),
missing and unexpected keys, and ``strict=True`` fails on any of them.

``.pdparams``/``.pdopt`` files are pickles: opening one runs whatever code it holds.
:func:`load_state_file` refuses them unless the caller passes ``trust_pickle=True`` (the
``--trust-pickle`` flag of ``vinocr-pretrained``, ``Architecture.trust_pickle`` in a config).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from vinocr.errors import VinocrError

logger = logging.getLogger(__name__)

HEAD_WEIGHT = "head.ctc_head.fc.weight"
HEAD_BIAS = "head.ctc_head.fc.bias"
#: Weights files that are pickles (reading them can run code).
PICKLE_SUFFIXES = (".pdparams", ".pdopt")
#: Training-only branches that deploy-form pretrained weights never hold (PP-OCRv4's GTC branch is
#: dropped at export): when pretrained weights lack them they start fresh, as PaddleOCR's do.
AUX_PREFIXES = ("head.before_gtc.", "head.gtc_head.")
#: Missing keys named in the :func:`check_coverage` error.
MISSING_LISTED = 3


class WeightsError(VinocrError):
    """A checkpoint cannot be loaded (unreadable file, or mismatches with strict loading)."""


@dataclass
class LoadReport:
    loaded: List[str] = field(default_factory=list)
    skipped: List[Tuple[str, Tuple[int, ...], Tuple[int, ...]]] = field(default_factory=list)
    missing: List[str] = field(default_factory=list)
    unexpected: List[str] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (self.skipped or self.missing or self.unexpected)

    def table(self, limit: int = 20) -> str:
        lines = [f"weights: {len(self.loaded)} loaded, {len(self.skipped)} skipped (shape "
                 f"mismatch), {len(self.missing)} missing (kept init), {len(self.unexpected)} "
                 "unexpected (ignored)"]
        for key, ckpt, model in self.skipped[:limit]:
            lines.append(f"  skipped    {key}: checkpoint {list(ckpt)} vs model {list(model)}")
        for key in self.missing[:limit]:
            lines.append(f"  missing    {key}")
        for key in self.unexpected[:limit]:
            lines.append(f"  unexpected {key}")
        for group in (self.skipped, self.missing, self.unexpected):
            if len(group) > limit:
                lines.append(f"  ... {len(group) - limit} more")
        lines += [f"  note       {n}" for n in self.notes]
        return "\n".join(lines)


def strip_prefix(state: Mapping[str, np.ndarray], prefixes: Sequence[str] = ("Student.",
                                                                               "student.")
                 ) -> Dict[str, np.ndarray]:
    """Distillation checkpoints prefix keys with ``Student.``/``Teacher.``: keep the student's."""
    for prefix in prefixes:
        if any(k.startswith(prefix) for k in state):
            return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    return dict(state)


def pickle_refusal(path: Union[str, Path], opt_in: str) -> str:
    """The one-line error for a pickle opened without ``trust_pickle``; ``opt_in`` says how the
    caller's user opts in (e.g. "add --trust-pickle")."""
    p = Path(path)
    return (f"{p}: not opened: {p.suffix} files are pickles, and loading one runs any code it "
            f"holds; if you trust where it came from, {opt_in} (better: convert it once with "
            f"`vinocr-pretrained convert --trust-pickle {p} {p.with_suffix('.safetensors')}` "
            "and use the .safetensors file)")


def load_state_file(path: Union[str, Path], trust_pickle: bool = False,
                    opt_in: str = "pass trust_pickle=True") -> Dict[str, np.ndarray]:
    """Tensors from ``.safetensors`` (safe) or ``.pdparams`` (a pickle: only with
    ``trust_pickle=True``; otherwise a :class:`WeightsError` whose message ends with ``opt_in``,
    the caller's way to allow it)."""
    p = Path(path)
    if not p.is_file():
        raise WeightsError(f"{p}: weights file not found")
    if p.suffix == ".safetensors":
        from safetensors.numpy import load_file

        try:
            return dict(load_file(str(p)))
        except Exception as exc:  # safetensors raises several types for corrupt files
            raise WeightsError(f"{p}: not a readable safetensors file ({exc})") from None
    if p.suffix in PICKLE_SUFFIXES:
        if not trust_pickle:
            raise WeightsError(pickle_refusal(p, opt_in))
        import paddle

        logger.info("%s: unpickling (trusted on request); convert it once with `vinocr-pretrained "
                    "convert --trust-pickle` and share the .safetensors instead", p)
        try:
            raw = paddle.load(str(p))
        except Exception as exc:
            raise WeightsError(f"{p}: cannot read Paddle checkpoint ({exc})") from None
        return {k: (v.numpy() if hasattr(v, "numpy") else np.asarray(v)) for k, v in raw.items()
                if hasattr(v, "shape")}
    raise WeightsError(f"{p}: unknown weights format {p.suffix!r} (expected .safetensors or "
                       ".pdparams)")


def save_state_file(state: Mapping[str, np.ndarray], path: Union[str, Path],
                    metadata: Optional[Dict[str, str]] = None) -> Path:
    """Write tensors as safetensors atomically (temp file + rename). The temporary name is
    unique per call, so concurrent writers of one file (data-parallel ranks importing the same
    pretrained weights on first use) never take each other's file away."""
    import os

    from safetensors.numpy import save_file

    from vinocr.atomic_dir import temp_path

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp, _ = temp_path(p)
    try:
        save_file({k: np.ascontiguousarray(v) for k, v in state.items()}, str(tmp),
                  metadata=metadata)
        os.replace(tmp, p)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return p


def is_training_form(state: Mapping[str, np.ndarray]) -> bool:
    return any(".conv_kxk." in k for k in state)


def is_deploy_form(state: Mapping[str, np.ndarray]) -> bool:
    return any(".reparam_conv." in k for k in state)


def describe_network(state: Mapping[str, np.ndarray]) -> Tuple[str, str]:
    """``(network, form)`` of a state dict (form ``""`` when the network has no forms), from its
    key names (any ``Student.``-style prefix is ignored) and the CTC head's input width, for
    ``vinocr-pretrained info``.

    PP-OCRv6 small (PPLCNetV4: ``token_conv``/``channel_conv*`` blocks) exists in one form, the
    deploy form. PPLCNetV3 is PP-OCRv4/v5 mobile (SVTR neck of 120 dims) or the v4 teacher
    (160), in the deploy (``reparam_conv``) or training (``conv_kxk`` branches) form."""
    state = strip_prefix(state)
    keys = list(state)
    head = state.get("head.ctc_head.fc.weight")
    width = int(head.shape[0]) if head is not None and len(head.shape) == 2 else None
    if any(".token_conv." in k for k in keys) and any(".channel_conv1." in k for k in keys):
        return "ppocrv6_small network (PP-OCRv6 small, PPLCNetV4)", "deploy"
    form = ("deploy" if is_deploy_form(state) else "training" if is_training_form(state)
            else "")
    if form:
        name = {120: "ppocrv4_mobile network (PP-OCRv4/v5 mobile, PPLCNetV3)",
                160: "ppocrv4_teacher network (PPLCNetV3)"}.get(width, "PPLCNetV3 network")
        return name, form
    if any(k.startswith("backbone.features.") for k in keys) and \
            any(k.startswith("head.rnn.") for k in keys):
        return "crnn network", ""  # one form, nothing to name
    return "unknown network", "unknown"


def load_weights(model, state: Mapping[str, np.ndarray], strict: bool = False,
                 source: str = "checkpoint") -> LoadReport:
    """Copy matching tensors into ``model``; report the rest. ``strict`` raises on any mismatch.

    A training-form checkpoint (official ``student.pdparams``) loaded into a deploy-form model is
    re-parameterised first, so the two forms interoperate.
    """
    import paddle

    state = strip_prefix(state)
    report = LoadReport()
    missing_branches: List[str] = []
    deploy_model = getattr(model, "is_deploy", False)
    if deploy_model and is_training_form(state) and not is_deploy_form(state):
        state, inner = training_to_deploy_state(model, state)
        # Keys the training-form model could not take are the user's news, not the rep step's.
        report.unexpected += inner.unexpected
        report.skipped += inner.skipped
        missing_branches = inner.missing
        report.notes.append("training-form checkpoint re-parameterised into the deploy form")
        if missing_branches:
            report.notes.append(f"{len(missing_branches)} training-form keys were missing before "
                                f"re-parameterisation (first: {missing_branches[0]})")
    elif (not deploy_model and hasattr(model, "is_deploy") and is_deploy_form(state)
          and not is_training_form(state)):
        state = deploy_to_training_state(model, state)
        report.notes.append("deploy-form weights expanded into the training form (first k x k "
                            "branch = the deploy conv, other branches start at zero scale)")
    model_state = model.state_dict()
    new_values = {}
    for key, value in state.items():
        if key not in model_state:
            report.unexpected.append(key)
            continue
        want = tuple(model_state[key].shape)
        if tuple(value.shape) != want:
            report.skipped.append((key, tuple(value.shape), want))
            continue
        new_values[key] = value
        report.loaded.append(key)
    report.missing = [k for k in model_state if k not in new_values]
    # Re-parameterisation folds the training form's missing keys (left at their init) into the
    # deploy weights: they are missing all the same.
    report.missing += [k for k in missing_branches if k not in report.missing]
    if strict and not report.clean:
        raise WeightsError(f"{source}: strict loading failed: {len(report.skipped)} skipped, "
                           f"{len(report.missing)} missing, {len(report.unexpected)} unexpected "
                           f"(first: {(report.skipped + report.missing + report.unexpected)[0]})")
    for key, value in new_values.items():
        model_state[key].set_value(paddle.to_tensor(value, dtype=model_state[key].dtype))
    level = logging.INFO if report.clean else logging.WARNING
    logger.log(level, "%s -> %s\n%s", source, type(model).__name__, report.table())
    return report


def check_coverage(report: LoadReport, num_classes: int, source: str,
                   fresh: Sequence[str] = (),
                   allow: str = "set Architecture.allow_missing: true") -> None:
    """Raise :class:`WeightsError` when loaded weights leave model parameters at their random init.

    Fresh by design, so not counted: tensors whose shape follows the class count and that were
    skipped because the checkpoint's differs (the CTC head of another dictionary), the keys in
    ``fresh`` (a head the caller dropped, e.g. ``head_transfer: false``) and training-only
    branches (:data:`AUX_PREFIXES`). ``allow`` ends the message: how the user accepts the rest.
    """
    class_sized = {key for key, _, want in report.skipped if num_classes in want}
    missing = [k for k in report.missing
               if k not in class_sized and k not in fresh and not k.startswith(AUX_PREFIXES)]
    if not missing:
        return
    first = ", ".join(missing[:MISSING_LISTED]) + (", ..." if len(missing) > MISSING_LISTED
                                                   else "")
    hint = (f"; {len(report.unexpected)} of its keys fit no parameter (another architecture?)"
            if report.unexpected else "")
    raise WeightsError(f"{source}: the weights leave parameters at their random init: "
                       f"{len(report.loaded)} loaded, {len(missing)} missing (first: {first})"
                       f"{hint}; use weights of this architecture, or {allow} to train the "
                       "missing ones from scratch")


def training_to_deploy_state(model, state: Mapping[str, np.ndarray]
                             ) -> Tuple[Dict[str, np.ndarray], LoadReport]:
    """Re-parameterise a training-form state dict into ``model``'s deploy-form keys; also return
    the report of loading it into the training form."""
    from vinocr.models.registry import build_model

    kwargs = dict(model.arch_kwargs, deploy=False)
    train_model = build_model(model.arch, model.num_classes, **kwargs)
    inner = load_weights(train_model, state, source="training-form checkpoint")
    train_model.eval()
    train_model.rep()
    return {k: v.numpy() for k, v in train_model.state_dict().items()}, inner


def deploy_to_training_state(model, state: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """Expand deploy-form weights into ``model``'s training form with the same function.

    Each ``reparam_conv`` (kernel W, bias b) becomes the first k x k branch, with its BatchNorm an
    exact identity plus b (running mean 0, running variance 1 - eps, scale 1, shift b). Every other
    branch (further k x k, 1 x 1, identity) keeps its initial conv weights with its BatchNorm
    scale at 0, so it adds nothing until training grows it. The function is exactly the deploy
    model's wherever BatchNorm uses running statistics: in eval mode, or in training with
    ``frozen_rep_bn`` (otherwise batch statistics replace them and the function changes).
    Keys that are not deploy convs pass through unchanged.
    """
    from vinocr.models.layers import LearnableRepLayer

    out = dict(state)
    for prefix, layer in model.named_sublayers():
        if not isinstance(layer, LearnableRepLayer) or layer.is_repped:
            continue
        wkey, bkey = f"{prefix}.reparam_conv.weight", f"{prefix}.reparam_conv.bias"
        if wkey not in out or bkey not in out:
            continue
        weight, bias = out.pop(wkey), out.pop(bkey)
        names = {id(sub): name for name, sub in layer.named_sublayers()}
        for i, bn in enumerate(layer.batchnorms()):
            bn_prefix = f"{prefix}.{names[id(bn)]}"
            channels = bn.weight.shape[0]
            first = i == 0  # batchnorms() lists conv_kxk[0] first
            out[f"{bn_prefix}.weight"] = np.full([channels], 1.0 if first else 0.0, np.float32)
            out[f"{bn_prefix}.bias"] = (np.asarray(bias, np.float32) if first
                                        else np.zeros([channels], np.float32))
            out[f"{bn_prefix}._mean"] = np.zeros([channels], np.float32)
            out[f"{bn_prefix}._variance"] = np.full([channels], 1.0 - bn._epsilon, np.float32)
        out[f"{prefix}.conv_kxk.0.conv.weight"] = np.asarray(weight, np.float32)
        for name, tensor in layer.state_dict().items():
            # the other branches' convs keep their initial weights
            if name.endswith("conv.weight") and f"{prefix}.{name}" not in out:
                out[f"{prefix}.{name}"] = tensor.numpy()
    return out


@dataclass
class HeadTransfer:
    copied: int
    fresh: List[str]

    def __str__(self) -> str:
        fresh = "".join(self.fresh) if self.fresh else "none"
        return (f"head transfer: {self.copied} classes copied from the pretrained head "
                f"(blank and space included), {len(self.fresh)} new: {fresh}")


def transfer_ctc_head(state: Mapping[str, np.ndarray], source_chars: Sequence[str],
                      target_chars: Sequence[str], init_weight: np.ndarray,
                      init_bias: np.ndarray) -> Tuple[Dict[str, np.ndarray], HeadTransfer]:
    """Map the CTC head rows of a pretrained dictionary onto a new dictionary.

    Class layout on both sides: blank (0), dictionary, space (last). Each target character found in
    the source dictionary gets the source's column; blank and space map to blank and space; the
    others keep ``init_weight``/``init_bias`` (fresh). So a VIN head (33 characters, all inside the
    6623-character PP-OCR dictionary) starts reading VINs at once instead of from accuracy 0.
    """
    out = dict(state)
    src_w, src_b = state[HEAD_WEIGHT], state[HEAD_BIAS]
    n_src = len(source_chars) + 2
    if src_w.shape[1] != n_src:
        raise WeightsError(f"pretrained head has {src_w.shape[1]} classes but its dictionary "
                           f"gives {n_src} (blank + {len(source_chars)} + space)")
    n_dst = len(target_chars) + 2
    if init_weight.shape != (src_w.shape[0], n_dst):
        raise WeightsError(f"head input width differs: pretrained {src_w.shape[0]}, model "
                           f"{init_weight.shape[0]}")
    weight, bias = init_weight.copy(), init_bias.copy()
    src_index = {c: i + 1 for i, c in enumerate(source_chars)}
    mapping = {0: 0, n_dst - 1: n_src - 1}
    fresh = []
    for j, char in enumerate(target_chars, start=1):
        if char in src_index:
            mapping[j] = src_index[char]
        else:
            fresh.append(char)
    for dst, src in mapping.items():
        weight[:, dst] = src_w[:, src]
        bias[dst] = src_b[src]
    out[HEAD_WEIGHT], out[HEAD_BIAS] = weight, bias
    return out, HeadTransfer(copied=len(mapping), fresh=fresh)

"""Build the configured recogniser and load its pretrained weights (with head transfer)."""
from __future__ import annotations

import logging
from typing import Any, List, Mapping, Optional, Tuple

import numpy as np

from vinocr.charset import Charset, load_charset
from vinocr.errors import ConfigError, VinocrError
from vinocr.models.recognizer import RecognitionNet
from vinocr.models.registry import build_model, canonical_name
from vinocr.models.weights import (HEAD_BIAS, HEAD_WEIGHT, LoadReport, check_coverage,
                                   load_weights, transfer_ctc_head)

logger = logging.getLogger(__name__)

#: Architectures that exist in training and deploy forms.
_REP_ARCHS = ("ppocrv4_mobile", "ppocrv4_teacher")


def model_from_config(arch: Mapping[str, Any], charset: Any
                      ) -> Tuple[RecognitionNet, Optional[LoadReport]]:
    """``arch`` is the ``Architecture`` config section; ``charset`` the run's charset.

    Pretrained weights must cover the model: parameters they leave at random init are an error
    (:func:`vinocr.models.weights.check_coverage`) unless ``allow_missing`` is set. A CTC head
    of another dictionary is not counted: it is transferred (``head_transfer``) or starts fresh.
    """
    cs: Charset = load_charset(charset)
    params = dict(arch.get("params") or {})
    name = canonical_name(arch.get("name", "ppocrv4_mobile"))
    if name in _REP_ARCHS:
        params.setdefault("deploy", arch.get("form", "deploy") == "deploy")
    elif name == "ppocrv6_small" and arch.get("form", "deploy") != "deploy":
        raise ConfigError("Architecture.form: ppocrv6_small exists in one form (its pretrained "
                          "ONNX's, BatchNorms folded into the convs); use form: deploy")
    model = build_model(name, cs.num_classes, **params)
    from vinocr.models.pretrained import BUILTINS, load_pretrained, resolve_pretrained

    spec = resolve_pretrained(arch.get("pretrained"), arch.get("name", "ppocrv4_mobile"))
    if not spec:
        return model, None

    pre = load_pretrained(spec, trust_pickle=bool(arch.get("trust_pickle", False)),
                          opt_in="set Architecture.trust_pickle: true")
    if pre.arch and pre.arch != model.arch:
        # A built-in's own name is the Architecture.name that brings exactly these weights
        # (ppocrv5_mobile: the v4 network with the v5 weights).
        suggested = spec if spec in BUILTINS else pre.arch
        raise VinocrError(f"Architecture.pretrained: {spec!r} holds {pre.arch} weights, but "
                          f"Architecture.name is {model.arch!r}; set Architecture.name: "
                          f"{suggested} (with pretrained: auto it brings its own weights), or "
                          "pretrained: null to train from scratch")
    state = dict(pre.state)
    dropped: List[str] = []
    if (pre.characters is not None and HEAD_WEIGHT in state
            and list(pre.characters) != list(cs.characters)):
        if arch.get("head_transfer", True):
            current = model.state_dict()
            state, info = transfer_ctc_head(state, pre.characters, cs.characters,
                                            current[HEAD_WEIGHT].numpy(),
                                            current[HEAD_BIAS].numpy())
            logger.info("%s", info)
        else:
            logger.warning("dictionary differs from the pretrained one and head_transfer is off: "
                           "the CTC head starts from scratch")
            state.pop(HEAD_WEIGHT), state.pop(HEAD_BIAS)
            dropped = [HEAD_WEIGHT, HEAD_BIAS]
    report = load_weights(model, state, strict=bool(arch.get("strict_load", False)),
                          source=pre.source)
    if not arch.get("allow_missing", False):
        check_coverage(report, model.num_classes, f"Architecture.pretrained {spec}",
                       fresh=dropped)
    return model, report

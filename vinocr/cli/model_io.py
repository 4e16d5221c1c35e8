"""Loading trained recognisers for evaluation and export (the tools layer: it may know techniques).

A *model spec* is ``pretrained`` (the zero-shot pretrained model with the config's charset) or a
checkpoint/run directory (its own saved config and charset are used). LoRA checkpoints are merged
back into the plain architecture, so evaluation and export see exactly the deployed model.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from vinocr.charset import Charset, load_charset
from vinocr.errors import VinocrError

logger = logging.getLogger(__name__)


@dataclass
class LoadedModel:
    name: str
    model: Any
    charset: Charset
    config: Dict[str, Any]
    recognizer: Any = None   # set for exported directories (Paddle inference predictor)


def load_model(spec: str, cfg: Optional[Mapping[str, Any]] = None, backend: str = "auto",
               decode: Optional[str] = None) -> LoadedModel:
    """The recogniser for ``spec`` in eval mode; ``backend`` and ``decode`` (a method name
    overriding the recorded one) apply to exported directories only."""
    from vinocr.models.factory import model_from_config

    if spec in ("pretrained", "zero-shot", "zeroshot"):
        if cfg is None:
            raise VinocrError("the 'pretrained' model needs a config (-c) for its charset and "
                              "architecture")
        arch = dict(cfg["Architecture"])
        if not arch.get("pretrained"):
            arch["pretrained"] = "ppocrv4_mobile"
        charset = load_charset(cfg["Global"]["charset"])
        model, _ = model_from_config(arch, charset)
        model.eval()
        return LoadedModel(f"zero-shot {arch['pretrained']}", model, charset, dict(cfg))
    from vinocr.engine.checkpoint import load_checkpoint, resolve_checkpoint
    from vinocr.models.weights import load_weights

    path = Path(spec)
    if (path / "inference.json").is_file():
        from vinocr.predict import Recognizer

        rec = Recognizer.from_dir(path, backend=backend, decode=decode)
        return LoadedModel(f"exported {path}", None, rec.charset, {}, recognizer=rec)
    if path.is_dir() and (path / "best").exists() and not (path / "state.json").exists():
        path = path / "best"  # a run directory means its best checkpoint
    ckpt = load_checkpoint(resolve_checkpoint(path))
    saved_cfg = ckpt.state.get("config") or {}
    chars = ckpt.state.get("charset")
    if not saved_cfg or chars is None:
        raise VinocrError(f"{ckpt.path}: checkpoint has no saved config/charset; was it written "
                          "by vinocr-finetune?")
    charset = load_charset(chars)
    charset.name = saved_cfg.get("Global", {}).get("charset", "custom")
    arch = dict(saved_cfg["Architecture"], pretrained=None)
    model, _ = model_from_config(arch, charset)
    state = ckpt.model_state
    if any(".lora_A" in k for k in state):
        from vinocr.models.lora import inject_lora, merge_lora

        tech = saved_cfg.get("Technique", {})
        kwargs = {k: tech[k] for k in ("targets", "rank", "dropout") if k in tech}
        alpha = tech.get("lora_alpha", tech.get("alpha"))
        if alpha is not None:
            kwargs["alpha"] = alpha
        inject_lora(model, **kwargs)
        load_weights(model, state, strict=True, source=str(ckpt.path))
        model = merge_lora(model)
        logger.info("%s: LoRA adapters merged into the base weights", ckpt.path)
    else:
        load_weights(model, state, strict=True, source=str(ckpt.path))
    model.eval()
    return LoadedModel(str(ckpt.path), model, charset, saved_cfg)


def make_reader(loaded: LoadedModel, decode_cfg: Optional[Mapping[str, Any]],
                image_shape: Sequence[int]) -> Tuple[Callable[[List[np.ndarray]], List[Any]],
                                                     Callable[[str], str]]:
    """``(read, canonical)`` for ``loaded``: ``read(bgr_crops)`` gives one decoder result per crop
    (``.text``, ``.confidence``, ``.char_confidences``); ``canonical(label)`` spells a label as
    the decoder spells texts (plate formats: no separators), for scoring.

    An exported directory uses its own predictor, preprocessing and decoder settings; a checkpoint
    is run with ``decode_cfg`` at ``image_shape``, squeezed to it as in training.
    """
    if loaded.recognizer is not None:
        return loaded.recognizer.predict, loaded.recognizer.decoder.canonical
    probs, decoder = make_prob_reader(loaded, decode_cfg, image_shape)
    return (lambda images: decoder.decode(probs(images))), decoder.canonical


def make_prob_reader(loaded: LoadedModel, decode_cfg: Optional[Mapping[str, Any]],
                     image_shape: Sequence[int]) -> Tuple[Callable[[List[np.ndarray]], np.ndarray],
                                                          Any]:
    """``(probs, decoder)``: ``probs(bgr_crops)`` is the [N, T, C] class probabilities of the
    crops (every crop squeezed to the model input, so T is shared), ``decoder`` the decoder
    :func:`make_reader` applies to them. For callers that decode the same matrices twice (e.g.
    comparing the constrained read with the unconstrained one)."""
    if loaded.recognizer is not None:
        rec = loaded.recognizer
        if rec.dynamic_width:
            raise VinocrError("probabilities of a batch need one input width: load the export "
                              "without dynamic_width")
        return (lambda images: np.stack(rec.frame_probs(images))), rec.decoder
    import paddle

    from vinocr.data.preprocess import resize_norm
    from vinocr.decode import build_decoder

    decoder = build_decoder(decode_cfg, charset=loaded.charset, key="Decode")
    shape = tuple(int(v) for v in image_shape)

    def probs(images: List[np.ndarray]) -> np.ndarray:
        batch = np.stack([resize_norm(im, shape)[0] for im in images])
        with paddle.no_grad():
            return loaded.model.predict_proba(paddle.to_tensor(batch)).numpy()

    return probs, decoder

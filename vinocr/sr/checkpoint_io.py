"""Rebuild the generator and the (possibly jointly fine-tuned) recogniser from an SR checkpoint."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

from vinocr.errors import VinocrError


@dataclass
class SRCheckpoint:
    generator: Any
    ocr: Optional[Any]          # None when the checkpoint lacks the recogniser's config
    charset: Optional[Any]
    image_shape: Optional[list]
    state: Dict[str, Any]
    path: Path

    @property
    def lr_shape(self) -> List[int]:
        """The LR grid [H, W] the generator was trained on (the run's ``Generator.lr_shape``)."""
        from vinocr.sr.preprocess import LR_SHAPE

        gen_cfg = (self.state.get("config") or {}).get("Generator") or {}
        return [int(v) for v in gen_cfg.get("lr_shape", LR_SHAPE)]


def resolve_sr_checkpoint(path: Union[str, Path],
                          prefer: Tuple[str, ...] = ("best", "latest")) -> Path:
    """A checkpoint directory as it is; a run directory means the first of ``prefer`` it has
    (evaluation and export want ``best``; resuming wants ``latest``); ``builtin`` is the
    checkpoint shipped in the package (:mod:`vinocr.sr.builtin`)."""
    from vinocr.sr.builtin import resolve_sr_spec

    p = resolve_sr_spec(path)
    if (p / "state.json").exists():
        return p
    for name in prefer:
        if (p / name / "state.json").exists():
            return p / name
    return p


def load_sr_checkpoint(path: Union[str, Path], with_ocr: bool = True) -> SRCheckpoint:
    """The generator (eval mode) and, with ``with_ocr``, the recogniser saved beside it."""
    from vinocr.engine.checkpoint import load_checkpoint
    from vinocr.engine.model_loading import build_trained, records_model
    from vinocr.models.weights import load_weights
    from vinocr.sr.generator import SRGenerator

    ckpt = load_checkpoint(resolve_sr_checkpoint(path))
    st = ckpt.state
    if st.get("kind") != "vinocr-sr":
        raise VinocrError(f"{ckpt.path}: not an SR checkpoint (written by vinocr-train-sr?)")
    arch = (st.get("generator") or {}).get("arch_kwargs")
    if not arch:
        raise VinocrError(f"{ckpt.path}: the checkpoint does not record the generator "
                          "architecture")
    generator = SRGenerator(**arch)
    gen_state = {k[len("generator."):]: v for k, v in ckpt.model_state.items()
                 if k.startswith("generator.")}
    load_weights(generator, gen_state, strict=True, source=str(ckpt.path))
    generator.eval()
    ocr = charset = shape = None
    ocr_info = st.get("ocr") or {}
    if with_ocr and records_model(ocr_info):
        ocr_state = {k[len("ocr."):]: v for k, v in ckpt.model_state.items()
                     if k.startswith("ocr.")}
        loaded = build_trained(ocr_info, ocr_state, ckpt.path)
        ocr, charset = loaded.model, loaded.charset
        shape = list(st.get("image_shape") or loaded.config["Global"]["image_shape"])
    return SRCheckpoint(generator, ocr, charset, shape, st, ckpt.path)

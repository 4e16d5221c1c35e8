"""How much SR helps the recogniser: the same OCR on bicubic LR, on SR and on HR, per frame and
per track (one frame vs all frames fused), plus PSNR/SSIM of bicubic and SR against HR.

All three inputs go through the same path to the recogniser (32x96-style grid ->
:func:`vinocr.sr.lcofl.to_ocr_input`), so the rows of a table differ only in the image.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import paddle
import paddle.nn.functional as F

from vinocr.engine.evaluation import confusion_counts
from vinocr.metrics import text_metrics
from vinocr.sr.data import SRPairs
from vinocr.sr.lcofl import to_ocr_input
from vinocr.sr.preprocess import bicubic_upscale, to_tensor, to_uint8

logger = logging.getLogger(__name__)

SOURCES = ("bicubic", "sr", "hr")


@paddle.no_grad()
def super_resolve(generator: Any, lr_images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """uint8 LR [N, h, w, 3] (or frame stacks [N, F, h, w, 3] for a multi-frame generator) ->
    uint8 SR [N, H, W, 3] with the dygraph generator (eval mode)."""
    was_training = generator.training
    generator.eval()
    out: List[np.ndarray] = []
    for start in range(0, len(lr_images), batch_size):
        x = paddle.to_tensor(to_tensor(list(lr_images[start:start + batch_size])))
        out.extend(to_uint8(generator(x).numpy()))
    if was_training:
        generator.train()
    return np.stack(out)


@paddle.no_grad()
def ocr_probs(ocr: Any, images: np.ndarray, image_shape: Sequence[int], batch_size: int = 64
              ) -> np.ndarray:
    """Recogniser probabilities [N, T, C] for uint8 BGR images on the SR grid."""
    was_training = ocr.training
    ocr.eval()
    out: List[np.ndarray] = []
    for start in range(0, len(images), batch_size):
        x = paddle.to_tensor(to_tensor(list(images[start:start + batch_size])))
        out.append(F.softmax(ocr(to_ocr_input(x, image_shape)), axis=-1).numpy())
    if was_training:
        ocr.train()
    return np.concatenate(out)


@dataclass
class SREvaluation:
    """Frame metrics per source, track metrics per (source, fusion), image quality, confusion."""

    frames: Dict[str, Dict[str, float]] = field(default_factory=dict)
    tracks: Dict[str, Dict[str, float]] = field(default_factory=dict)
    quality: Dict[str, Dict[str, float]] = field(default_factory=dict)
    confusion: Dict[Tuple[str, str], int] = field(default_factory=dict)
    examples: Dict[str, Any] = field(default_factory=dict)
    n_frames: int = 0
    n_tracks: int = 0

    def to_dict(self) -> Dict[str, Any]:
        return {"frames": self.frames, "tracks": self.tracks, "quality": self.quality,
                "n_frames": self.n_frames, "n_tracks": self.n_tracks}


def evaluate_sr(data: SRPairs, ocr: Any, image_shape: Sequence[int], decoder: Any,
                generator: Any = None, sources: Sequence[str] = SOURCES,
                fusion: Sequence[str] = (), quality: bool = True,
                max_examples: int = 8) -> SREvaluation:
    """Evaluate ``sources`` (``bicubic``, ``sr`` — needs ``generator`` —, ``hr``) on ``data``.

    ``fusion``: track-level methods of :func:`vinocr.sr.fusion.recognise_track` to report
    (``single`` = the first frame, ``logprob``, ``vote``); empty = frame metrics only.
    """
    lr = np.concatenate([t.lr for t in data.tracks])
    hr = np.concatenate([t.hr for t in data.tracks])
    texts = [t.text for t in data.tracks for _ in range(len(t.lr))]
    owner = np.concatenate([np.full(len(t.lr), j) for j, t in enumerate(data.tracks)])
    scale = hr.shape[1] // lr.shape[1]
    result = SREvaluation(n_frames=len(lr), n_tracks=len(data.tracks))
    # Examples for grids: the first frame of the first tracks (one plate per row).
    starts = np.concatenate([[0], np.cumsum([len(t.lr) for t in data.tracks])[:-1]])
    pick = [int(i) for i in starts[:max_examples]]
    images: Dict[str, np.ndarray] = {}
    for source in sources:
        if source == "bicubic":
            images[source] = np.stack([bicubic_upscale(im, scale) for im in lr])
        elif source == "sr":
            if generator is None:
                raise ValueError("source 'sr' needs a generator")
            images[source] = super_resolve(
                generator, np.concatenate([data.lr_inputs(t) for t in data.tracks]))
        elif source == "hr":
            images[source] = hr
        else:
            raise ValueError(f"unknown source {source!r} (valid: {', '.join(SOURCES)})")
    for source, imgs in images.items():
        probs = ocr_probs(ocr, imgs, image_shape)
        decoded = decoder.decode(probs)
        preds = [d.text for d in decoded]
        result.frames[source] = text_metrics(preds, texts)
        if source == "sr" or (source == "bicubic" and "sr" not in images):
            result.confusion = confusion_counts(preds, texts)
        if quality and source != "hr":
            from vinocr.sr.metrics import mean_psnr_ssim

            psnr, ssim_v = mean_psnr_ssim(list(imgs), list(hr))
            result.quality[source] = {"psnr": psnr, "ssim": ssim_v}
        if fusion:
            from vinocr.sr.fusion import recognise_track

            for method in fusion:
                fused = []
                for j in range(len(data.tracks)):
                    idx = np.flatnonzero(owner == j)
                    fused.append(recognise_track(
                        [probs[i] for i in idx], decoder, method=method,
                        frame_results=[(decoded[i].text, decoded[i].confidence) for i in idx]))
                truths = [t.text for t in data.tracks]
                metrics = text_metrics([f.text for f in fused], truths)
                conf = np.array([f.confidence for f in fused])
                right = np.array([f.text == t for f, t in zip(fused, truths)])
                # The competition's tie-break: mean confidence on correct minus on wrong tracks.
                metrics["confidence_gap"] = (float(conf[right].mean()) if right.any() else 0.0) - \
                    (float(conf[~right].mean()) if (~right).any() else 0.0)
                result.tracks[f"{source}/{method}"] = metrics
        result.examples[source] = {"images": imgs[pick], "preds": [preds[i] for i in pick]}
    result.examples["lr"] = {"images": lr[pick], "texts": [texts[i] for i in pick],
                             "hr": hr[pick]}
    return result

"""Export of the SR generator as a Paddle inference model, and a predictor for both forms.

An export directory holds ``inference.json`` + ``inference.pdiparams`` (as the recogniser export
writes them, so :func:`vinocr.export.inference.load_predictor` loads it) and ``sr.yml``::

    kind: vinocr-sr
    lr_shape: [16, 48]      # (H, W) the graph's input; any image is padded/resized to it
    scale: 2
    aspect: 3.0             # plates are grey-padded to W/H = 3 before resizing
    generator: {name: small, arch_kwargs: {...}}

The exported graph clips its output to [0, 1]; the dygraph generator does not (training needs the
gradient of overshooting pixels), so :class:`SRPredictor` clips on the dygraph path too and both
paths give the same uint8 images.
"""
from __future__ import annotations

import copy
import logging
import os
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np
import paddle
import yaml

from vinocr.errors import VinocrError
from vinocr.export.inference import load_predictor, run_paddle_predictor
from vinocr.sr.generator import SRGenerator
from vinocr.sr.preprocess import LR_SHAPE, PLATE_ASPECT, fit, frame_stacks, to_tensor, to_uint8

logger = logging.getLogger(__name__)

__all__ = ["export_sr", "export_sr_checkpoint", "SRPredictor", "SR_KIND", "SR_YML"]

SR_KIND = "vinocr-sr"
SR_YML = "sr.yml"


class _ClipWrapper(paddle.nn.Layer):
    """Generator output clipped to [0, 1]: what a deployed model should emit."""

    def __init__(self, model: SRGenerator) -> None:
        super().__init__()
        self.model = model

    def forward(self, x):  # paddle.jit needs the first argument to be called ``self``
        return paddle.clip(self.model(x), 0.0, 1.0)


class _MaxLeakyReLU(paddle.nn.Layer):
    """``max(x, slope * x)``: LeakyReLU for 0 <= slope <= 1, spelled without ``leaky_relu``.

    Paddle 3.3.1's oneDNN inference pass ``conv_activation_onednn_fuse_pass`` segfaults while
    building the fused conv2d + leaky_relu op (``pir::FloatAttribute::data`` on a missing
    attribute), and ``load_predictor`` enables oneDNN. Exporting this equivalent form keeps the
    pattern away from that pass; training keeps the single native op.
    """

    def __init__(self, negative_slope: float) -> None:
        super().__init__()
        self.negative_slope = float(negative_slope)

    def forward(self, x):
        return paddle.maximum(x, x * self.negative_slope)


def _replace_leaky_relu(model: paddle.nn.Layer) -> int:
    """Swap every ``nn.LeakyReLU`` sublayer of ``model`` (in place) for :class:`_MaxLeakyReLU`."""
    swapped = 0
    for _, parent in model.named_sublayers(include_self=True):
        for name, child in list(parent.named_children()):
            slope = getattr(child, "_negative_slope", None)
            if isinstance(child, paddle.nn.LeakyReLU) and slope is not None and 0 <= slope <= 1:
                setattr(parent, name, _MaxLeakyReLU(slope))
                swapped += 1
    return swapped


def _write_atomic(path: Path, text: str) -> None:
    """Write via a temporary file and ``os.replace`` so readers never see a half-written file."""
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def export_sr(generator: SRGenerator, out_dir: Union[str, Path],
              lr_shape: Sequence[int] = LR_SHAPE) -> Path:
    """Save ``generator`` (eval mode, output clipped) for Paddle inference; returns ``out_dir``.

    The input spec is static in H and W (``[None, 3, H, W]``): the generator is trained for one
    LR grid and :class:`SRPredictor` resizes every image to it, while a fixed shape lets the
    inference engine plan the graph once. The caller's generator is not modified (a copy is
    exported, with LeakyReLU spelled as ``max(x, a*x)`` to dodge a Paddle 3.3.1 oneDNN crash),
    so this can be called in the middle of training.
    """
    h, w = int(lr_shape[0]), int(lr_shape[1])
    if h < 1 or w < 1:
        raise VinocrError(f"export_sr: lr_shape must be two positive integers, got {lr_shape}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = copy.deepcopy(generator)
    model.eval()
    _replace_leaky_relu(model)
    wrapped = _ClipWrapper(model)
    wrapped.eval()
    channels = 3 * int(getattr(generator, "frames", 1))
    spec = [paddle.static.InputSpec([None, channels, h, w], "float32", name="x")]
    static = paddle.jit.to_static(wrapped, input_spec=spec, full_graph=True)
    paddle.jit.save(static, str(out / "inference"))
    doc: Dict[str, Any] = {
        "kind": SR_KIND,
        "lr_shape": [h, w],
        "scale": int(generator.scale),
        "aspect": float(PLATE_ASPECT),
        "generator": {"name": getattr(generator, "config_name", "custom"),
                      "arch_kwargs": dict(generator.arch_kwargs)},
    }
    _write_atomic(out / SR_YML, yaml.safe_dump(doc, sort_keys=False))
    logger.info("exported SR generator (x%d, LR %dx%d) to %s", generator.scale, h, w, out)
    return out


def export_sr_checkpoint(checkpoint: Union[str, Path], out_dir: Union[str, Path],
                         rec_out: Union[str, Path, None] = None) -> Tuple[Path, Optional[Path]]:
    """Export an SR checkpoint's generator to ``out_dir`` and, with ``rec_out``, the recogniser
    stored beside it (stage 3 fine-tuned the two together: deploy them as a pair). Returns the
    two directories (the second None without ``rec_out``)."""
    from vinocr.sr.checkpoint_io import load_sr_checkpoint

    ck = load_sr_checkpoint(checkpoint, with_ocr=rec_out is not None)
    out = export_sr(ck.generator, out_dir, lr_shape=ck.lr_shape)
    if rec_out is None:
        return out, None
    if ck.ocr is None:
        raise VinocrError(f"{ck.path}: the checkpoint does not hold its recogniser's config; "
                          "export the recogniser with vinocr-export instead")
    from vinocr.export import export_inference
    from vinocr.models.pretrained import base_name

    ocr_cfg = ck.state["ocr"]["config"]
    extra = {"decode": (ck.state.get("config") or {}).get("Decode") or ocr_cfg.get("Decode"),
             "charset": ck.charset.name, "source": f"SR checkpoint {ck.path}"}
    rec = export_inference(ck.ocr, rec_out, ck.charset, ck.image_shape, extra,
                           base=base_name(ocr_cfg.get("Architecture") or {}))
    return out, Path(rec)


class SRPredictor:
    """BGR uint8 plates of any size -> super-resolved BGR uint8 plates of ``hr_shape``.

    Each image is grey-padded to the plate aspect and resized to ``lr_shape`` (:func:`fit`), run
    through the generator in batches of ``batch_size``, clipped and converted back to uint8.
    Build it with :meth:`from_dir` (exported model) or :meth:`from_generator` (dygraph model,
    e.g. for evaluation during training); both give the same images.
    """

    def __init__(self, run: Callable[[np.ndarray], np.ndarray], lr_shape: Sequence[int],
                 scale: int, aspect: float = PLATE_ASPECT, batch_size: int = 64,
                 frames: int = 1) -> None:
        self._run = run
        #: LR frames per generator input; above 1, the images of one call are one track.
        self.frames = int(frames)
        self.lr_shape: Tuple[int, int] = (int(lr_shape[0]), int(lr_shape[1]))
        self.scale = int(scale)
        self.hr_shape: Tuple[int, int] = (self.lr_shape[0] * self.scale,
                                          self.lr_shape[1] * self.scale)
        self.aspect = float(aspect)
        self.batch_size = max(1, int(batch_size))

    @classmethod
    def from_dir(cls, path: Union[str, Path], threads: int = 1,
                 batch_size: int = 64) -> "SRPredictor":
        """Load a directory written by :func:`export_sr`."""
        d = Path(path)
        meta_path = d / SR_YML
        if not meta_path.is_file():
            raise VinocrError(f"{d}: not an exported SR model (no {SR_YML})")
        try:
            meta = yaml.safe_load(meta_path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise VinocrError(f"{meta_path}: unreadable: {exc}") from exc
        if not isinstance(meta, dict) or meta.get("kind") != SR_KIND:
            kind = meta.get("kind") if isinstance(meta, dict) else None
            raise VinocrError(f"{meta_path}: kind is {kind!r}, expected {SR_KIND!r}")
        try:
            lr_shape = [int(v) for v in meta["lr_shape"]]
            scale = int(meta["scale"])
            aspect = float(meta.get("aspect", PLATE_ASPECT))
            frames = int(((meta.get("generator") or {}).get("arch_kwargs") or {})
                         .get("frames", 1))
        except (KeyError, TypeError, ValueError) as exc:
            raise VinocrError(f"{meta_path}: needs lr_shape [H, W] and scale ({exc})") from exc
        if len(lr_shape) != 2:
            raise VinocrError(f"{meta_path}: lr_shape must be [H, W], got {meta['lr_shape']}")
        for name in ("inference.json", "inference.pdiparams"):
            if not (d / name).is_file():
                raise VinocrError(f"{d}: exported SR model is missing {name}")
        predictor = load_predictor(d, threads=threads)

        def run(x: np.ndarray) -> np.ndarray:
            return run_paddle_predictor(predictor, x)

        logger.info("loaded SR model %s (x%d, LR %s, %d frame(s) per input)", d, scale,
                    lr_shape, frames)
        return cls(run, lr_shape, scale, aspect, batch_size, frames)

    @classmethod
    def from_generator(cls, generator: SRGenerator, lr_shape: Sequence[int] = LR_SHAPE,
                       batch_size: int = 64) -> "SRPredictor":
        """Wrap a dygraph generator: eval mode and no_grad while predicting, then the caller's
        train/eval mode is restored (so it can be used mid-training)."""

        def run(x: np.ndarray) -> np.ndarray:
            was_training = generator.training
            generator.eval()
            try:
                with paddle.no_grad():
                    y = generator(paddle.to_tensor(x))
                    return paddle.clip(y, 0.0, 1.0).numpy()
            finally:
                if was_training:
                    generator.train()

        return cls(run, lr_shape, generator.scale, PLATE_ASPECT, batch_size,
                   int(getattr(generator, "frames", 1)))

    def preprocess(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Images -> float32 (N, 3, H, W) LR batch in [0, 1] (pad to aspect, resize); for a
        multi-frame model the images are one track and each becomes the stack it leads,
        (N, 3F, H, W)."""
        fitted = [fit(img, self.lr_shape, self.aspect) for img in images]
        if self.frames > 1:
            return to_tensor(list(frame_stacks(np.stack(fitted), self.frames)))
        return to_tensor(fitted)

    def __call__(self, images: Sequence[np.ndarray]) -> List[np.ndarray]:
        """Super-resolve ``images``. A multi-frame model (``frames`` > 1) takes the images of
        one call as the frames of one track and returns one SR image per frame."""
        out: List[np.ndarray] = []
        bs = self.batch_size
        if self.frames > 1 and len(images):  # every input needs all the track's frames
            stacked = self.preprocess(images)
            chunks: Iterable[np.ndarray] = (stacked[i:i + bs] for i in range(0, len(images), bs))
        else:
            chunks = (self.preprocess(images[i:i + bs]) for i in range(0, len(images), bs))
        for x in chunks:
            y = self._run(x)
            if tuple(y.shape[2:]) != self.hr_shape:
                raise VinocrError(f"SR model returned {tuple(y.shape[2:])}, expected "
                                  f"{self.hr_shape}")
            out.extend(to_uint8(y))
        return out

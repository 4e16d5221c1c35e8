"""Recognition with an exported model: ``Recognizer.from_dir(dir).predict(images)``.

    from vinocr import Recognizer
    rec = Recognizer.from_dir("exported/vin")          # onnxruntime if exported, else Paddle
    rec.predict("crop.png").text                               # one image -> RecognitionResult
    [r.to_dict() for r in rec.predict([img1, img2])]           # a list -> a list

An exported directory holds ``inference.json`` + ``inference.pdiparams`` (Paddle), usually
``inference.onnx`` (onnxruntime) and optionally ``inference_int8.onnx``, plus ``inference.yml``:
its ``PostProcess.character_dict`` is the dictionary, ``PreProcess`` the input shape,
``vinocr.decode`` the decoder settings and ``vinocr.calibration`` (when present) the confidence
calibration (:mod:`vinocr.calibration`): a temperature and how character confidences combine into
the read's confidence (``aggregate``; ``mean`` when not recorded). Texts are decoded from the raw
probabilities, confidences from the tempered ones.

Images go through :func:`vinocr.data.preprocess.batch_resize_norm`, the function training uses
(through ``resize_norm``), so a crop at the model's input width reaches the network as exactly the
tensor it saw in training. A batch is padded to its widest image (paddleocr's rule); ``predict``
sorts a list by aspect ratio before batching so little padding is added.

Neither this module nor ``import vinocr`` imports Paddle; the Paddle backend imports it when built.
A :class:`Recognizer` is not thread-safe (one predictor per instance): use one per thread.
"""
from __future__ import annotations

import copy
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import (Any, Dict, List, Mapping, Optional, Protocol, Sequence, Tuple, Union,
                    overload)

import numpy as np

from vinocr.calibration import (RAW_AGGREGATE, aggregate_from_record, check_aggregate,
                                check_digit_scale_from_record, check_temperature,
                                decode_calibrated, temperature_from_record)
from vinocr.charset import Charset
from vinocr.data.base import read_image
from vinocr.data.preprocess import DEFAULT_IMAGE_SHAPE, batch_resize_norm, resize_norm
from vinocr.decode import DecodeResult, Decoder, build_decoder
from vinocr.errors import VinocrError
from vinocr.export.onnx import ONNX_FILENAME
from vinocr.export.quantize import INT8_ONNX_FILENAME
from vinocr.vin import (VIN_LENGTH, check_digit_ok, decode_model_year, is_vin_alphabet,
                        validate_vin)

logger = logging.getLogger(__name__)

#: Inference engines. ``auto`` (the default) is onnxruntime when the export has
#: ``inference.onnx`` and onnxruntime is installed, else Paddle: on CPU onnxruntime runs our graph
#: faster (docs/performance.md). ``onnxruntime-int8`` runs ``inference_int8.onnx`` (``vinocr-export
#: --int8``); it is never picked automatically because it trades accuracy for speed.
BACKENDS: Tuple[str, ...] = ("auto", "paddle", "onnxruntime", "onnxruntime-int8")
ONNX_FILE = ONNX_FILENAME
#: The ONNX file each onnxruntime backend runs.
ONNX_FILES: Dict[str, str] = {"onnxruntime": ONNX_FILE, "onnxruntime-int8": INT8_ONNX_FILENAME}

ImageInput = Union[np.ndarray, str, Path]


@dataclass
class RecognitionResult:
    """One recognised crop.

    Attributes:
        text: the decoded text ('' when a constrained decoder found no valid sequence).
        confidence: the read's confidence (0.0 for an empty text). Raw (no calibration recorded,
            or asked for): the mean of ``char_confidences``, PaddleOCR's convention. Calibrated:
            the recorded ``aggregate`` of the tempered ``char_confidences`` (e.g. their product,
            an estimate of the probability that the whole read is right).
        char_confidences: one probability per character of ``text`` (tempered with the
            export's temperature when it records one).
        vin_valid: VIN charsets only: :func:`vinocr.vin.validate_vin` accepts ``text`` (the check
            digit is required for North American WMIs only). None for other charsets.
        check_digit_ok: VIN charsets only: ``text`` is 17 VIN characters with a matching check
            digit (position 9). None for other charsets.
        model_year: VIN charsets only: the model year position 10 encodes, when ``text`` has 17
            characters and position 10 is a year code; otherwise None.
        format, formats, region: plate-format decoding (``Decode.formats``) only: the first
            format ``text`` matched in the configured order, every format it matched, and the
            region code of ``format`` (e.g. ``DE``, ``US-CA``; None for region-free formats).
    """

    text: str
    confidence: float
    char_confidences: List[float] = field(default_factory=list)
    vin_valid: Optional[bool] = None
    check_digit_ok: Optional[bool] = None
    model_year: Optional[int] = None
    format: Optional[str] = None
    formats: List[str] = field(default_factory=list)
    region: Optional[str] = None

    def to_dict(self) -> Dict[str, Any]:
        """Plain JSON-ready dict; the VIN fields appear only for VIN charsets, the format fields
        only when a plate format matched."""
        out = asdict(self)
        if self.vin_valid is None:
            for key in ("vin_valid", "check_digit_ok", "model_year"):
                out.pop(key)
        if self.format is None:
            for key in ("format", "formats", "region"):
                out.pop(key)
        return out


def result_from_decode(decoded: DecodeResult, vin: bool) -> RecognitionResult:
    """A :class:`RecognitionResult` for a decoder output; ``vin`` adds the VIN fields."""
    result = RecognitionResult(text=decoded.text, confidence=float(decoded.confidence),
                               char_confidences=[float(c) for c in decoded.char_confidences])
    if decoded.format is not None:
        result.format, result.region = decoded.format, decoded.region
        result.formats = list(decoded.formats)
    if vin:
        text = decoded.text
        result.vin_valid = bool(text) and validate_vin(text).valid
        result.check_digit_ok = check_digit_ok(text)
        result.model_year = decode_model_year(text) if len(text) == VIN_LENGTH else None
    return result


# ---------------------------------------------------------------------------------- backends
class Backend(Protocol):
    """What the recogniser needs from an inference engine."""

    name: str
    #: The width the engine's input is fixed to, or None when any width is accepted.
    fixed_width: Optional[int]

    def run(self, batch: np.ndarray) -> np.ndarray:
        """float32 [N, 3, H, W] -> per-frame class probabilities (or logits) [N, T, C]."""


class PaddleBackend:
    """Paddle inference predictor (oneDNN on CPU unless ``mkldnn=False``)."""

    name = "paddle"
    fixed_width: Optional[int] = None

    def __init__(self, model_dir: Union[str, Path], threads: int = 1, mkldnn: bool = True) -> None:
        from vinocr.export.inference import load_predictor

        self.predictor = load_predictor(model_dir, threads=threads, mkldnn=mkldnn)
        self._input = self.predictor.get_input_handle(self.predictor.get_input_names()[0])
        self._output = self.predictor.get_output_handle(self.predictor.get_output_names()[0])

    def run(self, batch: np.ndarray) -> np.ndarray:
        self._input.reshape(list(batch.shape))
        self._input.copy_from_cpu(np.ascontiguousarray(batch, dtype=np.float32))
        self.predictor.run()
        return self._output.copy_to_cpu()


class OnnxRuntimeBackend:
    """onnxruntime on CPU for ``inference.onnx`` (or ``inference_int8.onnx``) in the directory."""

    def __init__(self, model_dir: Union[str, Path], threads: int = 1,
                 name: str = "onnxruntime") -> None:
        from vinocr.export.manifest import verify_recorded
        from vinocr.export.onnx import onnx_session

        if name not in ONNX_FILES:
            raise VinocrError(f"unknown onnxruntime backend {name!r} (valid: "
                              f"{', '.join(ONNX_FILES)})")
        self.name = name
        filename = ONNX_FILES[name]
        path = Path(model_dir) / filename
        if not path.is_file():
            how = ("vinocr-export --int8 --calib DATASET" if name == "onnxruntime-int8"
                   else "vinocr-export without --no-onnx")
            raise VinocrError(f"{Path(model_dir)}: no {filename} (export it with {how}, or use "
                              "backend 'paddle')")
        verify_recorded(model_dir, [filename])  # when inference.yml records it
        self.session = onnx_session(path, threads=threads)
        inp = self.session.get_inputs()[0]
        self._input_name = inp.name
        width = inp.shape[3] if len(inp.shape) == 4 else None
        self.fixed_width = width if isinstance(width, int) and width > 0 else None

    def run(self, batch: np.ndarray) -> np.ndarray:
        feed = {self._input_name: np.ascontiguousarray(batch, dtype=np.float32)}
        return self.session.run(None, feed)[0]


def resolve_backend(model_dir: Union[str, Path], backend: str = "auto") -> str:
    """The engine ``backend`` names for ``model_dir``: ``auto`` becomes ``onnxruntime`` when the
    directory has ``inference.onnx`` and onnxruntime imports, otherwise ``paddle``."""
    if backend not in BACKENDS:
        raise VinocrError(f"unknown backend {backend!r} (valid: {', '.join(BACKENDS)})")
    if backend != "auto":
        return backend
    if (Path(model_dir) / ONNX_FILE).is_file():
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            logger.info("onnxruntime is not installed: using Paddle inference")
        else:
            return "onnxruntime"
    return "paddle"


def build_backend(model_dir: Union[str, Path], backend: str = "auto", threads: int = 1,
                  mkldnn: bool = True) -> Backend:
    engine = resolve_backend(model_dir, backend)
    if engine == "paddle":
        return PaddleBackend(model_dir, threads=threads, mkldnn=mkldnn)
    return OnnxRuntimeBackend(model_dir, threads=threads, name=engine)


# ------------------------------------------------------------------------------ exported dir
@dataclass
class ModelInfo:
    """What ``inference.yml`` says about an exported model."""

    charset: Charset
    image_shape: Tuple[int, int, int]
    decode: Dict[str, Any]
    source: Optional[str] = None
    #: Confidence temperature (``vinocr.calibration.temperature``; 1.0 when not recorded).
    temperature: float = 1.0
    #: How character confidences combine into a read's (``vinocr.calibration.aggregate``;
    #: ``mean`` when not recorded, as in records written before it existed).
    aggregate: str = RAW_AGGREGATE
    #: Factor on the confidence of VIN reads whose check digit fails
    #: (``vinocr.calibration.check_digit_failed.scale``; None when not recorded).
    check_digit_scale: Optional[float] = None
    #: Crops narrower than this are joined as two rows before resizing (0: never).
    two_row_max_aspect: float = 0.0


def read_model_info(model_dir: Union[str, Path]) -> ModelInfo:
    """Dictionary, input shape and decoder settings of an exported directory."""
    import yaml

    d = Path(model_dir)
    if not d.is_dir():
        raise VinocrError(f"{d}: model directory not found")
    path = d / "inference.yml"
    if not path.is_file():
        raise VinocrError(f"{d}: no inference.yml (is this a vinocr-export directory?)")
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise VinocrError(f"{path}: invalid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(doc, dict):
        raise VinocrError(f"{path}: expected a mapping at the top level")
    chars = (doc.get("PostProcess") or {}).get("character_dict")
    if not isinstance(chars, list) or not chars:
        raise VinocrError(f"{path}: PostProcess.character_dict must be a non-empty list of "
                          "characters")
    image_shape: Sequence[int] = DEFAULT_IMAGE_SHAPE
    for op in (doc.get("PreProcess") or {}).get("transform_ops") or []:
        if isinstance(op, dict) and "RecResizeImg" in op:
            image_shape = (op["RecResizeImg"] or {}).get("image_shape", image_shape)
    if len(image_shape) != 3:
        raise VinocrError(f"{path}: RecResizeImg.image_shape must be [C, H, W], got {image_shape}")
    extra = doc.get("vinocr") or {}
    name = str(extra.get("charset") or "custom")
    charset = Charset([str(c) for c in chars], name=name,
                      case_insensitive=False if name == "ppocr" else None)
    decode = dict(extra.get("decode") or {"method": "greedy"})
    where = f"{path}: vinocr.calibration"
    temperature = temperature_from_record(extra.get("calibration"), where)
    aggregate = aggregate_from_record(extra.get("calibration"), where)
    check_digit_scale = check_digit_scale_from_record(extra.get("calibration"), where)
    two_row = extra.get("two_row_max_aspect", 0.0)
    if isinstance(two_row, bool) or not isinstance(two_row, (int, float)) or not two_row >= 0:
        raise VinocrError(f"{path}: vinocr.two_row_max_aspect must be a number >= 0, got "
                          f"{two_row!r}")
    return ModelInfo(charset, tuple(int(v) for v in image_shape), decode,  # type: ignore[arg-type]
                     extra.get("source"), temperature, aggregate, check_digit_scale,
                     float(two_row))


def is_vin_charset(charset: Charset) -> bool:
    return charset.name == "vin" or is_vin_alphabet(charset.characters)


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


# ------------------------------------------------------------------------------- recogniser
class Recognizer:
    """An exported recogniser: preprocessing, inference engine and CTC decoder in one object.

    Build it with :meth:`from_dir`; the constructor takes the parts (tests and custom engines).

    Args:
        backend: the inference engine (see :class:`Backend`).
        charset: the model's dictionary.
        image_shape: model input (C, H, W); W is the minimum (padded) width.
        decode: decoder settings (``vinocr.decode.build_decoder`` mapping).
        dynamic_width: False (default) squeezes crops wider than W to W exactly as training and
            ``vinocr-eval`` do, so predictions match the measured accuracy; True lets batches
            grow to keep wide crops' aspect (stock paddleocr's inference rule).
        batch_size: images per engine call in :meth:`predict`.
        temperature: confidence temperature (:mod:`vinocr.calibration`).
        aggregate: how tempered character confidences combine into the read's confidence
            (:data:`vinocr.calibration.AGGREGATES`). ``temperature=1.0`` with ``"mean"`` (the
            defaults) reports the raw confidences. Texts depend on neither.
        check_digit_scale: factor (capped at 1) on the confidence of VIN reads whose check
            digit fails (:mod:`vinocr.calibration`); None applies none.
        two_row_max_aspect: crops narrower than this are read as two rows
            (:func:`vinocr.data.preprocess.join_rows`); 0 reads every crop as one line.
    """

    def __init__(self, backend: Backend, charset: Charset,
                 image_shape: Sequence[int] = DEFAULT_IMAGE_SHAPE,
                 decode: Optional[Mapping[str, Any]] = None, dynamic_width: bool = False,
                 batch_size: int = 16, temperature: float = 1.0,
                 aggregate: str = RAW_AGGREGATE, two_row_max_aspect: float = 0.0,
                 check_digit_scale: Optional[float] = None) -> None:
        if batch_size < 1:
            raise VinocrError(f"batch_size must be >= 1, got {batch_size}")
        self.backend = backend
        self.charset = charset
        self.image_shape: Tuple[int, int, int] = tuple(int(v) for v in image_shape)  # type: ignore
        self.decode_config: Dict[str, Any] = dict(decode or {"method": "greedy"})
        self.decoder: Decoder = build_decoder(self.decode_config, charset=charset, key="decode")
        self.dynamic_width = dynamic_width
        self.batch_size = batch_size
        self.is_vin = is_vin_charset(charset)
        self.model_dir: Optional[Path] = None
        self.temperature = temperature
        self.aggregate = aggregate
        self.check_digit_scale = None if check_digit_scale is None \
            else check_temperature(check_digit_scale, "check_digit_scale")
        self.two_row_max_aspect = float(two_row_max_aspect)

    @property
    def temperature(self) -> float:
        """The confidence temperature applied by :meth:`decode` (1.0: raw confidences)."""
        return self._temperature

    @temperature.setter
    def temperature(self, value: float) -> None:
        self._temperature = check_temperature(value, "temperature")

    @property
    def aggregate(self) -> str:
        """How :meth:`decode` combines character confidences into a read's (``mean``: raw)."""
        return self._aggregate

    @aggregate.setter
    def aggregate(self, value: str) -> None:
        self._aggregate = check_aggregate(value, "aggregate")

    def use_raw_confidence(self) -> None:
        """Report raw confidences from now on (temperature 1, mean of characters)."""
        self.temperature, self.aggregate, self.check_digit_scale = 1.0, RAW_AGGREGATE, None

    def variant(self, decode: Optional[str] = None,
                dynamic_width: Optional[bool] = None) -> "Recognizer":
        """This recogniser with another decoder method and/or width rule: same engine,
        preprocessing and calibration (a copy, so every setting carries over, including ones
        added later), only the decoder is built anew."""
        out = copy.copy(self)
        if decode is not None:
            out.decode_config = {**self.decode_config, "method": decode}
            out.decoder = build_decoder(out.decode_config, charset=self.charset, key="decode")
        if dynamic_width is not None:
            out.dynamic_width = dynamic_width
        return out

    @classmethod
    def from_dir(cls, model_dir: Union[str, Path], backend: str = "auto", threads: int = 1,
                 decode: Union[Mapping[str, Any], str, None] = None, mkldnn: bool = True,
                 dynamic_width: bool = False, batch_size: int = 16,
                 temperature: Optional[float] = None,
                 aggregate: Optional[str] = None) -> "Recognizer":
        """Load an exported directory.

        Args:
            model_dir: the ``vinocr-export`` output.
            backend: ``"auto"`` (onnxruntime when the directory has ``inference.onnx``, else
                Paddle), ``"paddle"`` (Paddle inference), ``"onnxruntime"`` (``inference.onnx``)
                or ``"onnxruntime-int8"`` (``inference_int8.onnx``, ``vinocr-export --int8``).
            threads: CPU threads of the engine.
            decode: decoder overrides merged over ``inference.yml``'s ``vinocr.decode``: a
                mapping (e.g. ``{"beam_size": 8}``) or just a method name (``"greedy"``).
            mkldnn: use oneDNN in the Paddle backend.
            dynamic_width, batch_size: see the class docstring.
            temperature, aggregate: the confidence calibration. Both None (default): the one
                ``inference.yml`` records (``vinocr.calibration``, with its check-digit factor;
                raw without one). Giving either replaces the record, the other defaulting to
                1.0 / ``"mean"`` and no check-digit factor, so ``temperature=1.0`` gives raw
                confidences.
        """
        if backend not in BACKENDS:
            raise VinocrError(f"unknown backend {backend!r} (valid: {', '.join(BACKENDS)})")
        if threads < 1:
            raise VinocrError(f"threads must be >= 1, got {threads}")
        info = read_model_info(model_dir)
        cfg = dict(info.decode)
        if isinstance(decode, str):
            cfg["method"] = decode
        elif decode:
            cfg.update(decode)
        engine = build_backend(model_dir, backend, threads=threads, mkldnn=mkldnn)
        backend = engine.name
        scale = None
        if temperature is None and aggregate is None:
            temperature, aggregate, scale = info.temperature, info.aggregate, \
                info.check_digit_scale
        rec = cls(engine, info.charset, info.image_shape, cfg, dynamic_width=dynamic_width,
                  batch_size=batch_size, temperature=1.0 if temperature is None else temperature,
                  aggregate=aggregate or RAW_AGGREGATE,
                  two_row_max_aspect=info.two_row_max_aspect, check_digit_scale=scale)
        rec.model_dir = Path(model_dir)
        logger.info("loaded %s (%s, %d threads, charset %s, decode %s, confidence: %s of "
                    "characters, temperature %.4g%s)", model_dir, backend, threads,
                    info.charset.name, cfg, rec.aggregate, rec.temperature,
                    "" if rec.check_digit_scale is None
                    else f", x{rec.check_digit_scale:.3g} on VINs failing the check digit")
        return rec

    # ------------------------------------------------------------------------ pipeline steps
    def preprocess(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """BGR crops -> the float32 [N, 3, H, W] batch the engine receives."""
        if not images:
            raise VinocrError("no images to recognise")
        width = self.backend.fixed_width
        rows = self.two_row_max_aspect
        if width is not None:
            shape = (self.image_shape[0], self.image_shape[1], width)
            return np.stack([resize_norm(im, shape, two_row_max_aspect=rows)[0] for im in images])
        if not self.dynamic_width:
            return np.stack([resize_norm(im, self.image_shape, two_row_max_aspect=rows)[0]
                             for im in images])
        return batch_resize_norm(images, self.image_shape, two_row_max_aspect=rows)

    def forward(self, batch: np.ndarray) -> np.ndarray:
        """Engine call: [N, 3, H, W] -> per-frame class probabilities [N, T, C]."""
        probs = np.asarray(self.backend.run(batch))
        if probs.ndim != 3 or probs.shape[0] != batch.shape[0]:
            raise VinocrError(f"{self.backend.name}: expected output [N, T, C] for {batch.shape[0]}"
                              f" images, got shape {probs.shape}")
        if probs.shape[2] != self.charset.num_classes:
            raise VinocrError(f"model outputs {probs.shape[2]} classes but its dictionary needs "
                              f"{self.charset.num_classes}; inference.yml does not match the model")
        # Exports include the softmax; an engine handing back logits is normalised here.
        if probs.size and (probs.min() < 0 or np.abs(probs.sum(-1) - 1).max() > 1e-3):
            probs = _softmax(probs.astype(np.float32))
        return probs

    def decode(self, probs: np.ndarray) -> List[RecognitionResult]:
        """[N, T, C] probabilities -> one result per image: texts from ``probs``, confidences
        from them tempered by :attr:`temperature`, a read's the :attr:`aggregate` of its
        characters'."""
        decoded = decode_calibrated(self.decoder, np.asarray(probs), self.temperature,
                                    aggregate=self.aggregate,
                                    check_digit_scale=self.check_digit_scale)
        return [result_from_decode(d, self.is_vin) for d in decoded]  # type: ignore[union-attr]

    # ------------------------------------------------------------------------------ predict
    @overload
    def predict(self, images: ImageInput, batch_size: Optional[int] = None
                ) -> RecognitionResult: ...

    @overload
    def predict(self, images: Sequence[ImageInput], batch_size: Optional[int] = None
                ) -> List[RecognitionResult]: ...

    def predict(self, images, batch_size=None):
        """Recognise one image (array or path) -> a result, or a list of them -> a list.

        An array is one BGR uint8 crop (H, W, 3) or a grey one (H, W), OpenCV's convention;
        paths are read as BGR.
        """
        single = isinstance(images, (np.ndarray, str, Path))
        if single:
            items = [images]
        else:
            try:
                items = list(images)
            except TypeError:
                raise VinocrError("expected an image array, a path or a list of them, got "
                                  f"{type(images).__name__}") from None
        if not items:
            return []
        loaded = [self._load(x) for x in items]
        size = self.batch_size if batch_size is None else batch_size
        if size < 1:
            raise VinocrError(f"batch_size must be >= 1, got {size}")
        # Similar aspect ratios share a batch, so narrow crops are not padded to a wide one's width.
        order = sorted(range(len(loaded)), key=lambda i: loaded[i].shape[1] / loaded[i].shape[0])
        results: List[Optional[RecognitionResult]] = [None] * len(loaded)
        for start in range(0, len(order), size):
            idx = order[start:start + size]
            batch = self.preprocess([loaded[i] for i in idx])
            for i, res in zip(idx, self.decode(self.forward(batch))):
                results[i] = res
        return results[0] if single else results  # type: ignore[return-value]

    def frame_probs(self, images: Sequence[ImageInput], batch_size: Optional[int] = None
                    ) -> List[np.ndarray]:
        """Per image, the [T, C] class probabilities its decoding starts from, in input order.

        Multi-frame fusion (:mod:`vinocr.sr.fusion`) needs the CTC matrices rather than texts.
        Batching and preprocessing are those of :meth:`predict`, so decoding these arrays gives
        exactly :meth:`predict`'s results. With ``dynamic_width`` the T of an image depends on
        its batch's padded width.
        """
        loaded = [self._load(x) for x in images]
        size = self.batch_size if batch_size is None else batch_size
        if size < 1:
            raise VinocrError(f"batch_size must be >= 1, got {size}")
        order = sorted(range(len(loaded)), key=lambda i: loaded[i].shape[1] / loaded[i].shape[0])
        out: List[Optional[np.ndarray]] = [None] * len(loaded)
        for start in range(0, len(order), size):
            idx = order[start:start + size]
            probs = self.forward(self.preprocess([loaded[i] for i in idx]))
            for k, i in enumerate(idx):
                out[i] = probs[k]
        return out  # type: ignore[return-value]

    @staticmethod
    def _load(image: ImageInput) -> np.ndarray:
        if isinstance(image, (str, Path)):
            return read_image(image)
        if isinstance(image, np.ndarray):
            if image.ndim not in (2, 3) or image.shape[0] == 0 or image.shape[1] == 0:
                raise VinocrError(f"expected a BGR image (H, W, 3) or a grey one (H, W), got an "
                                  f"array of shape {image.shape}")
            return image
        raise VinocrError(f"expected an image array or a path, got {type(image).__name__}")

    def __repr__(self) -> str:
        return (f"Recognizer({self.model_dir or '?'}, backend={self.backend.name!r}, "
                f"charset={self.charset.name!r}, decode={self.decode_config.get('method')!r})")

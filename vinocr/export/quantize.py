"""Static int8 quantisation of an exported recogniser for onnxruntime.

:func:`quantize_onnx` writes ``inference_int8.onnx`` beside the fp32 files of a ``vinocr-export``
directory and records in ``inference.yml`` (section ``vinocr.int8``) what it is: format, weight and
activation types, calibration method and how many crops calibrated it, and where they came from.
The fp32 files are untouched, so one directory serves both precisions.

How it is made, with onnxruntime's own tooling (``onnxruntime.quantization``):

1. The Paddle graph is converted again at opset >= 13 into a temporary file: per-channel weights
   need ``DequantizeLinear`` with an ``axis``, which opset 11 (our fp32 default) lacks.
2. ``quant_pre_process`` folds the graph as onnxruntime would at load time (conv + bias, shapes),
   so the quantiser sees the same nodes the runtime runs. Without it every bias ``Add`` paddle2onnx
   writes stays separate and the int8 model is about twice as slow as fp32 (measured).
3. ``quantize_static`` calibrates activation ranges on the given crops (preprocessed exactly as
   :class:`vinocr.predict.Recognizer` preprocesses them; each range is the mean over batches of
   4 of the batch's min/max) and writes QDQ (default) or QOperator nodes: int8 weights per
   output channel, uint8 activations per tensor. The classifier and its softmax stay float (:func:`_head_nodes`).

Post-training quantisation costs this network accuracy; ``docs/performance.md`` has the measured
cost. Measure it on your own validation set (``vinocr-eval --backends onnxruntime
onnxruntime-int8``) before deploying int8.

Calibration data must be training data: crops from a test split would tune the model to the set
that measures it. The CLI refuses test splits (``vinocr.data.split.held_out_test_reason``).

On CPUs without VNNI (AVX2 only) onnxruntime's u8s8 kernels can saturate 16-bit intermediate sums;
``reduce_range=True`` quantises weights to 7 bits, which avoids that at a small accuracy cost.
"""
from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Union

import numpy as np

from vinocr.errors import VinocrError

logger = logging.getLogger(__name__)

INT8_ONNX_FILENAME = "inference_int8.onnx"
QUANT_FORMATS = ("qdq", "qoperator")
#: Per-channel ``DequantizeLinear`` (its ``axis`` attribute) exists from opset 13.
MIN_INT8_OPSET = 13
#: Fewer crops than this give activation ranges that depend on which crops were drawn.
MIN_CALIBRATION_CROPS = 16
#: Crops per calibration batch (see :func:`quantize_onnx`).
CALIBRATION_BATCH = 4


@dataclass(frozen=True)
class Int8Report:
    """What :func:`quantize_onnx` wrote and how the int8 outputs compare with fp32 on the
    calibration crops (not an accuracy figure: those crops tuned the ranges)."""

    path: Path
    crops: int
    max_abs_diff: float
    frame_agreement: float
    seconds: float


def _quantization_api() -> Any:
    try:
        from onnxruntime import quantization
    except ImportError as exc:  # onnxruntime.quantization imports onnx and ml_dtypes
        raise VinocrError(f"int8 export needs onnxruntime's quantisation tools ({exc}); install "
                          "them with 'pip install onnxruntime onnx ml_dtypes'") from None
    return quantization


def calibration_batches(images: Sequence[np.ndarray], image_shape: Sequence[int],
                        batch_size: int = 16) -> List[np.ndarray]:
    """BGR crops -> float32 ``[N, 3, H, W]`` batches, resized as the recogniser resizes them."""
    from vinocr.data.preprocess import resize_norm

    shape = tuple(int(v) for v in image_shape)
    tensors = [resize_norm(im, shape)[0] for im in images]
    return [np.stack(tensors[i:i + batch_size]) for i in range(0, len(tensors), batch_size)]


def _reader(batches: List[np.ndarray], input_name: str) -> Any:
    quantization = _quantization_api()

    class _Batches(quantization.CalibrationDataReader):
        def __init__(self) -> None:
            self._it: Iterator[np.ndarray] = iter(batches)

        def get_next(self) -> Optional[Dict[str, np.ndarray]]:
            x = next(self._it, None)
            return None if x is None else {input_name: x}

        def rewind(self) -> None:
            self._it = iter(batches)

    return _Batches()


@contextlib.contextmanager
def _root_logger_quiet() -> Iterator[None]:
    """onnxruntime's quantiser logs through the root logger at INFO, one line per weight channel
    whose scale it adjusts (channels pruned to zero in the pretrained model): hundreds of lines
    that say nothing actionable. Warnings and errors still pass."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        root.setLevel(level)


def _head_nodes(path: Path) -> List[str]:
    """Names of the nodes from the classifier's MatMul to the output softmax, walking back from
    the graph output.

    They stay in float: a uint8 softmax output has 1/255 resolution, so every class below 0.002
    reads as exactly 0 (log-probability -inf to the CTC decoders) and the constrained decoders,
    which need the runner-up classes, collapse (measured: VIN-grammar sequence accuracy 0.35
    instead of 0.91 with the softmax quantised). The head is one small MatMul; it costs nothing.
    """
    import onnx

    model = onnx.load(str(path))
    producer = {out: node for node in model.graph.node for out in node.output}
    names: List[str] = []
    node = producer.get(model.graph.output[0].name)
    while node is not None and len(names) < 8:
        names.append(node.name)
        if node.op_type in ("MatMul", "Gemm"):
            return names
        node = producer.get(node.input[0]) if node.input else None
    raise VinocrError(f"{path}: no MatMul/Gemm classifier found before the output (is this a "
                      "recogniser exported by vinocr-export?)")


def _compare(fp32_path: Path, int8_path: Path, batches: List[np.ndarray]) -> tuple:
    from vinocr.export.onnx import onnx_session

    ref, got = onnx_session(fp32_path), onnx_session(int8_path)
    name = ref.get_inputs()[0].name
    worst, same, frames = 0.0, 0, 0
    for x in batches:
        a = ref.run(None, {name: x})[0]
        b = got.run(None, {name: x})[0]
        if a.shape != b.shape or not np.isfinite(b).all():
            raise VinocrError(f"{int8_path}: the int8 model gives shape {b.shape} or non-finite "
                              f"outputs where fp32 gives {a.shape}")
        worst = max(worst, float(np.abs(a - b).max()))
        same += int((a.argmax(-1) == b.argmax(-1)).sum())
        frames += a.shape[0] * a.shape[1]
    return worst, same / max(1, frames)


def quantize_onnx(model_dir: Union[str, Path], calibration: Sequence[np.ndarray],
                  image_shape: Sequence[int], quant_format: str = "qdq",
                  per_channel: bool = True, reduce_range: bool = False,
                  source: Optional[str] = None, opset: int = MIN_INT8_OPSET) -> Int8Report:
    """Write ``model_dir / inference_int8.onnx``, statically quantised on ``calibration``.

    Args:
        model_dir: a ``vinocr-export`` directory (``inference.json`` + ``inference.pdiparams``).
        calibration: BGR uint8 crops from the training data (a few hundred is enough).
        image_shape: the model input (C, H, W); crops are resized to it as for prediction.
        quant_format: ``"qdq"`` (QuantizeLinear/DequantizeLinear pairs, fused by onnxruntime at
            load) or ``"qoperator"`` (QLinearConv etc. written out).
        per_channel: one weight scale per output channel (recommended for depthwise convs).
        reduce_range: 7-bit weights, for CPUs without VNNI (see the module docstring).
        source: where the crops came from, recorded in ``inference.yml``.
        opset: ONNX opset of the quantised graph (at least 13).
    """
    from vinocr.export.manifest import add_record
    from vinocr.export.onnx import _paddle_files, export_onnx, onnx_session

    if quant_format not in QUANT_FORMATS:
        raise VinocrError(f"int8 format {quant_format!r}: valid are {', '.join(QUANT_FORMATS)}")
    if len(calibration) < MIN_CALIBRATION_CROPS:
        raise VinocrError(f"int8 calibration needs at least {MIN_CALIBRATION_CROPS} crops, got "
                          f"{len(calibration)}")
    d = Path(model_dir)
    _paddle_files(d)
    q = _quantization_api()
    started = time.perf_counter()
    # Batches of 4, and each tensor's range is the mean over batches of the batch's min/max
    # (onnxruntime's "moving average" within one collection): the global extremes over hundreds
    # of crops are outliers that waste most of the 256 levels. Measured on a fine-tuned VIN model
    # (360 validation crops, VIN decoder, crops in file order): 0.79 with global min/max over
    # batches of 16, 0.856 with the mean over batches of 16, 0.872 over batches of 4 (fp32
    # 0.908). Which crops share a batch moves the result too: 0.856 in the CLI's random order.
    batches = calibration_batches(calibration, image_shape, batch_size=CALIBRATION_BATCH)
    out = d / INT8_ONNX_FILENAME
    with tempfile.TemporaryDirectory(prefix=".int8-", dir=d) as tmp_dir:
        tmp = Path(tmp_dir)
        fp32 = export_onnx(d, tmp / "fp32.onnx", opset=max(MIN_INT8_OPSET, int(opset)))
        pre = tmp / "pre.onnx"
        # skip_symbolic_shape: the graph's shapes are static apart from batch and width, which
        # onnx's own inference handles; the symbolic pass would need sympy for nothing.
        q.shape_inference.quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
        quantized = tmp / "int8.onnx"
        input_name = onnx_session(pre).get_inputs()[0].name
        try:
            with _root_logger_quiet():
                q.quantize_static(
                    str(pre), str(quantized), _reader(batches, input_name),
                    quant_format=(q.QuantFormat.QDQ if quant_format == "qdq"
                                  else q.QuantFormat.QOperator),
                    per_channel=per_channel, reduce_range=reduce_range,
                    nodes_to_exclude=_head_nodes(pre),
                    extra_options={"CalibMovingAverage": True},
                    activation_type=q.QuantType.QUInt8, weight_type=q.QuantType.QInt8,
                    # MinMax: onnxruntime's histogram methods (percentile, entropy) keep every
                    # activation of every crop in memory (10 GB for 100 crops, measured) and
                    # agreed no better with fp32 here.
                    calibrate_method=q.CalibrationMethod.MinMax)
        except Exception as exc:  # noqa: BLE001 - the quantiser raises arbitrary types
            reason = " ".join(str(exc).split()) or type(exc).__name__
            raise VinocrError(f"{d}: onnxruntime could not quantise the model ({reason})") from exc
        worst, agreement = _compare(fp32, quantized, batches)
        os.replace(quantized, out)
    info = {"int8": {"file": INT8_ONNX_FILENAME, "format": quant_format.upper()
                     if quant_format == "qdq" else "QOperator",
                     "weights": "int8, per channel" if per_channel else "int8, per tensor",
                     "activations": "uint8, per tensor", "reduce_range": bool(reduce_range),
                     "calibration": {"method": "minmax, mean over batches",
                                     "batch": CALIBRATION_BATCH, "crops": len(calibration),
                                     "source": source},
                     "opset": max(MIN_INT8_OPSET, int(opset))}}
    add_record(d, INT8_ONNX_FILENAME, info)
    seconds = time.perf_counter() - started
    logger.info("wrote %s (%.1f MB, %d calibration crops, %.0f s)", out,
                out.stat().st_size / 1e6, len(calibration), seconds)
    return Int8Report(out, len(calibration), worst, agreement, seconds)

"""Paddle inference export: ``inference.json`` + ``inference.pdiparams`` (PIR, Paddle 3) and an
``inference.yml`` in the layout stock paddleocr reads, with the softmax inside the graph as
paddleocr's ``CTCLabelDecode`` expects. ``inference.yml`` also records the size and sha256 of the
model files (:mod:`vinocr.export.manifest`), which :func:`load_predictor` checks.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Union

import numpy as np
import paddle
import yaml

from vinocr.charset import Charset, load_charset
from vinocr.errors import VinocrError
from vinocr.export.manifest import (PADDLE_FILES, ExportedModelError, corrupt, pdiparams_problem,
                                    read_records, verify_recorded, write_records)
from vinocr.models.recognizer import RecognitionNet

logger = logging.getLogger(__name__)

#: The ``Global.model_name`` written for each base (:func:`vinocr.models.pretrained.base_name`):
#: paddleocr's name of the same model (``paddleocr.TextRecognition(model_name=...,
#: model_dir=export)``). PP-OCRv5 mobile is the v4 network with v5 weights, named as paddleocr
#: names it. Networks paddleocr has no name for (CRNN, the PP-OCRv4 teacher) are written as PP-OCRv4
#: mobile: paddleocr's static-graph engine runs whatever graph ``inference.json`` holds under that
#: name.
MODEL_NAMES = {"ppocrv4_mobile": "PP-OCRv4_mobile_rec", "ppocrv5_mobile": "PP-OCRv5_mobile_rec",
               "ppocrv6_small": "PP-OCRv6_small_rec"}
DEFAULT_MODEL_NAME = MODEL_NAMES["ppocrv4_mobile"]


class _SoftmaxWrapper(paddle.nn.Layer):
    def __init__(self, model: RecognitionNet) -> None:
        super().__init__()
        self.model = model

    def forward(self, x):  # paddle.jit needs the first argument to be called ``self``
        return paddle.nn.functional.softmax(self.model(x), axis=-1)


def inference_yml(charset: Charset, image_shape: Sequence[int],
                  extra: Optional[Dict[str, Any]] = None,
                  base: str = "ppocrv4_mobile") -> Dict[str, Any]:
    doc: Dict[str, Any] = {
        "Global": {"model_name": MODEL_NAMES.get(base, DEFAULT_MODEL_NAME)},
        "PreProcess": {"transform_ops": [
            {"DecodeImage": {"channel_first": False, "img_mode": "BGR"}},
            {"RecResizeImg": {"image_shape": [int(v) for v in image_shape]}},
        ]},
        "PostProcess": {"name": "CTCLabelDecode", "character_dict": list(charset.characters)},
    }
    if extra:
        doc["vinocr"] = extra
    return doc


def export_inference(model: RecognitionNet, out_dir: Union[str, Path], charset: Any,
                     image_shape: Sequence[int] = (3, 48, 320),
                     extra: Optional[Dict[str, Any]] = None,
                     base: Optional[str] = None) -> Path:
    """Save ``model`` (deploy form is used: branches are folded first) for Paddle inference.
    ``base`` names the pretrained model it descends from (default: its network), which picks the
    ``model_name`` stock paddleocr is told."""
    cs = load_charset(charset)
    if model.num_classes != cs.num_classes:
        raise VinocrError(f"model has {model.num_classes} classes but charset {cs.name!r} needs "
                          f"{cs.num_classes}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.eval()
    # Exact folds (BatchNorm and learnable affines into convs) mean fewer ops at inference and let
    # oneDNN fuse conv + activation. They change the layer structure, so export works on a copy.
    import copy

    model = copy.deepcopy(model).optimize_for_inference()
    wrapped = _SoftmaxWrapper(model)
    wrapped.eval()
    spec = [paddle.static.InputSpec([None, 3, int(image_shape[1]), None], "float32", name="x")]
    static = paddle.jit.to_static(wrapped, input_spec=spec, full_graph=True)
    paddle.jit.save(static, str(out / "inference"))
    doc = inference_yml(cs, image_shape, extra, base=base or model.arch)
    # Hashed after paddle.jit.save has written the files: it writes them itself, so there are no
    # bytes to hash on the way out.
    write_records(out, PADDLE_FILES, doc)
    (out / "inference.yml").write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False),
                                       encoding="utf-8")
    logger.info("exported %s to %s", model.arch, out)
    return out


def load_predictor(model_dir: Union[str, Path], threads: int = 1, mkldnn: bool = True):
    """A Paddle inference predictor for an exported directory (oneDNN on CPU by default).

    Damaged files raise :class:`~vinocr.export.manifest.ExportedModelError` naming the file:
    recorded files are checked against ``inference.yml``; without a record the parameter file's
    layout is walked, because Paddle runs a file cut short inside its last tensor without error.
    """
    from paddle import inference

    d = Path(model_dir)
    json_path, params = d / "inference.json", d / "inference.pdiparams"
    if not json_path.is_file() or not params.is_file():
        raise VinocrError(f"{d}: not an exported model (needs inference.json and "
                          "inference.pdiparams)")
    records = read_records(d)
    verify_recorded(d, PADDLE_FILES, records)
    if params.name not in records:  # a matching hash already proves the file complete
        problem = pdiparams_problem(params)
        if problem is not None:
            raise corrupt(params, problem)
    config = inference.Config(str(json_path), str(params))
    config.disable_gpu()
    config.set_cpu_math_library_num_threads(threads)
    if mkldnn:
        config.enable_mkldnn()
    config.disable_glog_info()
    try:
        return inference.create_predictor(config)
    except Exception as exc:  # Paddle raises RuntimeError/ValueError/... for unreadable files
        lines = str(exc).strip().splitlines()
        reason = " ".join(lines[0].split()) if lines else type(exc).__name__
        # Paddle's messages name no file; attribute the failure by what it was parsing.
        lowered = reason.lower()
        if "json" in lowered:
            raise corrupt(json_path, reason) from None
        if any(word in lowered for word in ("tensor", "load_combine", "partial data", "param")):
            raise corrupt(params, reason) from None
        raise ExportedModelError(f"{d}: Paddle cannot load this exported model ({reason}); "
                                 "re-export the model") from None


def run_paddle_predictor(predictor, x: np.ndarray) -> np.ndarray:
    """One forward pass of a Paddle inference predictor on ``x``; the first output as an array."""
    handle = predictor.get_input_handle(predictor.get_input_names()[0])
    handle.reshape(list(x.shape))
    handle.copy_from_cpu(x)
    predictor.run()
    return predictor.get_output_handle(predictor.get_output_names()[0]).copy_to_cpu()

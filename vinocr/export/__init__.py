"""Export of recognisers as Paddle inference models (loadable by stock paddleocr) and ONNX.

The names below are imported on first use (PEP 562): importing a Paddle-free submodule such as
:mod:`vinocr.export.manifest` (used by the onnxruntime backend) must not import Paddle.
"""
from importlib import import_module
from typing import Any

_EXPORTS = {"export_inference": "inference", "load_predictor": "inference",
            "run_paddle_predictor": "inference", "export_onnx": "onnx",
            "check_onnx_parity": "onnx", "quantize_onnx": "quantize"}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    globals()[name] = value  # later look-ups skip __getattr__
    return value


def __dir__() -> list:
    return sorted(set(globals()) | set(__all__))

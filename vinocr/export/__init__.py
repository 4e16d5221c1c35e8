"""Export of recognisers as Paddle inference models (loadable by stock paddleocr) and ONNX."""
from vinocr.export.inference import export_inference, load_predictor, run_paddle_predictor
from vinocr.export.onnx import check_onnx_parity, export_onnx

__all__ = ["export_inference", "load_predictor", "run_paddle_predictor", "export_onnx",
           "check_onnx_parity"]

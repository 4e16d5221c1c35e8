"""Export of recognisers as Paddle inference models (and, later, ONNX)."""
from vinocr.export.inference import export_inference, load_predictor

__all__ = ["export_inference", "load_predictor"]

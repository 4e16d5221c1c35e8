"""Recognition models: PP-OCRv4 mobile (training and deploy forms), a teacher, CRNN; pretrained
weights, checkpoint loading with reports, vocabulary-mapped head transfer."""
from vinocr.models.recognizer import RecognitionNet
from vinocr.models.registry import build_model, list_models, register_model

__all__ = ["RecognitionNet", "build_model", "list_models", "register_model"]

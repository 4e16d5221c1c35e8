"""Recognition models: PP-OCRv4 mobile (training and deploy forms), a teacher, CRNN; pretrained
weights, checkpoint loading with reports, vocabulary-mapped head transfer."""
from vinocr.models.recognizer import Recognizer
from vinocr.models.registry import build_model, list_models, register_model

__all__ = ["Recognizer", "build_model", "list_models", "register_model"]

"""vinocr: fine-tune PaddlePaddle text recognisers for VINs and licence plates.

Layout: ``vinocr.data`` (readers, preprocessing, loaders, augmentation, synthetic data),
``vinocr.config`` (YAML configs), ``vinocr.charset`` and ``vinocr.vin`` (domain rules),
``vinocr.cli`` (command-line tools). Library code logs through ``logging`` and never prints.
"""
import logging

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())

import warnings as _warnings

# Paddle warns about a missing ccache at import and on every BatchNorm in training mode; neither
# concerns vinocr users and both drown the messages that do.
_warnings.filterwarnings("ignore", message="No ccache found")
_warnings.filterwarnings("ignore", message="When training, we now always track global mean")


def __getattr__(name: str):
    """Lazy top-level names: ``from vinocr import Recognizer`` without importing Paddle up front."""
    if name in ("Recognizer", "RecognitionResult"):
        from vinocr import predict

        return getattr(predict, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

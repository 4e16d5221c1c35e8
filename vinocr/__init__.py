"""vinocr: fine-tune PaddlePaddle text recognisers for VINs and licence plates.

Layout: ``vinocr.data`` (readers, preprocessing, loaders, augmentation, synthetic data),
``vinocr.config`` (YAML configs), ``vinocr.charset`` and ``vinocr.vin`` (domain rules),
``vinocr.cli`` (command-line tools). Library code logs through ``logging`` and never prints.
"""
import logging

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())

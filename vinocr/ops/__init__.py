"""Custom CPU operators for training speed (built on first use, with a Paddle fallback).

``depthwise_conv2d`` / ``use_fast_depthwise``: see :mod:`vinocr.ops.depthwise`.
"""
from vinocr.ops.depthwise import (build_info, depthwise_conv2d, fast_depthwise_available,
                                  get_num_threads, is_depthwise_conv, set_num_threads,
                                  use_fast_depthwise)

__all__ = ["build_info", "depthwise_conv2d", "fast_depthwise_available", "get_num_threads",
           "is_depthwise_conv", "set_num_threads", "use_fast_depthwise"]

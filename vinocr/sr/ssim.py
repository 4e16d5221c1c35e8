"""Differentiable SSIM in Paddle, numerically matching scikit-image.

``ssim(a, b)`` equals ``skimage.metrics.structural_similarity(a, b, gaussian_weights=True,
sigma=1.5, use_sample_covariance=False, data_range=1.0, channel_axis=-1)`` (per image, averaged):
skimage filters the whole image (reflect padding) and then averages the SSIM map only over pixels
at least ``(win - 1) // 2`` from the border -- exactly the pixels a 'valid' convolution produces,
so a valid depthwise conv gives the same numbers without any padding mode. Its gaussian window
has radius ``int(3.5 * sigma + 0.5)`` (11 taps for sigma 1.5), the default ``window`` here.

Used as the ``1 - SSIM(SR, HR)`` term of LCOFL, so it must be differentiable in both inputs.
"""
from __future__ import annotations

from typing import Tuple

import numpy as np
import paddle
import paddle.nn.functional as F

from vinocr.errors import VinocrError

__all__ = ["ssim", "gaussian_window"]

K1, K2 = 0.01, 0.03


def gaussian_window(window: int = 11, sigma: float = 1.5) -> np.ndarray:
    """Normalised 2-D gaussian (``window`` x ``window``), the separable product of 1-D taps."""
    if window < 1 or window % 2 == 0:
        raise VinocrError(f"SSIM window must be a positive odd integer, got {window}")
    r = window // 2
    x = np.arange(-r, r + 1, dtype=np.float64)
    g = np.exp(-0.5 * (x / float(sigma)) ** 2)
    g /= g.sum()
    return np.outer(g, g)


def _check(a: paddle.Tensor, b: paddle.Tensor, window: int) -> Tuple[int, int, int, int]:
    if list(a.shape) != list(b.shape):
        raise VinocrError(f"SSIM inputs differ in shape: {list(a.shape)} vs {list(b.shape)}")
    if a.ndim != 4:
        raise VinocrError(f"SSIM expects (N, C, H, W) tensors, got shape {list(a.shape)}")
    n, c, h, w = (int(v) for v in a.shape)
    if h < window or w < window:
        raise VinocrError(f"SSIM window {window} is larger than the images ({h}x{w})")
    return n, c, h, w


def ssim(a: paddle.Tensor, b: paddle.Tensor, data_range: float = 1.0, window: int = 11,
         sigma: float = 1.5) -> paddle.Tensor:
    """Mean SSIM of two (N, C, H, W) batches over images, channels and valid pixels (scalar).

    Gaussian-weighted local statistics with population (biased) covariance, K1=0.01, K2=0.03.
    """
    n, c, h, w = _check(a, b, window)
    dtype = a.dtype
    kernel = gaussian_window(window, sigma).astype(np.float32)
    # Five statistics x C channels in one grouped (depthwise) conv: the same window everywhere.
    weight = paddle.to_tensor(np.tile(kernel[None, None], (5 * c, 1, 1, 1)), dtype=dtype)
    stack = paddle.concat([a, b, a * a, b * b, a * b], axis=1)
    stats = F.conv2d(stack, weight, padding=0, groups=5 * c)
    mu_a, mu_b, e_aa, e_bb, e_ab = paddle.split(stats, 5, axis=1)
    var_a = e_aa - mu_a * mu_a
    var_b = e_bb - mu_b * mu_b
    cov = e_ab - mu_a * mu_b
    c1 = (K1 * data_range) ** 2
    c2 = (K2 * data_range) ** 2
    num = (2 * mu_a * mu_b + c1) * (2 * cov + c2)
    den = (mu_a * mu_a + mu_b * mu_b + c1) * (var_a + var_b + c2)
    return (num / den).mean()

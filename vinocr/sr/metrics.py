"""Image-quality metrics for SR outputs on uint8 BGR images (scikit-image, numpy).

These are the reporting metrics (PSNR in dB, SSIM with the settings of the LP-SR papers and of
:func:`vinocr.sr.ssim.ssim`: gaussian window sigma 1.5, population covariance); the training loss
uses the differentiable Paddle SSIM instead. Channel order does not matter: both are computed
per channel and averaged.

Identical images: :func:`psnr` returns ``float('inf')`` (the exact value; an MSE of zero has no
finite PSNR). :func:`mean_psnr_ssim` caps each image's PSNR at :data:`PSNR_CAP` dB before
averaging, so one perfect reconstruction cannot make the dataset mean infinite.
"""
from __future__ import annotations

from typing import Sequence, Tuple

import numpy as np
from skimage.metrics import structural_similarity

from vinocr.errors import VinocrError

__all__ = ["psnr", "ssim_uint8", "mean_psnr_ssim", "PSNR_CAP"]

#: Per-image PSNR cap (dB) used when averaging. The smallest non-zero error on a 32x96x3 uint8
#: image (one pixel off by one level) is ~88 dB, so the cap only affects (near-)identical images.
PSNR_CAP = 100.0


def _check_pair(pred: np.ndarray, ref: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    pred, ref = np.asarray(pred), np.asarray(ref)
    if pred.shape != ref.shape:
        raise VinocrError(f"SR metric: prediction shape {pred.shape} differs from reference "
                          f"shape {ref.shape}")
    if pred.dtype != np.uint8 or ref.dtype != np.uint8:
        raise VinocrError(f"SR metric: expected uint8 images, got {pred.dtype} and {ref.dtype}")
    return pred, ref


def psnr(pred: np.ndarray, ref: np.ndarray) -> float:
    """PSNR in dB with data range 255; ``inf`` for identical images."""
    pred, ref = _check_pair(pred, ref)
    mse = float(np.mean((pred.astype(np.float64) - ref.astype(np.float64)) ** 2))
    if mse == 0.0:
        return float("inf")
    # Same formula as skimage.metrics.peak_signal_noise_ratio, without its divide-by-zero warning.
    return float(10.0 * np.log10(255.0 ** 2 / mse))


def ssim_uint8(pred: np.ndarray, ref: np.ndarray) -> float:
    """SSIM (gaussian sigma 1.5, population covariance, data range 255), mean over channels."""
    pred, ref = _check_pair(pred, ref)
    channel_axis = -1 if pred.ndim == 3 else None
    try:
        return float(structural_similarity(pred, ref, gaussian_weights=True, sigma=1.5,
                                           use_sample_covariance=False, data_range=255,
                                           channel_axis=channel_axis))
    except ValueError as exc:  # e.g. image smaller than the 11x11 window
        raise VinocrError(f"SR metric: SSIM failed on images of shape {pred.shape}: {exc}"
                          ) from exc


def mean_psnr_ssim(preds: Sequence[np.ndarray], refs: Sequence[np.ndarray]
                   ) -> Tuple[float, float]:
    """Mean PSNR (each capped at :data:`PSNR_CAP`) and mean SSIM over image pairs."""
    if len(preds) != len(refs):
        raise VinocrError(f"SR metric: {len(preds)} predictions but {len(refs)} references")
    if not preds:
        raise VinocrError("SR metric: no images")
    ps = [min(psnr(p, r), PSNR_CAP) for p, r in zip(preds, refs)]
    ss = [ssim_uint8(p, r) for p, r in zip(preds, refs)]
    return float(np.mean(ps)), float(np.mean(ss))

"""Comparing a rendered image with a real photo: exposure/vignetting fit, PSNR and SSIM.

Exposure and vignetting differ between two photos taken at different apertures, so a render
is compared with the real photo only after a least-squares fit, per image and colour channel,
of ``real ~ (a + v r^2) * render + b`` (``r`` the distance from the centre, 1 at the corners),
inside the triplet's border.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage as ndi

from .triplets import Triplet

__all__ = ["photometric_fit", "apply_photometric", "ssim_separable", "compare"]


def photometric_fit(pred: np.ndarray, real: np.ndarray, r2: np.ndarray, inner) -> np.ndarray:
    """Least-squares ``(a, v, b)`` per channel, (C, 3), for ``real ~ (a + v r^2) pred + b``.

    ``pred``, ``real``: (C, H, W); ``r2``: (H, W); ``inner``: the (rows, cols) slices fitted.
    """
    params = np.zeros((pred.shape[0], 3))
    rr = r2[inner].reshape(-1)
    for c in range(pred.shape[0]):
        p = pred[c][inner].reshape(-1)
        design = np.stack([p, p * rr, np.ones_like(p)], axis=1)
        params[c] = np.linalg.lstsq(design, real[c][inner].reshape(-1), rcond=None)[0]
    return params


def apply_photometric(pred: np.ndarray, params: np.ndarray, r2: np.ndarray) -> np.ndarray:
    """``(a + v r^2) pred + b`` per channel: ``pred`` (C, H, W), ``params`` (C, 3), ``r2`` (H, W)."""
    return (params[:, 0, None, None] + params[:, 1, None, None] * r2) * pred + params[:, 2, None, None]


def ssim_separable(a: np.ndarray, b: np.ndarray, data_range: float = 1.0) -> float:
    """:func:`twohded.metrics.ssim` (11x11 Gaussian window, sigma 1.5, "valid" region, mean
    over channels) of (C, H, W) arrays, computed with two 1-D passes: the same number, much
    faster on the CPU."""
    x = np.arange(-5, 6, dtype=np.float64)
    g = np.exp(-(x**2) / (2 * 1.5**2))
    g /= g.sum()

    def filt(im):
        out = ndi.correlate1d(ndi.correlate1d(im, g, axis=-1, mode="constant"), g, axis=-2, mode="constant")
        return out[..., 5:-5, 5:-5]

    mu_a, mu_b = filt(a), filt(b)
    va, vb, vab = filt(a * a) - mu_a**2, filt(b * b) - mu_b**2, filt(a * b) - mu_a * mu_b
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = ((2 * mu_a * mu_b + c1) * (2 * vab + c2)) / ((mu_a**2 + mu_b**2 + c1) * (va + vb + c2))
    return float(s.mean())


def compare(pred: np.ndarray, triplet: Triplet, with_ssim: bool = True) -> dict[str, float]:
    """PSNR (dB) and SSIM of ``pred`` (3, H, W) against the triplet's real photo inside the
    border, after the photometric fit (the fitted render clipped to [0, 1])."""
    fitted = fitted_render(pred, triplet)
    a = np.clip(fitted[(slice(None), *triplet.inner)], 0, 1)
    b = triplet.real[(slice(None), *triplet.inner)]
    mse = float(((a - b) ** 2).mean())
    out = {"psnr": 10 * math.log10(1.0 / max(mse, 1e-12))}
    if with_ssim:
        out["ssim"] = ssim_separable(a, b)
    return out


def fitted_render(pred: np.ndarray, triplet: Triplet) -> np.ndarray:
    """``pred`` (3, H, W) after the photometric fit to the triplet's real photo."""
    r2 = triplet.r2
    return apply_photometric(pred, photometric_fit(pred, triplet.real, r2, triplet.inner), r2)

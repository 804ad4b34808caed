"""Evaluation metrics: depth errors and image quality, per image, as plain tensor functions.

Depth (:func:`depth_metrics`), over the ``n`` valid pixels ``i`` of one image, prediction
``p`` and ground truth ``g`` in metres (the formulas of Eigen et al. 2014, as every
monocular-depth paper since computes them):

=============  ===============================================  =================
key            definition                                       better
=============  ===============================================  =================
``rmse``       ``sqrt(mean((p - g)^2))``  (metres)               lower
``abs_rel``    ``mean(|p - g| / g)``                             lower
``sq_rel``     ``mean((p - g)^2 / g)``  (metres)                 lower
``rmse_log``   ``sqrt(mean((ln p - ln g)^2))``                   lower
``log10``      ``mean(|log10 p - log10 g|)``                     lower
``delta1``     fraction with ``max(p / g, g / p) < 1.25``        higher
``delta2``     idem ``< 1.25^2``                                 higher
``delta3``     idem ``< 1.25^3``                                 higher
=============  ===============================================  =================

Images (:func:`image_metrics`), ``data_range = 1``:

* ``psnr = 10 log10(1 / MSE)`` dB over all pixels and channels (MSE floored at 1e-10, so
  identical images give 100 dB instead of infinity);
* ``ssim``: Wang et al. 2004, per channel, averaged over channels, constants
  ``K1 = 0.01, K2 = 0.03``; window ``"gaussian"`` (11 x 11, sigma 1.5, population
  covariance: scikit-image's ``structural_similarity(gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False, data_range=1)``) or ``"uniform"`` (7 x 7 box, sample
  covariance: scikit-image's defaults, ``compare_ssim`` of old releases). The map is averaged
  over the pixels whose window lies inside the image (scikit-image crops ``(win - 1) / 2``
  pixels at each border).

All functions compute in float64 and return Python floats; they are tested against hand
computations and scikit-image (``tests/test_metrics.py``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "DEPTH_KEYS",
    "IMAGE_KEYS",
    "HIGHER_IS_BETTER",
    "MetricAverager",
    "depth_metrics",
    "image_metrics",
    "psnr",
    "ssim",
]

#: depth metric keys, in table order
DEPTH_KEYS = ("rmse", "abs_rel", "sq_rel", "rmse_log", "log10", "delta1", "delta2", "delta3")
#: image metric keys
IMAGE_KEYS = ("psnr", "ssim")
#: metrics for which a larger value is better (all others: smaller is better)
HIGHER_IS_BETTER = frozenset({"delta1", "delta2", "delta3", "psnr", "ssim"})

PSNR_MSE_FLOOR = 1e-10  # identical images: 100 dB


def _hw(x: Tensor, name: str) -> Tensor:
    """``(H, W)``, ``(1, H, W)`` or ``(1, 1, H, W)`` -> ``(H, W)``."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
    while x.dim() > 2 and x.shape[0] == 1:
        x = x[0]
    if x.dim() != 2:
        raise ValueError(f"{name}: expected one (H, W) map, got shape {tuple(x.shape)}")
    return x


def depth_metrics(
    pred_m: Tensor,
    gt_m: Tensor,
    mask: Tensor | None = None,
    min_depth: float = 1e-3,
    max_depth: float | None = None,
) -> dict[str, float] | None:
    """Depth errors of one image (see the module docstring for the formulas).

    Args:
        pred_m: predicted depth, ``(H, W)`` (or ``(1, H, W)``, ``(1, 1, H, W)``), metres.
        gt_m: ground-truth depth, same shape, metres.
        mask: bool, same shape: pixels to evaluate (None: all). Pixels are further limited
            to finite ground truth with ``min_depth < g <= max_depth``.
        min_depth, max_depth: the dataset's depth range (metres; ``max_depth=None``: no
            upper bound). The prediction is clamped to ``[min_depth, max_depth]`` first, so
            the logarithms are always defined.

    Returns:
        ``{"rmse", "abs_rel", "sq_rel", "rmse_log", "log10", "delta1", "delta2", "delta3",
        "pixels"}`` as floats (``pixels``: how many were evaluated), or None when no pixel is
        valid.
    """
    p = _hw(pred_m, "pred_m").detach().to(torch.float64)
    g = _hw(gt_m, "gt_m").detach().to(device=p.device, dtype=torch.float64)
    if p.shape != g.shape:
        raise ValueError(f"depth_metrics: prediction {tuple(p.shape)} and ground truth {tuple(g.shape)} differ in size")
    valid = torch.isfinite(g) & (g > min_depth)
    if max_depth is not None:
        valid &= g <= max_depth
    if mask is not None:
        m = _hw(mask, "mask").to(p.device)
        if m.shape != g.shape:
            raise ValueError(f"depth_metrics: mask {tuple(m.shape)} and ground truth {tuple(g.shape)} differ in size")
        valid &= m.bool()
    n = int(valid.sum())
    if n == 0:
        return None
    p = p[valid]
    g = g[valid]
    p = torch.nan_to_num(p, nan=min_depth, posinf=max_depth if max_depth is not None else 1e6, neginf=min_depth)
    p = p.clamp(min=min_depth, max=max_depth)
    diff = p - g
    ratio = torch.maximum(p / g, g / p)
    return {
        "rmse": math.sqrt(float((diff**2).mean())),
        "abs_rel": float((diff.abs() / g).mean()),
        "sq_rel": float((diff**2 / g).mean()),
        "rmse_log": math.sqrt(float(((torch.log(p) - torch.log(g)) ** 2).mean())),
        "log10": float((torch.log10(p) - torch.log10(g)).abs().mean()),
        "delta1": float((ratio < 1.25).double().mean()),
        "delta2": float((ratio < 1.25**2).double().mean()),
        "delta3": float((ratio < 1.25**3).double().mean()),
        "pixels": n,
    }


def _chw(x: Tensor, name: str) -> Tensor:
    """``(C, H, W)`` or ``(1, C, H, W)`` or ``(H, W)`` -> float64 ``(C, H, W)``."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
    if x.dim() == 4 and x.shape[0] == 1:
        x = x[0]
    if x.dim() == 2:
        x = x[None]
    if x.dim() != 3:
        raise ValueError(f"{name}: expected one (C, H, W) image, got shape {tuple(x.shape)}")
    return x.detach().to(torch.float64)


def psnr(pred: Tensor, target: Tensor, data_range: float = 1.0) -> float:
    """PSNR in dB of one image, ``(C, H, W)`` (or ``(H, W)``), over all pixels and channels."""
    p, t = _chw(pred, "pred"), _chw(target, "target").to(pred.device)
    if p.shape != t.shape:
        raise ValueError(f"psnr: images differ in size: {tuple(p.shape)} and {tuple(t.shape)}")
    mse = max(float(((p - t) ** 2).mean()), PSNR_MSE_FLOOR * data_range**2)
    return 10.0 * math.log10(data_range**2 / mse)


def _window(kind: str, device) -> tuple[Tensor, bool]:
    """2-D window ``(1, 1, k, k)`` and whether to use the sample covariance."""
    if kind == "gaussian":
        # scikit-image: gaussian_filter(sigma=1.5, truncate=3.5) -> radius 5, 11 taps
        sigma, radius = 1.5, 5
        x = torch.arange(-radius, radius + 1, dtype=torch.float64, device=device)
        g = torch.exp(-(x**2) / (2 * sigma**2))
        g = g / g.sum()
        return (g[:, None] * g[None, :])[None, None], False
    if kind == "uniform":
        k = 7
        return torch.full((1, 1, k, k), 1.0 / (k * k), dtype=torch.float64, device=device), True
    raise ValueError(f"ssim window {kind!r}: use 'gaussian' or 'uniform'")


def ssim(pred: Tensor, target: Tensor, data_range: float = 1.0, window: str = "gaussian") -> float:
    """SSIM of one image ``(C, H, W)`` (or ``(H, W)``), averaged over channels.

    ``window="gaussian"``: 11 x 11 Gaussian, sigma 1.5, population covariance (Wang et al.
    2004); ``"uniform"``: 7 x 7 box with sample covariance (scikit-image's default). The SSIM
    map is computed where the window fits inside the image ("valid"), as scikit-image's mean.
    """
    p, t = _chw(pred, "pred"), _chw(target, "target").to(pred.device)
    if p.shape != t.shape:
        raise ValueError(f"ssim: images differ in size: {tuple(p.shape)} and {tuple(t.shape)}")
    win, sample_cov = _window(window, p.device)
    k = win.shape[-1]
    if min(p.shape[-2:]) < k:
        raise ValueError(f"ssim: image {tuple(p.shape[-2:])} is smaller than the {k}x{k} window")
    c = p.shape[0]
    x = torch.stack([p, t, p * p, t * t, p * t], dim=0).reshape(5 * c, 1, *p.shape[-2:])
    f = F.conv2d(x, win).reshape(5, c, p.shape[-2] - k + 1, p.shape[-1] - k + 1)
    mu_x, mu_y, xx, yy, xy = f
    cov_norm = (k * k) / (k * k - 1.0) if sample_cov else 1.0
    vx = cov_norm * (xx - mu_x * mu_x)
    vy = cov_norm * (yy - mu_y * mu_y)
    vxy = cov_norm * (xy - mu_x * mu_y)
    c1 = (0.01 * data_range) ** 2
    c2 = (0.03 * data_range) ** 2
    s = ((2 * mu_x * mu_y + c1) * (2 * vxy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (vx + vy + c2))
    return float(s.mean())


def image_metrics(pred: Tensor, target: Tensor, ssim_window: str = "gaussian") -> dict[str, float]:
    """``{"psnr", "ssim"}`` of one image against its target.

    Args:
        pred, target: ``(3, H, W)`` (or ``(1, 3, H, W)``, ``(H, W)``) in ``[0, 1]``; both are
            clamped to ``[0, 1]`` (data range 1).
        ssim_window: ``"gaussian"`` (standard) or ``"uniform"`` (see :func:`ssim`).
    """
    p = _chw(pred, "pred").clamp(0.0, 1.0)
    t = _chw(target, "target").to(p.device).clamp(0.0, 1.0)
    return {"psnr": psnr(p, t), "ssim": ssim(p, t, window=ssim_window)}


class MetricAverager:
    """Average per-image metric dicts over images (each key over the images that have it).

    >>> avg = MetricAverager()
    >>> avg.add({"rmse": 1.0}); avg.add({"rmse": 3.0}); avg.mean()
    {'rmse': 2.0}

    ``None`` (an image without valid pixels) is counted in :attr:`skipped` and otherwise
    ignored. The key ``pixels`` is summed, not averaged.
    """

    def __init__(self) -> None:
        self._sums: dict[str, float] = {}
        self._counts: dict[str, int] = {}
        self.images = 0
        self.skipped = 0

    def add(self, metrics: Mapping[str, float] | None) -> None:
        if metrics is None:
            self.skipped += 1
            return
        self.images += 1
        for key, value in metrics.items():
            value = float(value)
            if math.isnan(value):
                continue
            self._sums[key] = self._sums.get(key, 0.0) + value
            self._counts[key] = self._counts.get(key, 0) + 1

    def update(self, many: Iterable[Mapping[str, float] | None]) -> None:
        for m in many:
            self.add(m)

    def mean(self) -> dict[str, float]:
        """Averages (``pixels``: total), in insertion order of the keys."""
        out = {}
        for key, total in self._sums.items():
            if key == "pixels":
                out[key] = int(total)
            else:
                out[key] = total / self._counts[key]
        return out

    def __len__(self) -> int:
        return self.images

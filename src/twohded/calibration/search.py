"""Fitting a camera's focus distance and blur gain to triplets: surrogate search, then the renderer.

The fitted camera is a base lens (focal length, f-number, ``sigma_per_coc``, CoC model) with two
free numbers: the focus distance ``S`` (metres) and the blur gain ``K`` (pixel-metres,
``sigma_px(x) = K |1/S - 1/x|``), expressed as an effective pixel pitch (:func:`camera_from_fit`;
``K`` absorbs whatever of the aperture, PSF width and pixel size the specs got wrong). As a
separate variant, a constant extra Gaussian blur ``s0`` (pixels) of the sharp photo may be fitted
too: ``sigma_total = sqrt((K |1/S - 1/x|)^2 + s0^2)`` (lens softness, residual misregistration).

Search, coarse to fine:

1. a fast **surrogate** (:func:`error_table`, :func:`surrogate_search`): the sharp photo is
   blurred with one Gaussian per sigma level (:data:`SIGMA_LEVELS`, 0-10 px; larger sigmas
   are clamped to the last level), and for every inverse-depth bin of every triplet the squared
   error against the real photo is tabulated; a camera's score is then a table look-up (each bin
   takes the sigma of its inverse depth; no occlusion), so hundreds of thousands of candidates
   are scored in seconds, on a coarse then a fine grid (:class:`SearchGrid`);
2. the **renderer** (:func:`renderer_refine`): ``render_defocus`` (default mode, with
   occlusions) on a local 3x3 grid of ``(1/S, K)`` around the surrogate's best, re-centred
   while the best is on the grid's edge.

The objective is the mean PSNR (dB) over triplets of the rendered vs the real photo inside the
border, after the photometric fit (:mod:`.photometry`).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from scipy import ndimage as ndi

from ..optics import Camera, get_preset
from .photometry import apply_photometric, compare, photometric_fit
from .triplets import Triplet

__all__ = ["SIGMA_LEVELS", "INV_DEPTH_STEP", "SearchGrid", "DFD_GRID", "camera_from_fit", "gaussian_blur", "render",
           "Table", "error_table", "surrogate_scores", "surrogate_search", "renderer_refine", "fit_camera",
           "per_bin_blur", "torch_threads"]

#: sigma levels (pixels) of the surrogate's blur stack
SIGMA_LEVELS = np.concatenate([np.arange(0, 3.0, 0.1), np.arange(3.0, 6.0, 0.25), np.arange(6.0, 10.01, 0.5)])
#: inverse-depth bins (1/m) of the surrogate's error tables
INV_DEPTH_STEP = 0.02
#: truncation of the Gaussians, in sigmas (as the renderer's default mode)
TRUNCATE = 3.0


@dataclass(frozen=True)
class SearchGrid:
    """Candidates of the search. Coarse grids ``(start, stop, step)`` (stop included) of the
    inverse focus distance (1/m), the gain K (px m) and s0 (px); the fine grid is ``2 * 8 + 1``
    points of ``fine_*`` steps around the coarse best; the renderer moves by ``refine_*``."""

    inv_focus: tuple[float, float, float] = (0.05, 1.5, 0.05)
    gain: tuple[float, float, float] = (0.0, 12.0, 0.25)
    s0: tuple[float, float, float] = (0.0, 1.5, 0.1)
    fine_inv_focus: float = 0.01
    fine_gain: float = 0.05
    fine_s0: float = 0.02
    refine_inv_focus: float = 0.02
    refine_gain: float = 0.1

    @staticmethod
    def for_triplets(triplets: Sequence[Triplet], max_sigma_px: float = float(SIGMA_LEVELS[-1])) -> "SearchGrid":
        """A grid spanning the triplets' depths: 1/S from 0 to 1.25 / (1st percentile depth) in
        30 steps, K from 0 to twice what puts ``max_sigma_px`` at that depth for S = inf, in 48."""
        depths = np.concatenate([t.depth[t.inner].reshape(-1) for t in triplets])
        inv_hi = 1.25 / float(np.percentile(depths, 1))
        step_f = inv_hi / 30
        gain_hi = 2.0 * max_sigma_px / inv_hi
        step_k = gain_hi / 48
        return SearchGrid((step_f, inv_hi, step_f), (0.0, gain_hi, step_k), (0.0, 1.5, 0.1),
                          step_f / 5, step_k / 5, 0.02, step_f * 0.4, step_k * 0.4)


#: the grid that fitted the ``dfd_indoor`` preset (scripts/fit_dfd_camera.py)
DFD_GRID = SearchGrid()


def _arange(start: float, stop: float, step: float) -> np.ndarray:
    return np.arange(start, stop + 1e-5, step)


def camera_from_fit(focus_m: float, gain_px_m: float, base: Camera | None = None, name: str = "dfd_indoor") -> Camera:
    """``base`` (default: D3-Net's lens, ``d3net_nyu``) focused at ``focus_m`` with the pixel pitch
    that gives ``sigma_px(x) = gain_px_m * |1/S - 1/x|``."""
    base = base if base is not None else get_preset("d3net_nyu").camera
    cam = base.with_(focus_m=float(focus_m), name=name)
    return cam.with_(pixel_pitch_m=cam.sigma_per_coc * cam.coc_gain_m2() / float(gain_px_m))


def gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """(C, H, W) Gaussian blur with the renderer's kernel (radius ``ceil(3 sigma)``, mirror
    padding as torch's ``reflect``), computed with SciPy (faster on the CPU)."""
    if sigma <= 0:
        return image
    radius = min(int(math.ceil(TRUNCATE * sigma)), min(image.shape[-2:]) - 1)
    return np.stack([ndi.gaussian_filter(c, float(sigma), mode="mirror", radius=radius) for c in image])


def render(triplet: Triplet, camera: Camera | None, s0: float = 0.0, mode: str = "default", raw_depth: bool = False) -> np.ndarray:
    """The triplet's sharp image (3, H, W) pre-blurred by ``s0`` px, then defocused with ``camera``
    (None: no defocus), with the filtered depth (or the unfiltered one)."""
    from ..render import render_defocus

    img = gaussian_blur(triplet.sharp, s0)
    if camera is None:
        return img
    depth = triplet.raw_depth if raw_depth and triplet.raw_depth is not None else triplet.depth
    out = render_defocus(torch.from_numpy(img).float(), torch.from_numpy(depth).float(), camera, mode=mode)
    return out.double().numpy()


@contextlib.contextmanager
def torch_threads(n: int):
    """``torch.set_num_threads(n)`` inside the block, restored after (1 is fastest for these
    small renders on a shared CPU)."""
    old = torch.get_num_threads()
    torch.set_num_threads(max(int(n), 1))
    try:
        yield
    finally:
        torch.set_num_threads(old)


# ---------------------------------------------------------------------------------------------
# Surrogate search on per-depth-bin error tables
# ---------------------------------------------------------------------------------------------


@dataclass
class Table:
    """Squared error of one triplet, per inverse-depth bin and sigma level (summed over
    channels and pixels), ``err`` (bins, levels); ``count`` pixels per bin; ``inv`` the mean
    inverse depth of each bin (1/m)."""

    err: np.ndarray
    count: np.ndarray
    inv: np.ndarray


def error_table(triplet: Triplet, levels: np.ndarray = SIGMA_LEVELS, step: float = INV_DEPTH_STEP) -> Table:
    """Blur the sharp image at every sigma level and tabulate its squared error against the
    real image per inverse-depth bin (photometric model fitted once, on low-pass versions of
    both images, which the defocus hardly changes)."""
    r2 = triplet.r2
    low_sharp, low_real = (np.stack([ndi.gaussian_filter(c, 6.0) for c in im]) for im in (triplet.sharp, triplet.real))
    params = photometric_fit(low_sharp, low_real, r2, triplet.inner)
    inv = 1.0 / triplet.depth[triplet.inner].reshape(-1)
    bins = np.floor(inv / step).astype(np.int64)
    ids, bins = np.unique(bins, return_inverse=True)
    count = np.bincount(bins, minlength=len(ids)).astype(np.float64)
    mean_inv = np.bincount(bins, inv, minlength=len(ids)) / count
    real = triplet.real[(slice(None), *triplet.inner)]
    err = np.zeros((len(ids), len(levels)))
    for k, s in enumerate(levels):
        pred = apply_photometric(gaussian_blur(triplet.sharp, float(s)), params, r2)[(slice(None), *triplet.inner)]
        e = ((pred - real) ** 2).sum(axis=0).reshape(-1)
        err[:, k] = np.bincount(bins, e, minlength=len(ids))
    return Table(err, count, mean_inv)


def surrogate_scores(tables: list[Table], inv_focus: np.ndarray, gain: np.ndarray, s0: np.ndarray,
                     levels: np.ndarray = SIGMA_LEVELS) -> np.ndarray:
    """Mean PSNR (dB) over triplets for every (1/S, K, s0) of the grid, shape (len(inv_focus),
    len(gain), len(s0)). Each bin takes ``sigma = sqrt((K |1/S - inv|)^2 + s0^2)``; its error is
    interpolated linearly between sigma levels (clamped at the last level)."""
    grid = torch.stack(torch.meshgrid(
        torch.as_tensor(inv_focus, dtype=torch.float64), torch.as_tensor(gain, dtype=torch.float64),
        torch.as_tensor(s0, dtype=torch.float64), indexing="ij"), dim=-1).reshape(-1, 3)
    lv = torch.as_tensor(levels, dtype=torch.float64)
    total = torch.zeros(grid.shape[0], dtype=torch.float64)
    for t in tables:
        inv = torch.from_numpy(t.inv)
        err = torch.from_numpy(t.err)
        n = 3.0 * float(t.count.sum())
        mse = torch.zeros(grid.shape[0], dtype=torch.float64)
        for start in range(0, grid.shape[0], 4096):
            g = grid[start : start + 4096]
            sig = torch.sqrt((g[:, 1:2] * (g[:, 0:1] - inv[None]).abs()) ** 2 + g[:, 2:3] ** 2)  # cand, bins
            sig = sig.clamp(max=float(lv[-1]))
            hi = torch.searchsorted(lv, sig.contiguous()).clamp(1, len(lv) - 1)
            lo = hi - 1
            w = ((sig - lv[lo]) / (lv[hi] - lv[lo])).clamp(0, 1)
            rows = torch.arange(err.shape[0])[None].expand_as(hi)
            e = (1 - w) * err[rows, lo] + w * err[rows, hi]
            mse[start : start + 4096] = e.sum(dim=1) / n
        total += -10.0 * torch.log10(mse.clamp_min(1e-12))
    return (total / len(tables)).reshape(len(inv_focus), len(gain), len(s0)).numpy()


def _best_on_grid(scores: np.ndarray, inv_focus, gain, s0) -> tuple[float, float, float, float]:
    i, j, k = np.unravel_index(int(np.argmax(scores)), scores.shape)
    return float(inv_focus[i]), float(gain[j]), float(s0[k]), float(scores[i, j, k])


def _around(value: float, step: float, n: int, lo: float) -> np.ndarray:
    """``2 n + 1`` points ``value + k step``, shifted up so that none is below ``lo``."""
    pts = value + step * np.arange(-n, n + 1)
    return pts + max(0.0, lo - pts[0])


def surrogate_search(tables: list[Table], fit_s0: bool, grid: SearchGrid = DFD_GRID) -> dict:
    """Coarse-to-fine grid search of (1/S, K[, s0]) on the error tables."""
    inv_f, gain = _arange(*grid.inv_focus), _arange(*grid.gain)
    s0 = _arange(*grid.s0) if fit_s0 else np.zeros(1)
    coarse = surrogate_scores(tables, inv_f, gain, s0)
    f0, k0, z0, _ = _best_on_grid(coarse, inv_f, gain, s0)
    inv_f = _around(f0, grid.fine_inv_focus, 8, grid.fine_inv_focus)
    gain = _around(k0, grid.fine_gain, 8, 0.0)
    s0 = _around(z0, grid.fine_s0, 8, 0.0) if fit_s0 else np.zeros(1)
    fine = surrogate_scores(tables, inv_f, gain, s0)
    f1, k1, z1, score = _best_on_grid(fine, inv_f, gain, s0)
    return {"inv_focus": f1, "focus_m": 1.0 / f1, "gain_px_m": k1, "s0_px": z1, "surrogate_psnr": score}


# ---------------------------------------------------------------------------------------------
# Refinement with the real renderer
# ---------------------------------------------------------------------------------------------


def renderer_score(triplets: list[Triplet], inv_focus: float, gain: float, s0: float, base: Camera | None = None) -> float:
    """Mean PSNR over triplets of ``render_defocus`` (default mode) vs the real image."""
    cam = camera_from_fit(1.0 / inv_focus, max(gain, 1e-6), base)
    return float(np.mean([compare(render(t, cam, s0), t, with_ssim=False)["psnr"] for t in triplets]))


def renderer_refine(triplets: list[Triplet], start: dict, step_inv: float = 0.02, step_gain: float = 0.1,
                    max_moves: int = 12, base: Camera | None = None, log=print) -> dict:
    """Local search with the real renderer: a 3x3 grid of (1/S, K) around ``start`` (s0 kept),
    re-centred while the best is on the grid's edge (at most ``max_moves`` times)."""
    f, k, z = start["inv_focus"], start["gain_px_m"], start["s0_px"]
    cache: dict[tuple[float, float], float] = {}
    for _ in range(max_moves + 1):
        for df in (-step_inv, 0.0, step_inv):
            for dk in (-step_gain, 0.0, step_gain):
                key = (round(f + df, 6), round(max(k + dk, 0.0), 6))
                if key not in cache and key[0] > 0:
                    cache[key] = renderer_score(triplets, key[0], key[1], z, base)
                    log(f"    renderer: S = {1 / key[0]:.3f} m, K = {key[1]:.3f} px m, s0 = {z:.2f} px: {cache[key]:.3f} dB")
        (bf, bk), _ = max(cache.items(), key=lambda kv: kv[1])
        if (bf, bk) == (round(f, 6), round(k, 6)):
            break
        f, k = bf, bk
    (bf, bk), score = max(cache.items(), key=lambda kv: kv[1])
    evaluations = [{"focus_m": 1.0 / f_, "gain_px_m": k_, "psnr": v} for (f_, k_), v in cache.items()]
    return {"inv_focus": bf, "focus_m": 1.0 / bf, "gain_px_m": bk, "s0_px": z, "renderer_psnr": score,
            "renderer_evaluations": evaluations}


def fit_camera(triplets: list[Triplet], fit_s0: bool, refine: bool = True, tables: list[Table] | None = None,
               refine_on: list[Triplet] | None = None, grid: SearchGrid = DFD_GRID, base: Camera | None = None,
               log=print) -> dict:
    """Fit (S, K[, s0]) to triplets: surrogate search on their error tables (computed if not
    given), then (optionally) the renderer refinement on ``refine_on`` (default: all triplets).

    Returns a dict: ``focus_m``, ``inv_focus``, ``gain_px_m``, ``s0_px``, ``surrogate`` (its own
    optimum) and, when refined, ``renderer_psnr``, ``renderer_evaluations``, ``renderer_scenes``.
    """
    if tables is None:
        tables = [error_table(t) for t in triplets]
    coarse = surrogate_search(tables, fit_s0, grid)
    log(f"  surrogate: S = {coarse['focus_m']:.3f} m, K = {coarse['gain_px_m']:.3f} px m, "
        f"s0 = {coarse['s0_px']:.2f} px, {coarse['surrogate_psnr']:.3f} dB")
    result = {"surrogate": coarse}
    if refine:
        result.update(renderer_refine(refine_on or triplets, coarse, grid.refine_inv_focus, grid.refine_gain,
                                      base=base, log=log))
        result["renderer_scenes"] = len(refine_on or triplets)
    else:
        result.update({k: coarse[k] for k in ("inv_focus", "focus_m", "gain_px_m", "s0_px")})
    return result


def per_bin_blur(tables: list[Table], edges_m: list[float], levels: np.ndarray = SIGMA_LEVELS) -> list[dict]:
    """Best single sigma (pooled squared error over triplets, parabolic refinement) for pixels in
    each depth interval ``[edges_m[i], edges_m[i+1])``, plus the pixel count and mean depth."""
    out = []
    for lo, hi in zip(edges_m[:-1], edges_m[1:]):
        err = np.zeros(len(levels))
        n, inv_sum = 0.0, 0.0
        for t in tables:
            sel = (t.inv > 1.0 / hi) & (t.inv <= 1.0 / lo)
            err += t.err[sel].sum(axis=0)
            n += t.count[sel].sum()
            inv_sum += (t.inv[sel] * t.count[sel]).sum()
        if n == 0:
            continue
        out.append({"depth_m": [lo, hi], "pixels": int(n), "mean_inv_depth": inv_sum / n,
                    "best_sigma_px": _parabola_min(levels, err), "rmse_unblurred": math.sqrt(err[0] / (3 * n)),
                    "rmse_best": math.sqrt(float(err.min()) / (3 * n))})
    return out


def _parabola_min(levels: np.ndarray, err: np.ndarray) -> float:
    """The level of least error, refined by a parabola through it and its neighbours."""
    k = int(np.argmin(err))
    best = float(levels[k])
    if 0 < k < len(levels) - 1:
        x0, x1, x2 = levels[k - 1 : k + 2]
        y0, y1, y2 = err[k - 1 : k + 2]
        denom = (x0 - x1) * (x0 - x2) * (x1 - x2)
        a = (x2 * (y1 - y0) + x1 * (y0 - y2) + x0 * (y2 - y1)) / denom
        b = (x2**2 * (y0 - y1) + x1**2 * (y2 - y0) + x0**2 * (y1 - y2)) / denom
        if a > 0:
            best = float(np.clip(-b / (2 * a), x0, x2))
    return best

"""Fit the renderer's thin-lens camera to the real DFD indoor f/2.8 photos (issue 6, sim-to-real).

    python scripts/fit_dfd_camera.py [--root ../shared/data/dfd_indoor] [--out docs/results/dfd_camera_fit]

Question: with which camera does ``render_defocus(f/8 photo, depth, camera)`` (default mode)
look most like the real f/2.8 photo of the same scene? The camera is D3-Net's lens (f = 15 mm,
f/2.8, sigma = 0.3 CoC, thin lens) with two free numbers, the focus distance S (metres) and the
blur gain K (pixel-metres, ``sigma_px(x) = K |1/S - 1/x|`` on the 645x432 frames; K sets the
pixel pitch), plus, as a separate variant, a constant extra Gaussian blur ``s0`` (pixels)
applied to the f/8 photo before rendering (lens softness wide open, residual misregistration,
JPEG): ``sigma_total = sqrt((K |1/S - 1/x|)^2 + s0^2)``. Fitted on the 70 training scenes of
:class:`twohded.data.DFDIndoor` only; the 11 validation scenes are reported, never fitted.

Per scene, before anything is compared:

* **registration**: the f/8 photo is not aligned with the f/2.8 one (shifts of up to ~7 px,
  slightly varying across the frame). An affine warp (phase correlation, then Gauss-Newton
  refinement on lightly smoothed images) maps it into the f/2.8 frame (cubic spline
  resampling). The depth map stays in the f/2.8 frame (``--depth-frame``).
* **depth noise**: the depth map is median filtered (5x5) against the sensor's isolated
  wrong pixels at object edges.
* **photometry**: exposure and vignetting differ between the two apertures, so every render
  is compared after a least-squares fit, per image and colour channel, of
  ``real ~ (a + v r^2) * render + b`` (r = distance from the centre, 1 at the corners).
* **border**: ``--border`` pixels (24) on every side are ignored (warp edges, reflect padding).

Search (coarse to fine): (1) a fast surrogate: the aligned f/8 photo is blurred with one
Gaussian per sigma level (0-16 px), and for every inverse-depth bin of every scene the
squared error against the real f/2.8 photo is tabulated; a camera's score is then a table
look-up (each bin takes the sigma of its inverse depth; no occlusion), so hundreds of
thousands of (S, K, s0) candidates are scored in seconds; (2) the real renderer
(``render_defocus``, default mode, with occlusions) on a local 3x3 grid around the surrogate's
best (S, K), re-centred until the best is inside, on 35 evenly spaced training scenes
(``--refine-scenes``). Objective: mean PSNR (dB) over scenes of rendered vs real f/2.8, inside the
border. Then every camera is evaluated at full resolution on the training and validation
scenes: the fitted one (with and without s0), ``d3net_nyu`` (in both render modes) and the
identity (the aligned f/8 photo as it is).

Writes ``<out>.md`` and ``<out>.json`` and prints the table.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage as ndi

import twohded
from twohded.optics import Camera, get_preset
from twohded.registration import register_affine, warp

REPO = Path(__file__).resolve().parents[1]
DEFAULT_ROOT = REPO.parent / "shared" / "data" / "dfd_indoor"

#: the lens whose focus and pixel pitch are fitted: D3-Net's (f = 15 mm, f/2.8, sigma = 0.3 CoC)
BASE_CAMERA = get_preset("d3net_nyu").camera

#: sigma levels (full-resolution pixels) of the surrogate's blur stack
#: (the measured blur stays below 4 px; a candidate's larger sigmas are clamped to the last level)
SIGMA_LEVELS = np.concatenate([np.arange(0, 3.0, 0.1), np.arange(3.0, 6.0, 0.25), np.arange(6.0, 10.01, 0.5)])
#: inverse-depth bins (1/m) of the surrogate's error tables
INV_DEPTH_STEP = 0.02
#: truncation of the Gaussians, in sigmas (as the renderer's default mode)
TRUNCATE = 3.0


# ---------------------------------------------------------------------------------------------
# Scenes
# ---------------------------------------------------------------------------------------------


@dataclass
class Scene:
    """One scene ready for comparison.

    ``sharp``: (3, H, W) float64, the f/8 photo warped into the f/2.8 frame (or any sharp
    image); ``real``: (3, H, W) float64, the f/2.8 photo (or any blurred target); ``depth``:
    (H, W) float64 metres, in the real image's frame; ``border``: pixels ignored on each side.
    """

    name: str
    sharp: np.ndarray
    real: np.ndarray
    depth: np.ndarray
    border: int = 24
    shift: tuple[float, float] = (0.0, 0.0)  # f/8 -> f/2.8 shift at the centre (rows, cols), px
    raw_depth: np.ndarray | None = None  # the depth before filtering (None: same as depth)

    @property
    def inner(self) -> tuple[slice, slice]:
        b = self.border
        return slice(b, self.real.shape[1] - b), slice(b, self.real.shape[2] - b)

    @property
    def r2(self) -> np.ndarray:
        """Squared distance from the centre, 1 at the corners, (H, W)."""
        h, w = self.real.shape[1:]
        yy, xx = np.mgrid[0:h, 0:w]
        return ((yy - (h - 1) / 2) ** 2 + (xx - (w - 1) / 2) ** 2) / (((h - 1) / 2) ** 2 + ((w - 1) / 2) ** 2)


def load_scene(wide_path, narrow_path, depth_path, border: int = 24, depth_frame: str = "wide", median: int = 5) -> Scene:
    """Read one DFD scene, register its f/8 photo onto the f/2.8 one, filter its depth."""
    from twohded.io import read_depth, read_image

    real = read_image(wide_path).double().numpy()
    narrow = read_image(narrow_path).double().numpy()
    raw_depth = depth = read_depth(depth_path).double().numpy()
    affine = register_affine(narrow.mean(0), real.mean(0))
    sharp = warp(narrow, affine)
    if median > 1:
        depth = ndi.median_filter(depth, median)
    if depth_frame == "narrow":
        depth = warp(depth[None], affine, order=0)[0]
        raw_depth = warp(raw_depth[None], affine, order=0)[0]
    h, w = real.shape[1:]
    centre = np.array([(h - 1) / 2, (w - 1) / 2])
    shift = affine.shift_at(tuple(centre))
    return Scene(Path(wide_path).stem, sharp, real, depth, border, shift, raw_depth)


def load_split(root, split: str, border: int, depth_frame: str, limit: int | None = None) -> list[Scene]:
    from twohded.data import DFDIndoor

    ds = DFDIndoor(root, split)
    idx = range(len(ds.names)) if limit is None else np.linspace(0, len(ds.names) - 1, limit).round().astype(int)
    return [load_scene(ds.wide_paths[i], ds.narrow_paths[i], ds.depth_paths[i], border, depth_frame) for i in idx]


# ---------------------------------------------------------------------------------------------
# Photometry and metrics
# ---------------------------------------------------------------------------------------------


def photometric_fit(pred: np.ndarray, real: np.ndarray, r2: np.ndarray, inner) -> np.ndarray:
    """Least-squares ``(a, v, b)`` per channel, (3, 3), for ``real ~ (a + v r^2) pred + b``."""
    params = np.zeros((pred.shape[0], 3))
    rr = r2[inner].reshape(-1)
    for c in range(pred.shape[0]):
        p = pred[c][inner].reshape(-1)
        design = np.stack([p, p * rr, np.ones_like(p)], axis=1)
        params[c] = np.linalg.lstsq(design, real[c][inner].reshape(-1), rcond=None)[0]
    return params


def apply_photometric(pred: np.ndarray, params: np.ndarray, r2: np.ndarray) -> np.ndarray:
    return (params[:, 0, None, None] + params[:, 1, None, None] * r2) * pred + params[:, 2, None, None]


def ssim_separable(a: np.ndarray, b: np.ndarray, data_range: float = 1.0) -> float:
    """:func:`twohded.metrics.ssim` (11x11 Gaussian window, sigma 1.5, "valid" region, mean
    over channels) computed with two 1-D passes: the same number, much faster on the CPU."""
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


def compare(pred: np.ndarray, scene: Scene, with_ssim: bool = True) -> dict[str, float]:
    """PSNR (and SSIM) of ``pred`` vs the real image inside the border, after the photometric fit."""
    r2 = scene.r2
    fitted = apply_photometric(pred, photometric_fit(pred, scene.real, r2, scene.inner), r2)
    a = np.clip(fitted[(slice(None), *scene.inner)], 0, 1)
    b = scene.real[(slice(None), *scene.inner)]
    mse = float(((a - b) ** 2).mean())
    out = {"psnr": 10 * math.log10(1.0 / max(mse, 1e-12))}
    if with_ssim:
        out["ssim"] = ssim_separable(a, b)
    return out


# ---------------------------------------------------------------------------------------------
# Cameras and rendering
# ---------------------------------------------------------------------------------------------


def camera_from_fit(focus_m: float, gain_px_m: float, name: str = "dfd_indoor") -> Camera:
    """D3-Net's lens focused at ``focus_m`` with the pixel pitch that gives ``sigma_px(x) =
    gain_px_m * |1/S - 1/x|``."""
    cam = BASE_CAMERA.with_(focus_m=float(focus_m), name=name)
    return cam.with_(pixel_pitch_m=cam.sigma_per_coc * cam.coc_gain_m2() / float(gain_px_m))


def gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """(C, H, W) Gaussian blur with the renderer's kernel (radius ``ceil(3 sigma)``, mirror
    padding as torch's ``reflect``), computed with SciPy (faster on the CPU)."""
    if sigma <= 0:
        return image
    radius = min(int(math.ceil(TRUNCATE * sigma)), min(image.shape[-2:]) - 1)
    return np.stack([ndi.gaussian_filter(c, float(sigma), mode="mirror", radius=radius) for c in image])


def render(scene: Scene, camera: Camera | None, s0: float = 0.0, mode: str = "default", raw_depth: bool = False) -> np.ndarray:
    """The scene's sharp image pre-blurred by ``s0`` px, then defocused with ``camera``
    (None: no defocus), with the filtered depth (or the unfiltered one)."""
    img = gaussian_blur(scene.sharp, s0)
    if camera is None:
        return img
    depth = scene.raw_depth if raw_depth and scene.raw_depth is not None else scene.depth
    out = twohded.render_defocus(torch.from_numpy(img).float(), torch.from_numpy(depth).float(), camera, mode=mode)
    return out.double().numpy()


# ---------------------------------------------------------------------------------------------
# Surrogate search on per-depth-bin error tables
# ---------------------------------------------------------------------------------------------


@dataclass
class Table:
    """Squared error of one scene, per inverse-depth bin and sigma level (summed over
    channels and pixels), ``err`` (bins, levels); ``count`` pixels per bin; ``inv`` the mean
    inverse depth of each bin (1/m)."""

    err: np.ndarray
    count: np.ndarray
    inv: np.ndarray


def error_table(scene: Scene, levels: np.ndarray = SIGMA_LEVELS, step: float = INV_DEPTH_STEP) -> Table:
    """Blur the sharp image at every sigma level and tabulate its squared error against the
    real image per inverse-depth bin (photometric model fitted once, on low-pass versions of
    both images, which the defocus hardly changes)."""
    r2 = scene.r2
    low_sharp, low_real = (np.stack([ndi.gaussian_filter(c, 6.0) for c in im]) for im in (scene.sharp, scene.real))
    params = photometric_fit(low_sharp, low_real, r2, scene.inner)
    inv = 1.0 / scene.depth[scene.inner].reshape(-1)
    bins = np.floor(inv / step).astype(np.int64)
    ids, bins = np.unique(bins, return_inverse=True)
    count = np.bincount(bins, minlength=len(ids)).astype(np.float64)
    mean_inv = np.bincount(bins, inv, minlength=len(ids)) / count
    real = scene.real[(slice(None), *scene.inner)]
    err = np.zeros((len(ids), len(levels)))
    for k, s in enumerate(levels):
        pred = apply_photometric(gaussian_blur(scene.sharp, float(s)), params, r2)[(slice(None), *scene.inner)]
        e = ((pred - real) ** 2).sum(axis=0).reshape(-1)
        err[:, k] = np.bincount(bins, e, minlength=len(ids))
    return Table(err, count, mean_inv)


def surrogate_scores(tables: list[Table], inv_focus: np.ndarray, gain: np.ndarray, s0: np.ndarray,
                     levels: np.ndarray = SIGMA_LEVELS) -> np.ndarray:
    """Mean PSNR (dB) over scenes for every (1/S, K, s0) of the grid, shape (len(inv_focus),
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


def best_on_grid(scores: np.ndarray, inv_focus, gain, s0) -> tuple[float, float, float, float]:
    i, j, k = np.unravel_index(int(np.argmax(scores)), scores.shape)
    return float(inv_focus[i]), float(gain[j]), float(s0[k]), float(scores[i, j, k])


def around(value: float, step: float, n: int, lo: float) -> np.ndarray:
    """``2 n + 1`` points ``value + k step``, shifted up so that none is below ``lo``."""
    pts = value + step * np.arange(-n, n + 1)
    return pts + max(0.0, lo - pts[0])


def surrogate_search(tables: list[Table], fit_s0: bool) -> dict:
    """Coarse-to-fine grid search of (1/S, K[, s0]) on the error tables."""
    inv_f = np.arange(0.05, 1.50001, 0.05)
    gain = np.arange(0.0, 12.0001, 0.25)
    s0 = np.arange(0.0, 1.50001, 0.1) if fit_s0 else np.zeros(1)
    coarse = surrogate_scores(tables, inv_f, gain, s0)
    f0, k0, z0, _ = best_on_grid(coarse, inv_f, gain, s0)
    inv_f = around(f0, 0.01, 8, 0.01)
    gain = around(k0, 0.05, 8, 0.0)
    s0 = around(z0, 0.02, 8, 0.0) if fit_s0 else np.zeros(1)
    fine = surrogate_scores(tables, inv_f, gain, s0)
    f1, k1, z1, score = best_on_grid(fine, inv_f, gain, s0)
    return {"inv_focus": f1, "focus_m": 1.0 / f1, "gain_px_m": k1, "s0_px": z1, "surrogate_psnr": score}


# ---------------------------------------------------------------------------------------------
# Refinement with the real renderer
# ---------------------------------------------------------------------------------------------


def renderer_score(scenes: list[Scene], inv_focus: float, gain: float, s0: float) -> float:
    """Mean PSNR over scenes of ``render_defocus`` (default mode) vs the real image."""
    cam = camera_from_fit(1.0 / inv_focus, max(gain, 1e-6))
    return float(np.mean([compare(render(s, cam, s0), s, with_ssim=False)["psnr"] for s in scenes]))


def renderer_refine(scenes: list[Scene], start: dict, step_inv: float = 0.02, step_gain: float = 0.1,
                    max_moves: int = 3, log=print) -> dict:
    """Local search with the real renderer: a 3x3 grid of (1/S, K) around ``start`` (s0 kept),
    re-centred while the best is on the grid's edge (at most ``max_moves`` times)."""
    f, k, z = start["inv_focus"], start["gain_px_m"], start["s0_px"]
    cache: dict[tuple[float, float], float] = {}
    for _ in range(max_moves + 1):
        for df in (-step_inv, 0.0, step_inv):
            for dk in (-step_gain, 0.0, step_gain):
                key = (round(f + df, 6), round(max(k + dk, 0.0), 6))
                if key not in cache and key[0] > 0:
                    cache[key] = renderer_score(scenes, key[0], key[1], z)
                    log(f"    renderer: S = {1 / key[0]:.3f} m, K = {key[1]:.3f} px m, s0 = {z:.2f} px: {cache[key]:.3f} dB")
        (bf, bk), _ = max(cache.items(), key=lambda kv: kv[1])
        if (bf, bk) == (round(f, 6), round(k, 6)):
            break
        f, k = bf, bk
    (bf, bk), score = max(cache.items(), key=lambda kv: kv[1])
    evaluations = [{"focus_m": 1.0 / f_, "gain_px_m": k_, "psnr": v} for (f_, k_), v in cache.items()]
    return {"inv_focus": bf, "focus_m": 1.0 / bf, "gain_px_m": bk, "s0_px": z, "renderer_psnr": score,
            "renderer_evaluations": evaluations}


def fit_camera(scenes: list[Scene], fit_s0: bool, refine: bool = True, tables: list[Table] | None = None,
               refine_on: list[Scene] | None = None, log=print) -> dict:
    """Fit (S, K[, s0]) to scenes: surrogate search on their error tables (computed if not
    given), then (optionally) the renderer refinement on ``refine_on`` (default: all scenes)."""
    if tables is None:
        tables = [error_table(s) for s in scenes]
    coarse = surrogate_search(tables, fit_s0)
    log(f"  surrogate: S = {coarse['focus_m']:.3f} m, K = {coarse['gain_px_m']:.3f} px m, "
        f"s0 = {coarse['s0_px']:.2f} px, {coarse['surrogate_psnr']:.3f} dB")
    result = {"surrogate": coarse}
    if refine:
        result.update(renderer_refine(refine_on or scenes, coarse, log=log))
        result["renderer_scenes"] = len(refine_on or scenes)
    else:
        result.update({k: coarse[k] for k in ("inv_focus", "focus_m", "gain_px_m", "s0_px")})
    return result


# ---------------------------------------------------------------------------------------------
# Per-depth-bin check
# ---------------------------------------------------------------------------------------------


def per_bin_blur(tables: list[Table], edges_m: list[float], levels: np.ndarray = SIGMA_LEVELS) -> list[dict]:
    """Best single sigma (pooled squared error over scenes, parabolic refinement) for pixels in
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
        rmse0 = math.sqrt(err[0] / (3 * n))
        rmse = math.sqrt(float(err.min()) / (3 * n))
        out.append({"depth_m": [lo, hi], "pixels": int(n), "mean_inv_depth": inv_sum / n, "best_sigma_px": best,
                    "rmse_unblurred": rmse0, "rmse_best": rmse})
    return out


# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------


def evaluate(scenes: list[Scene], variants: dict[str, tuple[Camera | None, float, str, bool]], log=print) -> dict:
    """Mean PSNR / SSIM of every variant (camera, s0, mode, raw depth) over ``scenes``; per-scene
    values too."""
    out = {}
    for name, (cam, s0, mode, raw) in variants.items():
        t = time.time()
        per = [compare(render(s, cam, s0, mode, raw), s) for s in scenes]
        out[name] = {
            "psnr": float(np.mean([p["psnr"] for p in per])),
            "ssim": float(np.mean([p["ssim"] for p in per])),
            "per_scene": {s.name: p for s, p in zip(scenes, per)},
        }
        log(f"    {name}: {out[name]['psnr']:.3f} dB, SSIM {out[name]['ssim']:.4f} ({time.time() - t:.0f} s)")
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", default=str(DEFAULT_ROOT), help="dfd_indoor folder")
    p.add_argument("--out", default=str(REPO / "docs" / "results" / "dfd_camera_fit"), help="output path without suffix")
    p.add_argument("--border", type=int, default=24, help="pixels ignored on each side (default 24)")
    p.add_argument("--depth-frame", choices=("wide", "narrow"), default="wide",
                   help="the depth map is registered to the f/2.8 photo (wide, default) or to the f/8 one")
    p.add_argument("--limit", type=int, default=None, help="use only N evenly spaced training scenes (quick runs)")
    p.add_argument("--refine-scenes", type=int, default=35,
                   help="evenly spaced training scenes used by the renderer refinement (default 35 of 70)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1: fastest on a shared 2-core CPU)")
    args = p.parse_args(argv)
    t0 = time.time()
    load_at_start = round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None
    torch.set_num_threads(max(args.threads, 1))

    print(f"loading and registering scenes from {args.root} ...")
    train = load_split(args.root, "train", args.border, args.depth_frame, args.limit)
    val = load_split(args.root, "val", args.border, args.depth_frame)
    shifts = np.array([s.shift for s in train + val])
    print(f"  {len(train)} train, {len(val)} val scenes; f/8 -> f/2.8 shift at the centre: "
          f"|rows| <= {np.abs(shifts[:, 0]).max():.1f} px, |cols| <= {np.abs(shifts[:, 1]).max():.1f} px "
          f"({time.time() - t0:.0f} s)")

    t = time.time()
    tables = [error_table(s) for s in train]
    print(f"error tables of the training scenes: {len(SIGMA_LEVELS)} sigma levels ({time.time() - t:.0f} s)")
    n_ref = min(args.refine_scenes, len(train))
    refine_on = [train[i] for i in np.linspace(0, len(train) - 1, n_ref).round().astype(int)]
    print(f"fitting (S, K) with s0 = 0 (the camera alone: what a preset can express); renderer on {n_ref} scenes ...")
    fit0 = fit_camera(train, fit_s0=False, tables=tables, refine_on=refine_on)
    print("fitting (S, K, s0) ...")
    fit1 = fit_camera(train, fit_s0=True, tables=tables, refine_on=refine_on)

    cam0 = camera_from_fit(fit0["focus_m"], fit0["gain_px_m"])
    cam1 = camera_from_fit(fit1["focus_m"], fit1["gain_px_m"], name="dfd_indoor+s0")
    d3 = get_preset("d3net_nyu").camera
    variants = {
        "identity (f/8 as is)": (None, 0.0, "default", False),
        "d3net_nyu (default mode)": (d3, 0.0, "default", False),
        "d3net_nyu (d3net mode)": (d3, 0.0, "d3net", False),
        "fitted camera (dfd_indoor)": (cam0, 0.0, "default", False),
        "fitted camera (dfd_indoor), unfiltered depth": (cam0, 0.0, "default", True),
        "fitted camera + s0": (cam1, fit1["s0_px"], "default", False),
    }
    print("evaluating on the training scenes ...")
    ev_train = evaluate(train, variants)
    print("evaluating on the validation scenes (not used for fitting) ...")
    ev_val = evaluate(val, variants)

    # per-depth-bin check on the training scenes (surrogate tables: local blur, no occlusion)
    edges = [0.2, 0.6, 0.8, 1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 4.0, 5.0, 7.0, 10.0]
    bins = per_bin_blur(tables, edges)
    for b in bins:
        x = 1.0 / b["mean_inv_depth"]
        b["mean_depth_m"] = x
        b["fitted_sigma_px"] = float(cam0.sigma_px(x))
        b["fitted_s0_sigma_px"] = float(math.hypot(cam1.sigma_px(x), fit1["s0_px"]))
        b["d3net_nyu_sigma_px"] = float(d3.sigma_px(x))

    depths = np.concatenate([s.depth[s.inner].reshape(-1) for s in train + val])
    raw = np.concatenate([s.raw_depth.reshape(-1) for s in train + val])
    d_lo, d_hi = float(np.percentile(depths, 1)), float(np.percentile(depths, 99))
    r_lo, r_hi = float(raw.min()), float(raw.max())

    def sigma_range(lo, hi):
        ends = cam0.sigma_px(np.array([lo, hi]))
        return [0.0 if lo <= cam0.focus_m <= hi else float(ends.min()), float(ends.max())]

    at = [0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0]
    sig = cam0.sigma_px(np.array(at))
    elapsed = time.time() - t0
    result = {
        "date": str(date.today()),
        "command": "python scripts/fit_dfd_camera.py" + (" " + " ".join(argv if argv is not None else sys.argv[1:])).rstrip(),
        "machine": machine(),
        "runtime_s": round(elapsed, 1),
        "load_average_at_start": load_at_start,
        "scenes": {"train": len(train), "val": len(val)},
        "settings": {"border_px": args.border, "depth_frame": args.depth_frame, "depth_median": 5,
                     "render_mode": "default", "base_lens": BASE_CAMERA.describe(),
                     "photometric_model": "per image and channel: real ~ (a + v r^2) * render + b, least squares"},
        "fit": {"camera_only": fit0, "with_s0": fit1},
        "preset": {
            "name": "dfd_indoor", "focus_m": cam0.focus_m, "pixel_pitch_m": cam0.pixel_pitch_m,
            "blur_gain_px_m": cam0.blur_gain_px_m(), "describe": cam0.describe(),
            "sigma_px": {f"{x:g}": float(v) for x, v in zip(at, sig)},
            "depth_p1_p99_m": [d_lo, d_hi], "sigma_range_p1_p99_px": sigma_range(d_lo, d_hi),
            "depth_min_max_m": [r_lo, r_hi], "sigma_range_min_max_px": sigma_range(r_lo, r_hi),
        },
        "train": {k: {m: v[m] for m in ("psnr", "ssim")} for k, v in ev_train.items()},
        "val": {k: {m: v[m] for m in ("psnr", "ssim")} for k, v in ev_val.items()},
        "per_scene": {"train": {k: v["per_scene"] for k, v in ev_train.items()},
                      "val": {k: v["per_scene"] for k, v in ev_val.items()}},
        "per_depth_bin": bins,
        "registration_shift_px": {s.name: list(s.shift) for s in train + val},
    }
    write_outputs(result, Path(args.out))


def machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{model}, {os.cpu_count()} CPUs, torch {torch.__version__} with {torch.get_num_threads()} thread(s), "
            f"python {platform.python_version()}")


def _rounded(x, digits: int = 5):
    if isinstance(x, float):
        return round(x, digits)
    if isinstance(x, dict):
        return {k: _rounded(v, digits) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_rounded(v, digits) for v in x]
    return x


def markdown(r: dict) -> str:
    f0, f1, pr = r["fit"]["camera_only"], r["fit"]["with_s0"], r["preset"]
    lines = [
        "# DFD indoor: the renderer setting that matches the real f/2.8 blur",
        "",
        f"Command: `{r['command']}`  ",
        f"Date: {r['date']}; machine: {r['machine']}; runtime {r['runtime_s']:.0f} s "
        f"(load average {r['load_average_at_start']} at the start"
        + (": the CPU was shared" if (r["load_average_at_start"] or 0) > (os.cpu_count() or 1) else "") + ").  ",
        f"Scenes: {r['scenes']['train']} train (fitted), {r['scenes']['val']} validation (reported only). "
        f"Render mode `default`; border {r['settings']['border_px']} px ignored; f/8 photo registered to the "
        f"f/2.8 photo (affine); depth median-filtered 5x5, in the {r['settings']['depth_frame']} frame; "
        "per image and channel photometric fit `real ~ (a + v r^2) * render + b`.",
        "",
        "## Fitted values",
        "",
        "| fit | focus S (m) | K (px m) | s0 (px) | pixel pitch (um) | mean PSNR, renderer refinement scenes (dB) |",
        "|---|---|---|---|---|---|",
        f"| camera only (preset `dfd_indoor`) | {f0['focus_m']:.3f} | {f0['gain_px_m']:.3f} | 0 | "
        f"{pr['pixel_pitch_m'] * 1e6:.3f} | {f0['renderer_psnr']:.3f} |",
        f"| camera + s0 | {f1['focus_m']:.3f} | {f1['gain_px_m']:.3f} | {f1['s0_px']:.2f} | "
        f"{camera_from_fit(f1['focus_m'], f1['gain_px_m']).pixel_pitch_m * 1e6:.3f} | {f1['renderer_psnr']:.3f} |",
        "",
        f"`sigma_px(x) = K |1/S - 1/x|` on the 645x432 frames (lens: {r['settings']['base_lens']}; the pitch is "
        "the one that gives K with that lens). Surrogate optimum before the renderer refinement: "
        f"S = {f0['surrogate']['focus_m']:.3f} m, K = {f0['surrogate']['gain_px_m']:.3f} (camera only); "
        f"S = {f1['surrogate']['focus_m']:.3f} m, K = {f1['surrogate']['gain_px_m']:.3f}, s0 = {f1['surrogate']['s0_px']:.2f} (with s0).",
        "",
        f"Sigma of the preset over the dataset's depths (train + val, filtered depth, 1st-99th percentile "
        f"{pr['depth_p1_p99_m'][0]:.2f}-{pr['depth_p1_p99_m'][1]:.2f} m): {pr['sigma_range_p1_p99_px'][0]:.2f} to "
        f"{pr['sigma_range_p1_p99_px'][1]:.2f} px; over the raw depth's full range ({pr['depth_min_max_m'][0]:.2f}-"
        f"{pr['depth_min_max_m'][1]:.2f} m): {pr['sigma_range_min_max_px'][0]:.2f} to {pr['sigma_range_min_max_px'][1]:.2f} px. "
        "At " + ", ".join(f"{k} m: {v:.2f}" for k, v in pr["sigma_px"].items()) + " px.",
        "",
        "Renderer refinement: "
        + "; ".join(
            f"{name}: {len(f['renderer_evaluations'])} (S, K) evaluated (S {min(e['focus_m'] for e in f['renderer_evaluations']):.3f}-"
            f"{max(e['focus_m'] for e in f['renderer_evaluations']):.3f} m, K {min(e['gain_px_m'] for e in f['renderer_evaluations']):.2f}-"
            f"{max(e['gain_px_m'] for e in f['renderer_evaluations']):.2f} px m), all within "
            f"{f['renderer_psnr'] - min(e['psnr'] for e in f['renderer_evaluations']):.3f} dB of the best"
            for name, f in (("camera only", f0), ("camera + s0", f1))
        )
        + f" (on {f0.get('renderer_scenes', r['scenes']['train'])} training scenes).",
        "",
        "The f/8 photo is itself defocused: if its blur is 2.8/8 of the f/2.8 photo's (same focus, "
        "Gaussians adding in quadrature), the f/2.8 photo's own blur gain is K / sqrt(1 - (2.8/8)^2) = "
        f"{f0['gain_px_m'] / math.sqrt(1 - (2.8 / 8) ** 2):.3f} px m (camera only), of which the renderer adds K.",
        "",
        "## Rendered f/8 vs real f/2.8 (mean over scenes)",
        "",
        "| renderer setting | train PSNR (dB) | train SSIM | val PSNR (dB) | val SSIM |",
        "|---|---|---|---|---|",
    ]
    for k in r["train"]:
        lines.append(f"| {k} | {r['train'][k]['psnr']:.3f} | {r['train'][k]['ssim']:.4f} | "
                     f"{r['val'][k]['psnr']:.3f} | {r['val'][k]['ssim']:.4f} |")
    lines += [
        "",
        "## Per-depth-bin check (training scenes)",
        "",
        "Best single Gaussian sigma for the pixels of each depth interval (error pooled over scenes; "
        "blur of the whole registered f/8 photo, no occlusion), against the sigma each camera predicts "
        "at the interval's mean inverse depth.",
        "",
        "| depth (m) | pixels | measured sigma (px) | fitted (px) | fitted + s0 (px) | d3net_nyu (px) | RMSE unblurred | RMSE at measured |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for b in r["per_depth_bin"]:
        lines.append(
            f"| {b['depth_m'][0]:g}-{b['depth_m'][1]:g} | {b['pixels']} | {b['best_sigma_px']:.2f} | "
            f"{b['fitted_sigma_px']:.2f} | {b['fitted_s0_sigma_px']:.2f} | {b['d3net_nyu_sigma_px']:.2f} | "
            f"{b['rmse_unblurred']:.4f} | {b['rmse_best']:.4f} |"
        )
    return "\n".join(lines) + "\n"


def write_outputs(result: dict, out: Path) -> None:
    from twohded.io import atomic_write

    out.parent.mkdir(parents=True, exist_ok=True)
    md = markdown(result)
    with atomic_write(out.with_suffix(".md")) as tmp:
        tmp.write_text(md)
    with atomic_write(out.with_suffix(".json")) as tmp:
        tmp.write_text(json.dumps(_rounded(result), indent=1))
    print()
    print(md)
    print(f"wrote {out.with_suffix('.md')} and {out.with_suffix('.json')}")


if __name__ == "__main__":
    main()

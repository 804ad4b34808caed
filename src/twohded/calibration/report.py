"""Calibrating a camera on triplets end to end: fit, evaluation, report, residual figure, camera file.

:func:`calibrate` fits the focus distance and blur gain of a base lens (:mod:`.search`) to the
fitted triplets and measures, on the fitted and on the held-out triplets, how well the fitted
camera's render of the sharp photo matches the real defocused photo (PSNR and SSIM after the
photometric fit, :mod:`.photometry`), against two references: the identity (the sharp photo
as it is) and the base preset. :func:`write_calibration` writes ``camera.yaml`` (the fitted
camera), ``calibration.md`` / ``calibration.json`` (the report) and ``residuals.png``.
"""

from __future__ import annotations

import json
import os
import time
from datetime import date
from pathlib import Path
from typing import Sequence

import numpy as np

from ..camera_file import write_camera_file
from ..errors import InputError
from ..io import atomic_write
from ..optics import Preset
from .photometry import compare, fitted_render
from .search import SearchGrid, camera_from_fit, error_table, fit_camera, per_bin_blur, render
from .triplets import Triplet

__all__ = ["rounded", "calibrate", "evaluate_variants", "calibration_markdown", "residual_figure", "write_calibration"]


def evaluate_variants(triplets: Sequence[Triplet], variants: dict, log=print) -> dict:
    """Mean PSNR / SSIM over ``triplets`` of every variant ``name: (camera or preset or None,
    s0 px, render mode or None, raw depth?)``, and the per-triplet values."""
    out = {}
    for name, (cam, s0, mode, raw) in variants.items():
        t = time.time()
        per = [compare(render(tr, cam, s0, mode, raw), tr) for tr in triplets]
        out[name] = {"psnr": float(np.mean([p["psnr"] for p in per])), "ssim": float(np.mean([p["ssim"] for p in per])),
                     "per_scene": {tr.name: p for tr, p in zip(triplets, per)}}
        log(f"    {name}: {out[name]['psnr']:.3f} dB, SSIM {out[name]['ssim']:.4f} ({time.time() - t:.0f} s)")
    return out


def _fitted_preset(base: Preset, fit: dict, triplets: Sequence[Triplet], name: str, source: str) -> Preset:
    """The fitted camera as a preset (width-relative if the base is; else absolute pitch)."""
    base_cam = base.camera_for(_depth_tensor(triplets[0]))
    cam = camera_from_fit(fit["focus_m"], fit["gain_px_m"], base_cam, name=name)
    width = triplets[0].real.shape[2]
    sensor = cam.pixel_pitch_m * width if base.sensor_width_m is not None else None
    desc = (f"calibrated on {len(triplets)} triplets: focus {cam.focus_m:.4g} m, blur gain {cam.blur_gain_px_m():.4g} px m "
            f"(sigma_px = K |1/S - 1/x|), base lens {base.name}")
    return Preset(name, desc, "default", camera=cam, sensor_width_m=sensor, source=source,
                  notes=f"effective pixel pitch {cam.pixel_pitch_m * 1e6:.4g} um on {width} px wide images "
                        "(K absorbs aperture, PSF width and pixel size)")


def _depth_tensor(t: Triplet):
    import torch

    return torch.from_numpy(t.depth)


def calibrate(fitted: Sequence[Triplet], held_out: Sequence[Triplet], base: Preset, name: str = "calibrated",
              grid: SearchGrid | None = None, refine: bool = True, refine_scenes: int | None = None,
              source: str = "twohded camera calibrate", log=print) -> tuple[Preset, dict]:
    """Fit ``base``'s focus distance and blur gain to ``fitted`` triplets; evaluate on both sets.

    Args:
        base: a fixed-camera preset: the lens (f, N, sigma_per_coc, CoC model) kept; its
            focus and (effective) pixel pitch are fitted.
        grid: the search grid (default :meth:`SearchGrid.for_triplets` of ``fitted``).
        refine_scenes: evenly spaced fitted triplets used by the renderer refinement (default all).

    Returns:
        ``(preset, result)``: the fitted camera and a JSON-ready dict (fit, PSNR/SSIM of the
        identity, the base preset and the fitted camera on the fitted and held-out triplets,
        per-depth-bin blur).
    """
    if base.camera is None:
        raise InputError(f"preset {base.name!r} draws a random camera per image: calibrate a fixed camera")
    if not fitted:
        raise InputError("calibration needs at least one triplet to fit")
    t0 = time.time()
    grid = grid or SearchGrid.for_triplets(fitted)
    tables = [error_table(t) for t in fitted]
    log(f"error tables of {len(fitted)} triplets ({time.time() - t0:.0f} s)")
    n_ref = min(refine_scenes or len(fitted), len(fitted))
    refine_on = [fitted[i] for i in np.linspace(0, len(fitted) - 1, n_ref).round().astype(int)]
    fit = fit_camera(list(fitted), fit_s0=False, refine=refine, tables=tables, refine_on=refine_on, grid=grid,
                     base=base.camera_for(_depth_tensor(fitted[0])), log=log)
    preset = _fitted_preset(base, fit, fitted, name, source)
    variants = {"identity (sharp photo as is)": (None, 0.0, "default", False),
                f"base preset {base.name}": (base, 0.0, None, False),
                f"fitted camera {name}": (preset, 0.0, None, False)}
    log("evaluating on the fitted triplets ...")
    ev = {"fitted": evaluate_variants(fitted, variants, log)}
    if held_out:
        log("evaluating on the held-out triplets ...")
        ev["held_out"] = evaluate_variants(held_out, variants, log)
    depths = np.concatenate([t.depth[t.inner].reshape(-1) for t in fitted])
    lo, hi = float(np.percentile(depths, 1)), float(np.percentile(depths, 99))
    bins = per_bin_blur(tables, list(np.geomspace(lo, hi, 13)))
    cam, base_cam = preset.camera_for(_depth_tensor(fitted[0])), base.camera_for(_depth_tensor(fitted[0]))
    for b in bins:
        x = 1.0 / b["mean_inv_depth"]
        b.update(mean_depth_m=x, fitted_sigma_px=float(cam.sigma_px(x)), base_sigma_px=float(base_cam.sigma_px(x)))
    result = {
        "date": str(date.today()), "source": source, "name": name, "base": base.name, "base_describe": base_cam.describe(),
        "fitted_describe": cam.describe(), "focus_m": cam.focus_m, "gain_px_m": cam.blur_gain_px_m(),
        "pixel_pitch_m": cam.pixel_pitch_m, "fit": fit, "grid": grid.__dict__,
        "triplets": {"fitted": [t.name for t in fitted], "held_out": [t.name for t in held_out]},
        "registration_shift_px": {t.name: list(t.shift) for t in [*fitted, *held_out]},
        "scores": {split: {k: {m: v[m] for m in ("psnr", "ssim")} for k, v in e.items()} for split, e in ev.items()},
        "per_scene": {split: {k: v["per_scene"] for k, v in e.items()} for split, e in ev.items()},
        "per_depth_bin": bins, "depth_p1_p99_m": [lo, hi], "runtime_s": round(time.time() - t0, 1),
    }
    return preset, result


def calibration_markdown(r: dict) -> str:
    """The report of :func:`calibrate`'s result: fitted values, PSNR table, per-depth-bin blur."""
    fit = r["fit"]
    lines = [f"# Camera calibration: `{r['name']}`", "",
             f"Command: `{r['source']}`  ", f"Date: {r['date']}; runtime {r['runtime_s']:.0f} s.  ",
             f"Fitted on {len(r['triplets']['fitted'])} triplets, held out {len(r['triplets']['held_out'])}.  ",
             f"Base lens: {r['base_describe']}.  ", f"Fitted: {r['fitted_describe']}.", "",
             f"**Focus S = {r['focus_m']:.4g} m, blur gain K = {r['gain_px_m']:.4g} px m** "
             f"(sigma_px(x) = K |1/S - 1/x|; surrogate optimum S = {fit['surrogate']['focus_m']:.4g} m, "
             f"K = {fit['surrogate']['gain_px_m']:.4g} px m" + (f"; renderer refinement on {fit['renderer_scenes']} "
             f"triplets, {len(fit['renderer_evaluations'])} (S, K) evaluated" if "renderer_scenes" in fit else "") + ").", "",
             "## Rendered sharp photo vs real defocused photo (mean over triplets, after the exposure/vignetting fit)", "",
             "| renderer setting | " + " | ".join(f"{s} PSNR (dB) | {s} SSIM" for s in r["scores"]) + " |",
             "|---|" + "---|---|" * len(r["scores"])]
    for k in r["scores"]["fitted"]:
        lines.append(f"| {k} | " + " | ".join(f"{r['scores'][s][k]['psnr']:.3f} | {r['scores'][s][k]['ssim']:.4f}"
                                             for s in r["scores"]) + " |")
    lines += ["", "## Blur per depth interval (fitted triplets)", "",
              "Best single Gaussian sigma for the pixels of each depth interval (surrogate tables: no occlusion), "
              "against the sigma each camera predicts at the interval's mean inverse depth.", "",
              "| depth (m) | pixels | measured sigma (px) | fitted (px) | base (px) |", "|---|---|---|---|---|"]
    for b in r["per_depth_bin"]:
        lines.append(f"| {b['depth_m'][0]:.3g}-{b['depth_m'][1]:.3g} | {b['pixels']} | {b['best_sigma_px']:.2f} | "
                     f"{b['fitted_sigma_px']:.2f} | {b['base_sigma_px']:.2f} |")
    return "\n".join(lines) + "\n\n![residuals](residuals.png)\n"


def residual_figure(r: dict, triplet: Triplet, preset: Preset, base: Preset, path: str | os.PathLike) -> Path:
    """PNG: measured vs predicted blur per depth interval, and the residual |real - render| of one
    triplet for the identity and the fitted camera (mean over channels, same colour scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    bins = r["per_depth_bin"]
    x = np.array([b["mean_depth_m"] for b in bins])
    ax = axes[0]
    ax.scatter(x, [b["best_sigma_px"] for b in bins], s=[10 + 90 * b["pixels"] / max(c["pixels"] for c in bins) for b in bins],
               color="k", label="measured (best sigma per depth interval)")
    xs = np.geomspace(x.min(), x.max(), 200)
    for p, style in ((preset, dict(color="tab:blue")), (base, dict(color="tab:gray", ls="--"))):
        ax.plot(xs, p.camera_for(_depth_tensor(triplet)).sigma_px(xs), label=f"{'fitted' if p is preset else 'base'} {p.name}", **style)
    ax.set_xscale("log")
    ax.set_xlabel("depth (m)")
    ax.set_ylabel("blur sigma (px)")
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    res = {k: np.abs(fitted_render(render(triplet, c), triplet) - triplet.real).mean(0)[triplet.inner]
           for k, c in (("identity", None), ("fitted", preset))}
    vmax = float(np.percentile(res["identity"], 99))
    for ax, (k, v) in zip(axes[1:], res.items()):
        im = ax.imshow(v, cmap="magma", vmin=0, vmax=vmax)
        ax.set_title(f"{triplet.name}: |real - {k}| (mean {v.mean():.4f})", fontsize=9)
        ax.axis("off")
        fig.colorbar(im, ax=ax, fraction=0.03)
    fig.tight_layout()
    path = Path(path)
    with atomic_write(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return path


def rounded(x, digits: int = 5):
    """``x`` with every float (also inside dicts, lists, tuples) rounded to ``digits`` (for JSON)."""
    if isinstance(x, float):
        return round(x, digits)
    if isinstance(x, dict):
        return {k: rounded(v, digits) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [rounded(v, digits) for v in x]
    return x


def write_calibration(out_dir, preset: Preset, base: Preset, result: dict, figure_triplet: Triplet | None) -> dict[str, Path]:
    """Write ``camera.yaml``, ``calibration.md``, ``calibration.json`` and ``residuals.png``
    (of ``figure_triplet``; none if None) into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"camera": write_camera_file(out / "camera.yaml", preset), "report": out / "calibration.md",
             "json": out / "calibration.json"}
    with atomic_write(paths["report"]) as tmp:
        tmp.write_text(calibration_markdown(result))
    with atomic_write(paths["json"]) as tmp:
        tmp.write_text(json.dumps(rounded(result), indent=1))
    if figure_triplet is not None:
        paths["figure"] = residual_figure(result, figure_triplet, preset, base, out / "residuals.png")
    return paths


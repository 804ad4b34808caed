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

Writes ``<out>.md`` and ``<out>.json`` and prints the table. The fit itself is library code,
:mod:`twohded.calibration` (``twohded camera calibrate`` runs it on any folder of triplets);
this script composes it for DFD with the extra variants of its report (s0, D3-Net's render
mode, unfiltered depth) and the fixed grid that fitted the ``dfd_indoor`` preset
(:data:`twohded.calibration.DFD_GRID`).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch

from twohded.calibration import (
    DFD_GRID,
    SIGMA_LEVELS,
    camera_from_fit,
    dfd_triplets,
    error_table,
    evaluate_variants,
    fit_camera,
    per_bin_blur,
)
from twohded.calibration.report import rounded
from twohded.optics import get_preset

REPO = Path(__file__).resolve().parents[1]
DEFAULT_ROOT = REPO.parent / "shared" / "data" / "dfd_indoor"

#: the lens whose focus and pixel pitch are fitted: D3-Net's (f = 15 mm, f/2.8, sigma = 0.3 CoC)
BASE_CAMERA = get_preset("d3net_nyu").camera
#: --depth-frame of this script -> the library's name for it
DEPTH_FRAMES = {"wide": "defocused", "narrow": "sharp"}


def load_split(root, split: str, border: int, depth_frame: str, limit: int | None = None):
    """DFD triplets of ``split`` (f/8 registered onto f/2.8, depth filtered); ``limit`` evenly spaced."""
    return dfd_triplets(root, split, limit, border=border, depth_frame=DEPTH_FRAMES[depth_frame])


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
    fit0 = fit_camera(train, fit_s0=False, tables=tables, refine_on=refine_on, grid=DFD_GRID)
    print("fitting (S, K, s0) ...")
    fit1 = fit_camera(train, fit_s0=True, tables=tables, refine_on=refine_on, grid=DFD_GRID)

    cam0 = camera_from_fit(fit0["focus_m"], fit0["gain_px_m"], BASE_CAMERA)
    cam1 = camera_from_fit(fit1["focus_m"], fit1["gain_px_m"], BASE_CAMERA, name="dfd_indoor+s0")
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
    ev_train = evaluate_variants(train, variants)
    print("evaluating on the validation scenes (not used for fitting) ...")
    ev_val = evaluate_variants(val, variants)

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
        tmp.write_text(json.dumps(rounded(result), indent=1))
    print()
    print(md)
    print(f"wrote {out.with_suffix('.md')} and {out.with_suffix('.json')}")


if __name__ == "__main__":
    main()

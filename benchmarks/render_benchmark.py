"""Renderer throughput: twohded's renderer (both modes, CPU and GPU) against a straightforward
NumPy/SciPy implementation of D3-Net's ``refoc_image`` algorithm.

Usage::

    python benchmarks/render_benchmark.py [--size 480x640] [--images 4] [--out results/render]

Inputs are built-in synthetic scenes (rooms with slanted walls and occluders, 0.7-10 m) at the
given size, plus the four DFD reference scenes (432x645, real depth) when ../shared is present.
Prints a table (median seconds per image, images/s) and writes ``render_benchmark.json``.
A script, not a test: numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

import twohded
from twohded.data.synthetic import SceneConfig, make_scene
from twohded.optics import D3NET_NYU

ROOT = Path(__file__).resolve().parents[1]
SHARED_REF = Path(os.environ.get("TWOHDED_SHARED", ROOT.parent / "shared")) / "reference" / "d3net_refoc"


# --- the straightforward baseline: D3-Net's refoc_image, line by line in NumPy/SciPy ---------

OCTAGON = np.array(
    [[0, 0, 1, 1, 1, 0, 0], [0, 1, 1, 1, 1, 1, 0]] + [[1] * 7] * 3 + [[0, 1, 1, 1, 1, 1, 0], [0, 0, 1, 1, 1, 0, 0]],
    dtype=bool,
)


def fspecial_gaussian(sigma: float, n: int = 21) -> np.ndarray:
    x = np.arange(n) - (n - 1) / 2
    h = np.exp(-(x[:, None] ** 2 + x[None, :] ** 2) / (2 * sigma * sigma))
    h[h < np.finfo(float).eps * h.max()] = 0
    return h / h.sum()


def refoc_numpy(image: np.ndarray, depth: np.ndarray, step: float = 10 / 255, focus: float = 2.0) -> np.ndarray:
    """image (H, W, 3) float64, depth (H, W) metres -> defocused (H, W, 3), D3-Net's algorithm."""
    gain = D3NET_NYU.blur_gain_px_m()
    edges = np.arange(depth.min() - 0.5, depth.max() + 0.5 + 1e-12, step)
    out = np.zeros_like(image)
    transmit = np.ones(depth.shape)
    for k in range(len(edges) - 1):
        layer = (depth >= edges[k]) & (depth < edges[k + 1])
        if not layer.any():
            continue
        mid = 0.5 * (edges[k] + edges[k + 1])
        psf = fspecial_gaussian(gain * abs(1 / focus - 1 / mid) + 1e-4)
        mask = ndimage.binary_dilation(layer, OCTAGON).astype(float)
        alpha = ndimage.convolve(mask, psf, mode="constant")
        for c in range(3):
            out[..., c] += ndimage.convolve(mask * image[..., c], psf, mode="constant") * transmit
        transmit *= 1 - alpha
    return out


# --- timing helpers ---------------------------------------------------------------------------


def timed(fn, device: str, repeats: int) -> float:
    """Median wall time of ``fn()`` in seconds (CUDA-synchronised), after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def load_inputs(size: tuple[int, int], n: int):
    scenes = [make_scene(1000 + i, SceneConfig(height=size[0], width=size[1])) for i in range(n)]
    synth = (torch.stack([s.aif for s in scenes]), torch.stack([s.depth for s in scenes]))
    dfd = None
    files = sorted(SHARED_REF.glob("A_dfd_train_*.npz"))
    if files:
        arrays = [np.load(f) for f in files]
        dfd = (
            torch.stack([torch.from_numpy(a["aif"].astype(np.float32) / 255).permute(2, 0, 1) for a in arrays]),
            torch.stack([torch.from_numpy(a["depth_m"])[None] for a in arrays]),
        )
    return {"synthetic": synth, "dfd": dfd}


def sweep(pair, args) -> int:
    """Tile and chunk sizes of the d3net mode on the GPU at batch 32, then a kernel profile."""
    aif, depth = pair
    reps = -(-32 // aif.shape[0])
    a, d = aif.repeat(reps, 1, 1, 1)[:32].cuda(), depth.repeat(reps, 1, 1, 1)[:32].cuda()
    print("| tile | chunk | images / s |\n|---|---|---|")
    for tile in (32, 64, 128):
        for chunk in (4, 8, 16, 32):
            sec = timed(lambda: twohded.render_defocus(a, d, "d3net_nyu", tile=tile, chunk=chunk), "cuda", args.repeats)
            print(f"| {tile} | {chunk} | {32 / sec:.1f} |")
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        twohded.render_defocus(a, d, "d3net_nyu")
        torch.cuda.synchronize()
    print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=15))
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", default="480x640", help="synthetic image size HxW (default 480x640)")
    p.add_argument("--images", type=int, default=4, help="synthetic scenes (default 4)")
    p.add_argument("--repeats", type=int, default=3, help="timed repeats per measurement (median)")
    p.add_argument("--gpu-batches", default="1,8,32", help="GPU batch sizes (default 1,8,32)")
    p.add_argument("--skip-numpy", action="store_true", help="skip the slow NumPy baseline")
    p.add_argument("--out", type=Path, default=None, help="folder for render_benchmark.json")
    p.add_argument("--sweep", action="store_true", help="GPU only: time d3net mode over tile and chunk sizes, then profile")
    args = p.parse_args(argv)
    h, w = (int(v) for v in args.size.lower().split("x"))
    inputs = load_inputs((h, w), args.images)
    if args.sweep:
        return sweep(inputs["synthetic"], args)
    rows = []

    def add(data, impl, device, batch, mode, seconds, images, err=None):
        rows.append(
            dict(data=data, impl=impl, device=device, batch=batch, mode=mode,
                 s_per_image=seconds / images, images_per_s=images / seconds, max_abs_diff_255=err)
        )

    for data_name, pair in inputs.items():
        if pair is None:
            continue
        aif, depth = pair
        n = aif.shape[0]
        # CPU, one image at a time (as a data loader worker renders)
        for mode in ("d3net", "default"):
            preset = "d3net_nyu" if mode == "d3net" else "paper"
            sec = timed(lambda: [twohded.render_defocus(aif[i], depth[i], preset, mode=mode) for i in range(n)], "cpu", args.repeats)
            add(data_name, "twohded", "cpu", 1, mode, sec, n)
        ref_out = None
        if not args.skip_numpy:
            img_np = [aif[i].permute(1, 2, 0).double().numpy() * 255 for i in range(n)]
            dep_np = [depth[i, 0].double().numpy() for i in range(n)]
            t0 = time.perf_counter()
            ref_out = [refoc_numpy(img_np[i], dep_np[i]) for i in range(n)]
            sec = time.perf_counter() - t0
            ours = torch.stack([twohded.render_defocus(aif[i] * 255, depth[i], "d3net_nyu") for i in range(n)])
            err = max(float(np.abs(ours[i].permute(1, 2, 0).numpy() - ref_out[i]).max()) for i in range(n))
            add(data_name, "numpy/scipy", "cpu", 1, "d3net", sec, n, err)
        if torch.cuda.is_available():
            for batch in (int(b) for b in args.gpu_batches.split(",")):
                reps = -(-batch // n)
                a = aif.repeat(reps, 1, 1, 1)[:batch].cuda()
                d = depth.repeat(reps, 1, 1, 1)[:batch].cuda()
                for mode in ("d3net", "default"):
                    preset = "d3net_nyu" if mode == "d3net" else "paper"
                    sec = timed(lambda: twohded.render_defocus(a, d, preset, mode=mode), "cuda", args.repeats)
                    err = None
                    if mode == "d3net":
                        cpu = torch.stack([twohded.render_defocus(aif[i], depth[i], preset) for i in range(min(n, batch))])
                        gpu = twohded.render_defocus(a[: min(n, batch)], d[: min(n, batch)], preset).cpu()
                        err = float((cpu - gpu).abs().max()) * 255
                    add(data_name, "twohded", "cuda", batch, mode, sec, batch, err)

    env = {
        "date": date.today().isoformat(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "cpu_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "synthetic_size": [h, w],
        "command": "python benchmarks/render_benchmark.py " + " ".join(sys.argv[1:] if argv is None else argv),
    }
    print(f"# renderer benchmark, {env['date']}, torch {env['torch']}, {env['cpu_threads']} CPU threads, GPU: {env['gpu']}")
    print("| data | implementation | device | batch | mode | s / image | images / s | max abs diff vs CPU d3net (0..255) |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        diff = "" if r["max_abs_diff_255"] is None else f"{r['max_abs_diff_255']:.2g}"
        print(f"| {r['data']} | {r['impl']} | {r['device']} | {r['batch']} | {r['mode']} | {r['s_per_image']:.4f} | {r['images_per_s']:.1f} | {diff} |")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "render_benchmark.json").write_text(json.dumps({"env": env, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Wall time of ``twohded predict`` on a folder of small images (CPU), including writing every file.

Usage::

    python benchmarks/predict_folder.py                         # 200 images of 96x64, 3 repeats
    python benchmarks/predict_folder.py --n 50 --repeats 1      # quicker
    python benchmarks/predict_folder.py --extra=--ply           # also the point clouds

What it does: writes ``--n`` random RGB PNGs of ``--width`` x ``--height`` pixels and a
randomly initialised ``2hded`` checkpoint (seed 0, as the tests' fixture does) into a
temporary folder, then runs ``twohded predict FOLDER --checkpoint CK --out OUT --device cpu``
through the command line's own entry point ``--repeats`` times (into a fresh output folder
each time) and prints each run's wall time and CPU time (all threads of this process: less
sensitive than wall time to other programs on a shared machine), their medians and the
medians per image; then the CPU time of the colour maps alone (``save_depth_colormap``, the
function ``predict`` calls, on ``--n`` random depth maps). Only the public
entry points are used (``twohded.cli.main``, ``create_model``, ``save_checkpoint``), so the
same script times any version of twohded (e.g. the commit before a change, from a
``git worktree`` of it with ``PYTHONPATH=<that worktree>/src``).

A script, not a test: the numbers depend on the machine. Results: docs/evaluation.md.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image


def make_inputs(folder: Path, n: int, width: int, height: int) -> Path:
    """``n`` random RGB PNGs (``height`` x ``width``) in ``folder/images``; returns that folder."""
    images = folder / "images"
    images.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        arr = (rng.random((height, width, 3)) * 255).astype(np.uint8)
        Image.fromarray(arr).save(images / f"img_{i:04d}.png")
    return images


def make_checkpoint(folder: Path) -> Path:
    """A randomly initialised ``2hded`` checkpoint (seed 0)."""
    from twohded.checkpoint import save_checkpoint
    from twohded.models import create_model

    torch.manual_seed(0)
    model = create_model("2hded")
    path = folder / "random_2hded.pt"
    save_checkpoint(path, {"model_name": "2hded", "model_options": {}, "model_state": model.state_dict()})
    return path


def time_colormap(n: int, width: int, height: int, folder: Path) -> float:
    """CPU seconds of ``twohded.predict.save_depth_colormap`` (what predict calls) on ``n`` depth maps."""
    from twohded.predict import save_depth_colormap

    rng = np.random.default_rng(1)
    depths = [rng.uniform(0.5, 10.0, (height, width)).astype(np.float32) for _ in range(n)]
    save_depth_colormap(folder / "warmup.png", depths[0])  # imports and first-call set-up
    c0 = time.process_time()
    for i, d in enumerate(depths):
        save_depth_colormap(folder / f"{i:04d}.png", d)
    return time.process_time() - c0


def main() -> None:
    from twohded.cli import main as cli_main

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=200, help="number of images (default 200)")
    ap.add_argument("--width", type=int, default=96, help="image width in pixels (default 96)")
    ap.add_argument("--height", type=int, default=64, help="image height in pixels (default 64)")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs (default 3)")
    ap.add_argument("--batch-size", type=int, default=4, help="predict --batch-size (default 4)")
    ap.add_argument("--extra", action="append", default=[], help="further predict arguments, e.g. --extra=--ply")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        images = make_inputs(tmp, args.n, args.width, args.height)
        ckpt = make_checkpoint(tmp)
        times, cpu = [], []
        for r in range(args.repeats):
            out = tmp / f"out{r}"
            argv = ["predict", str(images), "--checkpoint", str(ckpt), "--out", str(out), "--device", "cpu",
                    "--no-progress", "--batch-size", str(args.batch_size), *args.extra]
            t0, c0 = time.perf_counter(), time.process_time()
            rc = cli_main(argv)
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
            if rc != 0:
                raise SystemExit(f"twohded predict exited {rc}")
            print(f"run {r + 1}: wall {times[-1]:.2f} s, CPU {cpu[-1]:.2f} s")
        colormap_cpu = time_colormap(args.n, args.width, args.height, tmp / "colormaps")
    med, med_cpu = statistics.median(times), statistics.median(cpu)
    print(f"{args.n} images of {args.width}x{args.height}, torch threads {torch.get_num_threads()}: "
          f"median wall {med:.2f} s ({1000 * med / args.n:.1f} ms per image), "
          f"median CPU {med_cpu:.2f} s ({1000 * med_cpu / args.n:.1f} ms per image) over {len(times)} run(s); "
          f"of which the colour maps alone: CPU {colormap_cpu:.2f} s ({1000 * colormap_cpu / args.n:.1f} ms per image)")


if __name__ == "__main__":
    main()

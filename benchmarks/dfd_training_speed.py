"""Training speed on real DFD indoor (random 256x256 crops of the whole frames drawn on the GPU).

    python benchmarks/dfd_training_speed.py --root DFD_ROOT --out OUT [--steps 400] [--mps]

Rows (each a real ``twohded train`` of configs/dfd_d3net.yaml on fold cv0, no validation):
solo at batch 8 (D3-Net's), solo at batch 32, and N processes at batch 8 sharing the GPU
(with ``--mps``: under CUDA MPS, started here if ``nvidia-cuda-mps-control`` exists). The rate
is the median of the trainer's logged images/s (rows of 50 steps) after the first 100 steps,
summed over concurrent processes. Prints a markdown table and writes OUT/speed.md.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path


def run_group(name: str, n: int, overrides: list[str], args) -> tuple[float, int]:
    procs = []
    for i in range(n):
        run = args.out / "runs" / f"{name}-{i}"
        shutil.rmtree(run, ignore_errors=True)
        cmd = [sys.executable, "-m", "twohded", "train", "--config", "configs/dfd_d3net.yaml", "--out", str(run),
               "--no-progress", f"data.root={args.root}", "data.train_split=cv0-train", "data.val_split=null",
               "data.options={aif_target: published}", f"train.max_steps={args.steps}", "train.log_every=50",
               "train.checkpoint_every_steps=1000000", f"seed={i}", *overrides]
        env = dict(os.environ, OMP_NUM_THREADS="1")
        log = open(args.out / f"{name}-{i}.txt", "w")
        procs.append((subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env), run))
    for p, _ in procs:
        p.wait()
    total, ok = 0.0, 0
    for p, run in procs:
        rows = [r for r in csv.DictReader((run / "log.csv").open()) if r["split"] == "train"] if (run / "log.csv").exists() else []
        rates = [float(r["images_per_s"]) for r in rows if int(r["step"]) > 100]
        if rates:
            total += statistics.median(rates)
            ok += 1
    return total, ok


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--concurrent", type=int, default=4)
    p.add_argument("--mps", action="store_true")
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name, n, over in (("solo-b8", 1, []), ("solo-b32", 1, ["train.batch_size=32", "optim.lr=8e-4"]),
                          (f"shared-{args.concurrent}x-b8", args.concurrent, [])):
        t0 = time.time()
        rate, ok = run_group(name, n, over, args)
        rows.append((name, n, ok, rate, time.time() - t0))
        print(f"{name}: {rate:.1f} images/s ({ok}/{n} processes, {time.time() - t0:.0f} s)", flush=True)
    if args.mps and shutil.which("nvidia-cuda-mps-control"):
        started = subprocess.run(["nvidia-cuda-mps-control", "-d"], capture_output=True, text=True)
        if started.returncode == 0:
            t0 = time.time()
            rate, ok = run_group(f"mps-{args.concurrent}x-b8", args.concurrent, [], args)
            rows.append((f"mps-{args.concurrent}x-b8", args.concurrent, ok, rate, time.time() - t0))
            print(f"mps: {rate:.1f} images/s", flush=True)
            subprocess.run(["nvidia-cuda-mps-control"], input="quit\n", text=True)
        else:
            print("MPS did not start:", started.stderr.strip()[:200])
    text = "| setting | processes | measured | images/s (sum) | wall s |\n|---|---|---|---|---|\n" + "\n".join(
        f"| {n} | {k} | {ok} | {r:.1f} | {w:.0f} |" for n, k, ok, r, w in rows)
    (args.out / "speed.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()

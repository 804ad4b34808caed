"""Try demo recipes (the CPU demo's sizes, fp32) on whatever device is present, quickly.

    python scripts/demo_sweep.py --out /tmp/sweep [--only A,B] [--jobs 4]

Used to choose DemoSettings.cpu(): the recipe must beat the trivial baselines in a number of
steps that a 2-core CPU runs in under 10 minutes. Prints one row per recipe; with ``--jobs N``
runs N recipes at once as separate processes (small models leave a GPU mostly idle).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

from twohded.demo import DemoSettings, run_demo

#: The demo as it was before this sweep (recipe A); every recipe changes it.
BASE = DemoSettings(
    n_train=192, epochs=14, n_test=32, figures=0, n_predict=1, amp="none", decoder_dropout=0.5,
    depth_bias_from_mean=False, val_every=None, loss_options=(),
)
_NEW = dict(decoder_dropout=0.0, depth_bias_from_mean=True)
_MSE = (("l1", False), ("gradient", False), ("depth_mse", True), ("charbonnier", False), ("ssim", False), ("mse", True), ("lam", 1.0))
RECIPES = {
    "A paper 64 n192 e14 b8 lr1e-3 (demo before)": dict(),
    "B A + no dropout": dict(decoder_dropout=0.0),
    "C A + no dropout + mean-depth bias": dict(_NEW),
    "D C + d3net_nyu camera": dict(_NEW, preset="d3net_nyu"),
    "E C + lr 3e-4": dict(_NEW, lr=3e-4),
    "F C + lr 2e-3": dict(_NEW, lr=2e-3),
    "G C + batch 4 (672 steps)": dict(_NEW, batch_size=4),
    "H C at 32 px, n384 e28 (1344 steps)": dict(_NEW, size=32, n_train=384, epochs=28),
    "M C, 56 epochs (1344 steps)": dict(_NEW, epochs=56, val_every=4),
    "N D, 56 epochs (1344 steps)": dict(_NEW, preset="d3net_nyu", epochs=56, val_every=4),
    "O H, val every 4": dict(_NEW, size=32, n_train=384, epochs=28, val_every=4),
    "P C, fresh scenes (2688, 1 epoch)": dict(_NEW, n_train=2688, epochs=1),
    "Q C, 1344 scenes x 2 epochs": dict(_NEW, n_train=1344, epochs=2, val_every=1),
    "R D, fresh scenes (2688, 1 epoch)": dict(_NEW, preset="d3net_nyu", n_train=2688, epochs=1),
    "S GPU 128 px, fresh scenes (12288, 1 epoch, b16)": dict(_NEW, size=128, n_train=12288, n_val=64, epochs=1, batch_size=16, amp="auto"),
    "T C, fresh scenes, rooms with 0-3 objects, d3net_nyu": dict(
        _NEW, n_train=2688, epochs=1, preset="d3net_nyu", scene_options=(("room_prob", 1.0), ("n_objects", (0, 3)))
    ),
    "U C, fresh scenes, rooms with 0-3 objects, paper": dict(
        _NEW, n_train=2688, epochs=1, scene_options=(("room_prob", 1.0), ("n_objects", (0, 3)))
    ),
    "W C, fresh scenes, batch 4 (672 steps)": dict(_NEW, n_train=2688, epochs=1, batch_size=4),
    "V Q + MSE losses": dict(_NEW, n_train=1344, epochs=2, val_every=1, loss_options=_MSE),
    "X V with the d3net_nyu camera": dict(_NEW, n_train=1344, epochs=2, val_every=1, loss_options=_MSE, preset="d3net_nyu"),
    "I C + EMA 0.99": dict(_NEW, ema_decay=0.99),
    "J D + EMA 0.99": dict(_NEW, preset="d3net_nyu", ema_decay=0.99),
    "K GPU demo setting + C": dict(_NEW, size=128, n_train=1024, n_val=64, epochs=12, batch_size=16, amp="auto"),
    "L GPU demo setting + D": dict(_NEW, size=128, n_train=1024, n_val=64, epochs=12, batch_size=16, amp="auto", preset="d3net_nyu"),
}
HEADER = (
    "| recipe | steps | RMSE | mean-depth RMSE | AbsRel | mean-depth AbsRel | delta1 | mean-depth delta1 | PSNR | input PSNR | train s |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|"
)


def run_one(name: str, out: Path, device: str) -> str:
    settings = replace(BASE, **RECIPES[name])
    report = run_demo(out / name[0], settings, device=device, overwrite=True)
    s = json.loads((report.parent / "summary.json").read_text())
    m, b = s["model"], s["baselines"]
    steps = settings.epochs * (settings.n_train // settings.batch_size)
    return (
        f"| {name} | {steps} | {m['depth']['rmse']:.3f} | {b['mean_depth']['rmse']:.3f} | {m['depth']['abs_rel']:.3f} | "
        f"{b['mean_depth']['abs_rel']:.3f} | {m['depth']['delta1']:.3f} | {b['mean_depth']['delta1']:.3f} | "
        f"{m['aif']['psnr']:.2f} | {b['input_as_deblurred']['psnr']:.2f} | {s['timings_s']['train_s']:.0f} |"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--device", default="auto")
    p.add_argument("--only", default=None, help="comma-separated recipe letters")
    p.add_argument("--jobs", type=int, default=1, help="recipes run at once (separate processes)")
    p.add_argument("--row", default=None, help=argparse.SUPPRESS)  # internal: run one recipe, print its row
    args = p.parse_args()
    if args.row:
        print(run_one(args.row, args.out, args.device), flush=True)
        return
    names = [n for n in RECIPES if not args.only or n[0] in args.only.split(",")]
    print(HEADER, flush=True)
    running: list[subprocess.Popen] = []
    for name in names:
        if args.jobs <= 1:
            print(run_one(name, args.out, args.device), flush=True)
            continue
        cmd = [sys.executable, __file__, "--out", str(args.out), "--device", args.device, "--row", name]
        running.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True))
        if len(running) >= args.jobs:
            print(running.pop(0).communicate()[0].strip(), flush=True)
    for proc in running:
        print(proc.communicate()[0].strip(), flush=True)


if __name__ == "__main__":
    main()

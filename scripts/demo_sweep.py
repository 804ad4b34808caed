"""Try demo recipes (the CPU demo's sizes, fp32) on whatever device is present, quickly.

    python scripts/demo_sweep.py --out /tmp/sweep

Used to choose DemoSettings.cpu(): the recipe must beat the trivial baselines in a number of
steps that a 2-core CPU runs in under 10 minutes. Prints one row per recipe.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

from twohded.demo import DemoSettings, run_demo

RECIPES = {
    "G d3net_nyu 64 n192 e14 b8 lr1e-3": dict(n_train=192, epochs=14, batch_size=8, lr=1e-3, preset="d3net_nyu"),
    "H paper 64 n192 e14 b8 lr1e-3": dict(n_train=192, epochs=14, batch_size=8, lr=1e-3),
    "I d3net_nyu 48 n256 e14 b8 lr1e-3": dict(size=48, n_train=256, epochs=14, batch_size=8, lr=1e-3, preset="d3net_nyu"),
    "J d3net_nyu 64 n192 e14 b8 lr2e-3": dict(n_train=192, epochs=14, batch_size=8, lr=2e-3, preset="d3net_nyu"),
    "K GPU demo setting (paper)": dict(size=128, n_train=1024, n_val=64, epochs=12, batch_size=16, amp="auto"),
    "L GPU demo setting, d3net_nyu": dict(size=128, n_train=1024, n_val=64, epochs=12, batch_size=16, amp="auto", preset="d3net_nyu"),
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--device", default="auto")
    p.add_argument("--only", default=None, help="comma-separated recipe letters")
    args = p.parse_args()
    print("| recipe | steps | RMSE | mean-depth RMSE | AbsRel | mean-depth AbsRel | PSNR | input PSNR | train s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for i, (name, changes) in enumerate(RECIPES.items()):
        if args.only and name[0] not in args.only.split(","):
            continue
        settings = replace(DemoSettings(n_test=32, figures=0, n_predict=1, amp="none"), **changes)
        report = run_demo(args.out / name[0], settings, device=args.device, overwrite=True)
        s = json.loads((report.parent / "summary.json").read_text())
        m, b = s["model"], s["baselines"]
        steps = settings.epochs * (settings.n_train // settings.batch_size)
        print(
            f"| {name} | {steps} | {m['depth']['rmse']:.3f} | {b['mean_depth']['rmse']:.3f} | {m['depth']['abs_rel']:.3f} | "
            f"{b['mean_depth']['abs_rel']:.3f} | {m['aif']['psnr']:.2f} | {b['input_as_deblurred']['psnr']:.2f} | "
            f"{s['timings_s']['train_s']:.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()

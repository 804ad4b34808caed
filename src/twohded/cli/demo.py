"""``twohded demo``: render, train, evaluate and predict on the built-in synthetic scenes."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser(
        "demo",
        help="the whole pipeline on built-in synthetic scenes (no download), with a report",
        description="Render defocus for built-in synthetic RGB-D scenes, train 2HDED:NET briefly, "
        "evaluate it on held-out scenes against trivial baselines (mean training depth; the input "
        "as its own deblurring), predict on a few, and write OUT/report.md. Under 10 minutes on a "
        "2-core CPU; uses a GPU (and larger settings) when there is one.",
    )
    p.add_argument("-o", "--out", type=Path, default=Path("runs/demo"), help="output folder (default runs/demo)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="default: CUDA if available")
    p.add_argument("--quick", action="store_true", help="tiny settings (32x32 images, 1 epoch): a smoke test, not a result")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty OUT")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..demo import DemoSettings, run_demo

    settings = DemoSettings.quick() if args.quick else None
    report = run_demo(args.out, settings, device=args.device, overwrite=args.overwrite)
    print(report.read_text())
    print(f"report: {report}")
    return 0

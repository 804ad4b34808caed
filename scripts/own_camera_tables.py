"""Tables of scripts/own_camera_dfd.sh: the two calibrations side by side, and the depth results.

    python scripts/own_camera_tables.py calibration OUT_DIR
    python scripts/own_camera_tables.py depth OUT_DIR --root DFD_ROOT

``calibration``: OUT_DIR/dfd5 and OUT_DIR/dfd70 (``twohded camera calibrate``) against the
shipped ``dfd_indoor`` preset. ``depth``: OUT_DIR/eval/<run>/metrics.json of the sim-only and
the fine-tuned runs, and the mean-depth reference (the mean depth of the 70 training frames,
predicted everywhere, evaluated with the same code on the same 11 validation frames).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from twohded.optics import get_preset

REPO = Path(__file__).resolve().parents[1]
PRESET_FIT = REPO / "docs" / "results" / "dfd_camera_fit.json"
RUNS = {"own_camera_dfd5": "synthetic scenes with the 5-triplet camera (no real photo)",
        "own_camera_dfd5_ft": "the same, fine-tuned on the 70 real training photos"}


def calibration_table(out: Path) -> str:
    rows = {k: json.loads((out / k / "calibration.json").read_text()) for k in ("dfd5", "dfd70")}
    ref = get_preset("dfd_indoor").camera
    lines = ["# DFD indoor as a new camera: calibrated on 5 vs 70 training triplets", "",
             "Base lens d3net_nyu (f = 15 mm, f/2.8, sigma = 0.3 CoC); fitted: focus S and blur gain K "
             "(sigma_px = K |1/S - 1/x|). PSNR of the rendered f/8 photo vs the real f/2.8 photo after the "
             "exposure/vignetting fit; held out: the 11 validation scenes (never fitted).", "",
             "| camera | triplets fitted | S (m) | K (px m) | fitted PSNR (dB) | held-out PSNR (dB) | held-out identity (dB) | held-out d3net_nyu (dB) | runtime (s) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for k, r in rows.items():
        s = r["scores"]
        name = f"fitted camera {r['name']}"
        lines.append(f"| {k} | {len(r['triplets']['fitted'])} | {r['focus_m']:.3f} | {r['gain_px_m']:.3f} | "
                     f"{s['fitted'][name]['psnr']:.3f} | {s['held_out'][name]['psnr']:.3f} | "
                     f"{s['held_out']['identity (sharp photo as is)']['psnr']:.3f} | "
                     f"{s['held_out']['base preset d3net_nyu']['psnr']:.3f} | {r['runtime_s']:.0f} |")
    fit = json.loads(PRESET_FIT.read_text())  # the run that made the preset
    tr, va = fit["train"], fit["val"]
    lines.append(f"| preset dfd_indoor ({fit['command']}, {PRESET_FIT.relative_to(REPO)}) | {fit['scenes']['train']} | "
                 f"{ref.focus_m:.3f} | {ref.blur_gain_px_m():.3f} | {tr['fitted camera (dfd_indoor)']['psnr']:.3f} | "
                 f"{va['fitted camera (dfd_indoor)']['psnr']:.3f} | {va['identity (f/8 as is)']['psnr']:.3f} | "
                 f"{va['d3net_nyu (d3net mode)']['psnr']:.3f} | {fit['runtime_s']:.0f} |")
    lines += ["", "Commands: `" + "`, `".join(r["source"] for r in rows.values()) + "`."]
    return "\n".join(lines) + "\n"


def mean_depth_reference(root: str) -> dict:
    """Depth metrics of predicting the training frames' mean depth on the validation frames."""
    from twohded.baselines.trivial import TrivialBaseline, mean_depth
    from twohded.data import build_dataset
    from twohded.evaluate import evaluate_model

    depth = mean_depth(build_dataset("dfd", root, "train"))
    result = evaluate_model(TrivialBaseline(depth), build_dataset("dfd", root, "val"), dataset_name="dfd")
    return {"mean_depth_m": depth, **result.depth}


def depth_table(out: Path, root: str) -> str:
    ref = mean_depth_reference(root)
    lines = ["# DFD validation (11 real f/2.8 photos): depth of the models trained for the calibrated camera", "",
             "| model | RMSE (m) | AbsRel | delta1 | AiF PSNR (dB) |", "|---|---|---|---|---|"]
    for run, what in RUNS.items():
        path = out / "eval" / run / "metrics.json"
        if not path.exists():
            lines.append(f"| {what} | not run | | | |")
            continue
        m = json.loads(path.read_text())
        d, a = m.get("depth", {}), m.get("aif", {})
        lines.append(f"| {what} | {d.get('rmse', float('nan')):.3f} | {d.get('abs_rel', float('nan')):.3f} | "
                     f"{d.get('delta1', float('nan')):.3f} | {a.get('psnr', float('nan')):.2f} |")
    lines.append(f"| mean training depth ({ref['mean_depth_m']:.3f} m) everywhere | {ref['rmse']:.3f} | "
                 f"{ref['abs_rel']:.3f} | {ref['delta1']:.3f} | |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("table", choices=("calibration", "depth"))
    p.add_argument("out", type=Path)
    p.add_argument("--root", help="DFD root (depth table: the mean-depth reference)")
    args = p.parse_args(argv)
    print(calibration_table(args.out) if args.table == "calibration" else depth_table(args.out, args.root), end="")


if __name__ == "__main__":
    main()

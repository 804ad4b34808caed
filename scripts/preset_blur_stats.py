"""What each camera preset's blur means: sigma over NYU's depth range and the PSNR of the
rendered (defocused) image against the sharp one, on built-in synthetic scenes.

    python scripts/preset_blur_stats.py [--n 8] [--size 480x640]

Used in docs/physics.md to justify the `paper` preset's focus distance and pixel pitch.
"""

from __future__ import annotations

import argparse
import math
from datetime import date

import torch

import twohded
from twohded.data.synthetic import SceneConfig, make_scene


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(((a.clamp(0, 1) - b) ** 2).mean())
    return 10 * math.log10(1.0 / mse)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--n", type=int, default=8)
    p.add_argument("--size", default="480x640")
    args = p.parse_args()
    h, w = (int(v) for v in args.size.split("x"))
    scenes = [make_scene(500 + i, SceneConfig(height=h, width=w)) for i in range(args.n)]
    paper = twohded.get_preset("paper").camera
    variants = {
        "d3net_nyu": twohded.get_preset("d3net_nyu").camera,
        "paper (focus 2 m, 36 mm / 640 px = 56.25 um pixel)": paper,
        "paper with a 5.6 um pixel": paper.with_(pixel_pitch_m=5.6e-6),
        "paper with D3-Net's blur budget (180.8 um pixel)": paper.with_(
            pixel_pitch_m=0.0448 * 0.07 / (4 * twohded.get_preset("d3net_nyu").camera.blur_gain_px_m())
        ),
    }
    print(f"# {date.today()}, {args.n} synthetic scenes at {h}x{w}, depth 0.7-10 m, mode default")
    print("| camera | sigma at 0.7 m (px) | sigma at 10 m (px) | PSNR defocused vs sharp (dB) |")
    print("|---|---|---|---|")
    for name, cam in variants.items():
        s_near, s_far = float(cam.sigma_px(0.7)), float(cam.sigma_px(10.0))
        if s_near > 60:
            print(f"| {name} | {s_near:.1f} | {s_far:.1f} | (not rendered: blur wider than the image allows) |")
            continue
        values = [psnr(twohded.render_defocus(s.aif, s.depth, cam, mode="default"), s.aif) for s in scenes]
        print(f"| {name} | {s_near:.2f} | {s_far:.2f} | {sum(values) / len(values):.2f} |")


if __name__ == "__main__":
    main()

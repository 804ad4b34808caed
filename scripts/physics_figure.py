"""Figure for docs/physics.md: sharp image, depth, and both renderer modes, for a built-in
synthetic scene and a real DFD indoor scene (whose real f/2.8 photo is shown beside).

    python scripts/physics_figure.py [--out docs/figures/physics.png]

Needs ../shared/data/dfd_indoor for the real row (skipped with a note otherwise).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

import twohded
from twohded.data.synthetic import SceneConfig, make_scene
from twohded.figures import Panel, save_figure

ROOT = Path(__file__).resolve().parents[1]
DFD_ROOT = ROOT.parent / "shared" / "data" / "dfd_indoor"


def row(name: str, aif: torch.Tensor, depth: torch.Tensor, real: torch.Tensor | None, vmax: float):
    d3 = twohded.render_defocus(aif, depth, "d3net_nyu", mode="d3net").clamp(0, 1)
    default = twohded.render_defocus(aif, depth, "d3net_nyu", mode="default").clamp(0, 1)
    sigma = twohded.get_preset("d3net_nyu").camera.sigma_px(depth.double()).float()
    panels = [
        Panel(f"{name}: sharp", aif),
        Panel("depth", depth, kind="depth", vmin=0, vmax=vmax),
        Panel("blur sigma (d3net_nyu)", sigma, kind="map", unit="px"),
        Panel("rendered, mode d3net", d3),
        Panel("rendered, mode default", default),
    ]
    if real is not None:
        panels.append(Panel("real f/2.8 photo", real))
    return panels


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "figures" / "physics.png")
    args = p.parse_args()
    scene = make_scene(3, SceneConfig(height=240, width=320))
    rows = [row("synthetic scene 3", scene.aif, scene.depth[0], None, 10.0)]
    if DFD_ROOT.exists():
        from twohded.data import DFDIndoor

        item = DFDIndoor(DFD_ROOT, "val", defocus="real", augment=False)[0]
        rows.append(row(f"DFD {item['name'][11:19]} (f/8)", item["aif"], item["depth"][0], item["image"], 5.0))
    else:
        print(f"{DFD_ROOT} not found: real-scene row skipped")
    print(save_figure(args.out, rows, tile_inches=2.6, title="Layered defocus, D3-Net NYU camera (f=15 mm, f/2.8, focus 2 m)"))


if __name__ == "__main__":
    main()

"""``twohded scenes``: write built-in synthetic RGB-D scenes, optionally with rendered defocus.

Output layout (the RGB-D folder layout that :class:`twohded.data.RGBDFolder` reads)::

    OUT/rgb/scene_000000.png        all-in-focus image, 8-bit
    OUT/depth/scene_000000.png      depth, 16-bit PNG, millimetres
    OUT/defocused/scene_000000.png  rendered defocus (unless --preset none)
    OUT/scenes.png                  a figure of the first scenes (unless --no-figure)

Scene ``i`` uses seed ``SEED + i``. ``OUT/.twohded-scenes.json`` records the settings (size,
depth range, camera) and the scenes finished: rerunning the same command skips those, so an
interrupted run continues where it stopped (every file is written atomically). A rerun with
other settings is refused, or with ``--overwrite`` redoes every scene it asks for.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import InputError
from .render import add_camera_options, camera_from_args

FIGURE_SCENES = 4


def add_parser(sub) -> None:
    p = sub.add_parser(
        "scenes",
        help="write built-in synthetic scenes (sharp image, depth, defocused image)",
        description="Generate procedural RGB-D scenes (deterministic by seed, no download) and "
        "render their defocus. Layout: OUT/rgb, OUT/depth (16-bit PNG, mm), OUT/defocused.",
    )
    p.add_argument("--n", type=int, default=8, help="number of scenes (default 8)")
    p.add_argument("--seed", type=int, default=0, help="seed of the first scene; scene i uses SEED + i (default 0)")
    p.add_argument("-o", "--out", required=True, type=Path, help="output folder")
    p.add_argument("--height", type=int, default=240, help="image height, pixels (default 240)")
    p.add_argument("--width", type=int, default=320, help="image width, pixels (default 320)")
    p.add_argument(
        "--depth-range-m",
        type=float,
        nargs=2,
        default=(0.7, 10.0),
        metavar=("NEAR", "FAR"),
        help="scene depth range in metres (default 0.7 10, NYU's)",
    )
    p.add_argument("--no-figure", action="store_true", help="do not write OUT/scenes.png")
    p.add_argument("--overwrite", action="store_true",
                   help="redo scenes whose files exist (needed when the folder holds scenes of other settings)")
    add_camera_options(p, seed_option=False)
    # --seed is shared with the syndof camera: scene i's random camera uses seed SEED + i too.
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..data.synthetic import SceneConfig, make_scene
    from ..io import read_depth, read_image, write_depth_png_mm, write_image
    from ..render import render_defocus

    if args.n < 1:
        raise InputError(f"--n must be >= 1, got {args.n}")
    render = args.preset.lower() != "none"
    spec = camera_from_args(args) if render else None
    config = SceneConfig(height=args.height, width=args.width, depth_range_m=tuple(args.depth_range_m))
    out: Path = args.out
    folders = ["rgb", "depth"] + (["defocused"] if render else [])
    record, finished = _record(args, out, folders)
    figure_rows = []
    written = skipped = 0
    for i in tqdm(range(args.n), desc="scenes", unit="scene"):
        seed = args.seed + i
        name = f"scene_{seed:06d}.png"
        paths = {f: out / f / name for f in folders}
        if name in finished and all(p.exists() for p in paths.values()):
            skipped += 1
            if i < FIGURE_SCENES and not args.no_figure:
                figure_rows.append(
                    (
                        name,
                        read_image(paths["rgb"]),
                        read_depth(paths["depth"]),
                        read_image(paths["defocused"]) if render else None,
                    )
                )
            continue
        scene = make_scene(seed, config)
        defocused = render_defocus(scene.aif, scene.depth, spec.camera, mode=spec.mode, seed=seed) if render else None
        write_image(paths["rgb"], scene.aif)
        write_depth_png_mm(paths["depth"], scene.depth)
        if render:
            write_image(paths["defocused"], defocused.clamp(0, 1))
        record.mark_done(name)
        written += 1
        if i < FIGURE_SCENES:
            figure_rows.append((name, scene.aif, scene.depth[0], defocused))
    print(f"{written} scenes written, {skipped} already complete, in {out}")
    if not args.no_figure:
        fig = _figure(out / "scenes.png", figure_rows, args)
        print(f"figure: {fig}")
    return 0


def _record(args: argparse.Namespace, out: Path, folders: list[str]):
    """The folder's :class:`~twohded.run_record.RunRecord` (started) and the scenes finished with
    these settings; refuses a folder holding scenes of other settings unless ``--overwrite``."""
    from ..io import remove_temporaries
    from ..run_record import RunRecord
    from .render import CAMERA_OPTIONS

    settings = {"height": args.height, "width": args.width, "depth_range_m": args.depth_range_m,
                "preset": args.preset.lower(), "mode": args.mode,
                **{k: getattr(args, k, None) for k in CAMERA_OPTIONS}}
    record = RunRecord(out, "scenes", settings)
    names = [f"scene_{args.seed + i:06d}.png" for i in range(args.n)]
    existing = [out / f / n for n in names for f in folders if (out / f / n).exists()]
    if existing and not args.overwrite and not record.same_settings:
        why = (f"other settings ({', '.join(record.changed())} differ)" if record.previous is not None
               else "settings this version cannot check (no record)")
        raise InputError(f"{out}: holds scenes made with {why}, e.g. {existing[0]}; use another --out, "
                         "or --overwrite to redo them with these settings")
    finished = set() if args.overwrite else record.finished()
    remove_temporaries([out / f / n for n in names for f in folders])
    record.start(finished)
    return record, finished


def _figure(path: Path, rows, args) -> Path:
    from ..figures import Panel, save_figure

    near, far = args.depth_range_m
    panels = []
    for name, aif, depth, defocused in rows:
        row = [Panel(f"{name}: all-in-focus", aif), Panel("depth", depth, kind="depth", vmin=near, vmax=far)]
        if defocused is not None:
            row.append(Panel(f"defocused ({args.preset})", defocused.clamp(0, 1)))
        panels.append(row)
    return save_figure(path, panels, title="twohded built-in synthetic scenes")

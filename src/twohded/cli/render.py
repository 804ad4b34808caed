"""``twohded render``: defocus one all-in-focus image with its depth map."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..io import (
    atomic_write,
    describe_invalid_depth,
    fill_invalid_depth,
    read_depth,
    read_image,
    write_image,
)

CAMERA_OPTIONS = {
    # option dest: (Camera field, factor to SI)
    "focal_length_mm": ("focal_length_m", 1e-3),
    "f_number": ("f_number", 1.0),
    "focus_m": ("focus_m", 1.0),
    "pixel_pitch_um": ("pixel_pitch_m", 1e-6),
}


def add_camera_options(parser: argparse.ArgumentParser, seed_option: bool = True) -> None:
    """Options that override the preset's camera (shared by render and scenes)."""
    from ..optics import list_presets
    from ..render import MODES

    parser.add_argument(
        "--preset",
        default="paper",
        help=f"camera preset: {', '.join(list_presets())} (default: paper); see docs/physics.md",
    )
    parser.add_argument(
        "--mode",
        choices=sorted(MODES),
        default=None,
        help="renderer: 'd3net' reproduces D3-Net's refoc_image, 'default' is the artefact-free "
        "version (default: the preset's own; d3net_nyu -> d3net, others -> default)",
    )
    group = parser.add_argument_group("camera options (override the preset's camera)")
    group.add_argument("--focal-length-mm", type=float, help="focal length f, millimetres")
    group.add_argument("--f-number", type=float, help="f-number N (aperture diameter = f / N)")
    group.add_argument("--focus-m", type=float, help="focus distance S, metres")
    group.add_argument("--pixel-pitch-um", type=float, help="pixel size on the sensor, micrometres")
    if seed_option:
        group.add_argument("--seed", type=int, default=0, help="seed of the random 'syndof' camera (default 0)")


def camera_from_args(args: argparse.Namespace):
    """The :class:`~twohded.render_spec.RenderSpec` stated by ``--preset``, ``--mode``, the
    camera options and ``--blur-at`` (where the command has it).

    The camera options change the preset's camera and keep its default renderer mode (an
    explicit ``--pixel-pitch-um`` is absolute: the pitch no longer follows the image width).
    """
    from ..optics import get_preset
    from ..render_spec import RenderSpec

    preset = get_preset(args.preset)
    changes = {
        field: getattr(args, dest) * factor
        for dest, (field, factor) in CAMERA_OPTIONS.items()
        if getattr(args, dest, None) is not None
    }
    if changes:
        if preset.camera is None:
            raise InputError(f"--preset {args.preset} draws a random camera per image; camera options do not apply to it")
        absolute = {"sensor_width_m": None} if "pixel_pitch_m" in changes else {}
        preset = dataclasses.replace(preset, camera=preset.camera.with_(**changes), **absolute)
    return RenderSpec.resolve(preset, args.mode, getattr(args, "blur_at", None))


def add_parser(sub) -> None:
    p = sub.add_parser(
        "render",
        help="defocus an all-in-focus image with its depth map",
        description="Render the defocused version of a sharp image, given its depth map, with a "
        "thin-lens camera (layered, occlusion-aware; see docs/physics.md).",
    )
    p.add_argument("--image", required=True, type=Path, help="all-in-focus image (any format PIL reads)")
    p.add_argument(
        "--depth",
        required=True,
        type=Path,
        help="depth map of the same size: 16-bit PNG in millimetres (0 = missing) or .npy in metres",
    )
    p.add_argument("-o", "--out", required=True, type=Path, help="output: .png (8-bit) or .npy (float32 H x W x 3 in [0, 1])")
    p.add_argument(
        "--depth-scale-m",
        type=float,
        default=1e-3,
        help="metres per unit of a PNG depth map (default 0.001: millimetres)",
    )
    p.add_argument(
        "--fill-invalid",
        action="store_true",
        help="fill missing depth (0, NaN, negative) from the nearest valid pixel instead of refusing",
    )
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    add_camera_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..render import render_defocus

    out: Path = args.out
    if out.suffix.lower() not in (".png", ".npy", ".jpg", ".jpeg", ".tif", ".tiff"):
        raise InputError(f"{out}: output must end in .png or .npy")
    for given, what in ((args.image, "--image"), (args.depth, "--depth")):
        if out.resolve() == given.resolve():
            raise InputError(f"{out}: is the {what} input; the output would replace it (choose another --out)")
    if out.is_dir():
        raise InputError(f"{out}: is a folder; give an output file name ending in .png or .npy")
    if out.exists() and not args.overwrite:
        raise InputError(f"{out}: already exists (use --overwrite to replace it)")
    spec = camera_from_args(args)
    image = read_image(args.image)
    depth = read_depth(args.depth, png_scale_m=args.depth_scale_m)
    if depth.shape != image.shape[-2:]:
        raise InputError(
            f"{args.depth}: depth is {depth.shape[1]}x{depth.shape[0]} but {args.image} is "
            f"{image.shape[2]}x{image.shape[1]} (W x H); they must match"
        )
    problem = describe_invalid_depth(depth)
    if problem is not None:
        if not args.fill_invalid:
            raise InputError(f"{args.depth}: {problem}; pass --fill-invalid to fill them from the nearest valid pixel")
        depth = fill_invalid_depth(depth, name=str(args.depth))
    result = render_defocus(image, depth, spec.camera, mode=spec.mode, seed=args.seed)
    if out.suffix.lower() == ".npy":
        with atomic_write(out) as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, result.permute(1, 2, 0).numpy().astype(np.float32))
    else:
        write_image(out, result)
    print(f"wrote {out}")
    return 0

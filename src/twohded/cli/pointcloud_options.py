"""Point-cloud options shared by ``twohded predict --ply`` and ``twohded app``."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import InputError


def add_point_cloud_arguments(p: argparse.ArgumentParser, with_ply_flag: bool = True) -> None:
    """``--ply`` (optional), ``--fov-deg``, ``--focal-mm``, ``--pixel-pitch-um``, ``--preset``, ``--ply-step``."""
    g = p.add_argument_group(
        "point cloud", "binary PLY in metres, x right, y down, z forward; focal length in pixels from "
        "--fov-deg, or --focal-mm / --pixel-pitch-um (completed by --preset), or --preset, or the "
        "photo's EXIF 35 mm-equivalent focal length; principal point at the image centre")
    if with_ply_flag:
        g.add_argument("--ply", action="store_true", help="also write <stem>_points.ply, a coloured point cloud")
    g.add_argument("--fov-deg", type=float, default=None, help="horizontal field of view of the photos, degrees")
    g.add_argument("--focal-mm", type=float, default=None, help="focal length of the lens, millimetres")
    g.add_argument("--pixel-pitch-um", type=float, default=None, help="pixel size in the image, micrometres")
    g.add_argument("--preset", default=None,
                   help="take the focal length and pixel pitch of a renderer preset (its simulated camera)")
    g.add_argument("--ply-step", type=int, default=1, metavar="N", help="keep every N-th row and column (default 1)")


def camera_options(args: argparse.Namespace) -> dict:
    """The keyword arguments of :func:`twohded.pointcloud.camera_intrinsics` given on the command line."""
    return {"fov_deg": args.fov_deg, "focal_mm": args.focal_mm, "pixel_pitch_um": args.pixel_pitch_um,
            "preset": args.preset}


def check_point_cloud_arguments(args: argparse.Namespace) -> None:
    """Fail early (one line) on conflicting or impossible camera options."""
    from ..pointcloud import camera_intrinsics

    if args.ply_step < 1:
        raise InputError("--ply-step must be >= 1")
    options = camera_options(args)
    if any(v is not None for v in options.values()):
        camera_intrinsics(640, 480, **options)


def intrinsics_for(args: argparse.Namespace, image: Path | str | None, width: int, height: int):
    """Intrinsics of one image: the command line's camera options, else the image file's EXIF."""
    from ..pointcloud import camera_intrinsics, exif_focal_35mm

    options = camera_options(args)
    if all(v is None for v in options.values()) and image is not None:
        options["focal_35mm"] = exif_focal_35mm(image)
    try:
        return camera_intrinsics(width, height, **options)
    except InputError as exc:
        raise InputError(f"{image}: {exc}" if image is not None else str(exc)) from None

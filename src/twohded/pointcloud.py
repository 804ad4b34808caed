"""Coloured point clouds from metric depth: pinhole back-projection and binary PLY files.

Coordinates (the usual camera frame of OpenCV, Open3D and COLMAP): origin at the camera's
centre of projection, **x right, y down, z forward** (along the optical axis), in **metres**.
Pixel ``(u, v)`` (column, row; integer indices, pixel centres) with depth ``z`` (metres along
the optical axis, as NYU / Kinect depth is) goes to::

    x = (u - cx) * z / fx,    y = (v - cy) * z / fy,    z = z

with square pixels (``fx = fy``) and the principal point at the image centre,
``cx = (W - 1) / 2``, ``cy = (H - 1) / 2``. The focal length in pixels comes from one of:

* ``fov_deg``: the horizontal field of view of the photo, degrees: ``fx = (W / 2) / tan(fov / 2)``;
* ``focal_mm`` and ``pixel_pitch_um``: ``fx = focal / pitch``;
* a renderer ``preset`` (:func:`twohded.get_preset`): its focal length and pixel pitch (for
  width-relative presets, its sensor width over the image width). This is the *simulated*
  camera of the preset; it describes the photo's geometry only for photos taken with it;
* the photo's EXIF 35 mm-equivalent focal length ``f35`` (tag FocalLengthIn35mmFilm),
  related to the image diagonal: ``fx = f35 / 43.27 mm * sqrt(W^2 + H^2)``.

PLY files are ``binary_little_endian 1.0`` with one ``vertex`` element of ``float x, y, z``
(metres) and ``uchar red, green, blue``, 15 bytes per point, readable by MeshLab, Open3D,
CloudCompare and Blender; pixels without valid depth (NaN, inf, <= 0) are left out; the
header's comments record the frame, the units and the intrinsics.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError

#: file written per image by ``twohded predict --ply``
PLY_SUFFIX = "_points.ply"
#: diagonal of a 36 x 24 mm frame, millimetres (the reference of 35 mm-equivalent focal lengths)
FULL_FRAME_DIAGONAL_MM = math.hypot(36.0, 24.0)
_EXIF_IFD = 0x8769
_EXIF_FOCAL_35MM = 0xA405

__all__ = ["PLY_SUFFIX", "Intrinsics", "camera_intrinsics", "depth_to_points", "exif_focal_35mm",
           "save_point_cloud", "write_ply"]


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics of a ``width`` x ``height`` image: focal lengths ``fx_px``, ``fy_px``
    (pixels) and principal point ``cx_px``, ``cy_px`` (pixel indices); ``source`` says where
    the focal length came from (for logs, JSON summaries and the PLY header)."""

    fx_px: float
    fy_px: float
    cx_px: float
    cy_px: float
    width: int
    height: int
    source: str = "custom"

    @classmethod
    def centred(cls, focal_px: float, width: int, height: int, source: str = "custom") -> "Intrinsics":
        """Square pixels of focal length ``focal_px`` and the principal point at the image centre."""
        if not (math.isfinite(focal_px) and focal_px > 0):
            raise InputError(f"focal length must be a finite number of pixels > 0, got {focal_px!r}")
        return cls(float(focal_px), float(focal_px), (width - 1) / 2.0, (height - 1) / 2.0, int(width), int(height), source)

    @property
    def fov_deg(self) -> float:
        """Horizontal field of view, degrees."""
        return math.degrees(2.0 * math.atan(self.width / 2.0 / self.fx_px))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["fov_deg"] = self.fov_deg
        return d


def exif_focal_35mm(path: str | os.PathLike) -> float | None:
    """The 35 mm-equivalent focal length (mm) in an image file's EXIF, or None if absent/unreadable."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            value = img.getexif().get_ifd(_EXIF_IFD).get(_EXIF_FOCAL_35MM)
    except (OSError, ValueError, SyntaxError):
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) and value > 0 else None


def camera_intrinsics(
    width: int,
    height: int,
    *,
    fov_deg: float | None = None,
    focal_mm: float | None = None,
    pixel_pitch_um: float | None = None,
    preset: str | None = None,
    focal_35mm: float | None = None,
) -> Intrinsics:
    """Intrinsics of a ``width`` x ``height`` photo from the first of (see module docstring):
    ``fov_deg``; ``focal_mm`` + ``pixel_pitch_um`` (either may come from ``preset``);
    ``preset``; ``focal_35mm`` (EXIF). :class:`InputError` if none applies or they conflict."""
    if fov_deg is not None:
        if focal_mm is not None or pixel_pitch_um is not None:
            raise InputError("--fov-deg: give either the field of view or --focal-mm/--pixel-pitch-um, not both")
        if not (math.isfinite(fov_deg) and 0 < fov_deg < 180):
            raise InputError(f"--fov-deg {fov_deg}: the field of view must be between 0 and 180 degrees")
        f_px = width / 2.0 / math.tan(math.radians(fov_deg) / 2.0)
        return Intrinsics.centred(f_px, width, height, f"horizontal field of view {fov_deg:g} deg")
    if preset is not None or focal_mm is not None or pixel_pitch_um is not None:
        f_m, pitch_m, what = _focal_and_pitch(width, focal_mm, pixel_pitch_um, preset)
        return Intrinsics.centred(f_m / pitch_m, width, height, what)
    if focal_35mm is not None:
        f_px = focal_35mm / FULL_FRAME_DIAGONAL_MM * math.hypot(width, height)
        return Intrinsics.centred(f_px, width, height, f"EXIF 35 mm-equivalent focal length {focal_35mm:g} mm")
    raise InputError(
        "the point cloud needs the camera's intrinsics: give --fov-deg DEG (horizontal field of view), "
        "or --focal-mm MM with --pixel-pitch-um UM, or --preset NAME (the photo has no EXIF 35 mm focal length)"
    )


def _focal_and_pitch(width: int, focal_mm: float | None, pitch_um: float | None, preset: str | None) -> tuple[float, float, str]:
    """(focal length m, pixel pitch m, description) from options, completed by a preset's camera."""
    for name, value in (("--focal-mm", focal_mm), ("--pixel-pitch-um", pitch_um)):
        if value is not None and not (math.isfinite(value) and value > 0):
            raise InputError(f"{name} {value}: must be a number > 0")
    f_m = focal_mm * 1e-3 if focal_mm is not None else None
    pitch_m = pitch_um * 1e-6 if pitch_um is not None else None
    if preset is not None and (f_m is None or pitch_m is None):
        import torch

        from .optics import get_preset

        p = get_preset(preset)
        if p.camera is None:
            raise InputError(f"--preset {preset}: draws a random camera per scene; give --fov-deg or --focal-mm and --pixel-pitch-um")
        camera = p.camera_for(torch.zeros(1, width))
        f_m = f_m if f_m is not None else camera.focal_length_m
        pitch_m = pitch_m if pitch_m is not None else camera.pixel_pitch_m
    if f_m is None or pitch_m is None:
        missing = "--pixel-pitch-um" if pitch_m is None else "--focal-mm"
        raise InputError(f"{missing} is needed too (or --preset NAME for the other value, or --fov-deg instead)")
    what = f"focal length {f_m * 1e3:g} mm, pixel pitch {pitch_m * 1e6:.4g} um" + (f" (preset {preset})" if preset else "")
    return f_m, pitch_m, what


def depth_to_points(depth_m: np.ndarray, intrinsics: Intrinsics, step: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Back-project ``(H, W)`` depth (metres) to points.

    Returns ``(points, mask)``: ``points`` ``(N, 3)`` float32 metres (x right, y down, z
    forward), one per valid pixel (finite, > 0) of every ``step``-th row and column, in
    row-major order; ``mask`` ``(H, W)`` bool, the pixels used. The depth's size must be the
    intrinsics' ``(height, width)``.
    """
    d = np.asarray(depth_m, dtype=np.float32)
    if d.shape != (intrinsics.height, intrinsics.width):
        raise InputError(f"depth is {d.shape[1]}x{d.shape[0]}, intrinsics are for {intrinsics.width}x{intrinsics.height}")
    if step < 1:
        raise InputError(f"point step must be >= 1, got {step}")
    mask = np.zeros(d.shape, dtype=bool)
    mask[::step, ::step] = True
    mask &= np.isfinite(d) & (d > 0)
    v, u = np.nonzero(mask)
    z = d[v, u].astype(np.float64)
    x = (u - intrinsics.cx_px) * z / intrinsics.fx_px
    y = (v - intrinsics.cy_px) * z / intrinsics.fy_px
    return np.stack([x, y, z], axis=1).astype(np.float32), mask


def write_ply(path: str | os.PathLike, points: np.ndarray, colors: np.ndarray, comments: tuple[str, ...] = ()) -> Path:
    """Write ``(N, 3)`` float32 points (metres) and ``(N, 3)`` uint8 RGB colours as a binary
    little-endian PLY at ``path``, atomically. Returns the path."""
    from .io import atomic_write

    points = np.asarray(points, dtype=np.float32).reshape(-1, 3)
    colors = np.asarray(colors, dtype=np.uint8).reshape(-1, 3)
    if len(points) != len(colors):
        raise ValueError(f"{len(points)} points but {len(colors)} colours")
    vertex = np.empty(len(points), dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"),
                                         ("red", "u1"), ("green", "u1"), ("blue", "u1")])
    vertex["x"], vertex["y"], vertex["z"] = points.T
    vertex["red"], vertex["green"], vertex["blue"] = colors.T
    lines = ["ply", "format binary_little_endian 1.0", *(f"comment {c}" for c in comments),
             f"element vertex {len(points)}", *(f"property float {a}" for a in "xyz"),
             *(f"property uchar {c}" for c in ("red", "green", "blue")), "end_header"]
    header = ("\n".join(lines) + "\n").encode("ascii")
    path = Path(path)
    with atomic_write(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(header)
            fh.write(vertex.tobytes())
    return path


def save_point_cloud(
    path: str | os.PathLike, depth_m: np.ndarray, rgb: np.ndarray | None, intrinsics: Intrinsics, step: int = 1,
) -> int:
    """Write the coloured point cloud of ``(H, W)`` depth (metres) and ``(H, W, 3)`` colours
    (float in [0, 1] or uint8; None: grey) as a PLY at ``path``; returns the number of points."""
    points, mask = depth_to_points(depth_m, intrinsics, step)
    if rgb is None:
        colors = np.full((len(points), 3), 128, np.uint8)
    else:
        rgb = np.asarray(rgb)
        if rgb.shape[:2] != mask.shape:
            raise InputError(f"colours are {rgb.shape[1]}x{rgb.shape[0]}, depth is {mask.shape[1]}x{mask.shape[0]}")
        rgb = rgb if rgb.dtype == np.uint8 else np.round(np.clip(rgb, 0.0, 1.0) * 255.0).astype(np.uint8)
        colors = rgb[mask]
    i = intrinsics
    comments = (
        "twohded point cloud: x right, y down, z forward (camera frame), metres",
        f"intrinsics fx={i.fx_px:.6g} fy={i.fy_px:.6g} cx={i.cx_px:.6g} cy={i.cy_px:.6g} px, image {i.width}x{i.height}",
        f"focal length from {i.source}",
    )
    write_ply(path, points, colors, comments)
    return len(points)

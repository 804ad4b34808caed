"""Calibration triplets: a real defocused photo, a sharp photo of the same scene, its depth.

A :class:`Triplet` holds the three, ready for comparison: the sharp photo registered onto the
defocused one (:mod:`twohded.registration`: phase correlation, then an affine Gauss-Newton
fit with exposure gain), the depth median-filtered (the sensors' isolated wrong pixels at
object edges) and in the defocused photo's frame (or registered with the sharp photo).

Sources:

* a folder (:func:`folder_triplets`), matched by file stem::

      ROOT/defocused/<stem>.png   the real defocused photo (the camera to calibrate)
      ROOT/aif/<stem>.png         the sharp photo (small aperture); rgb/ is used if aif/ is absent
      ROOT/depth/<stem>.png       depth: 16-bit PNG in millimetres, or .npy in metres

  (the layout of :class:`twohded.data.RGBDFolder` with real defocus);
* the DFD indoor dataset (:func:`dfd_triplets`): f/2.8 photo, f/8 photo, depth.

:func:`holdout_split` picks the held-out triplets: ``n`` evenly spaced ones of the sorted list.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from scipy import ndimage as ndi

from ..data.base import report_unmatched
from ..errors import InputError
from ..io import DEPTH_SUFFIXES, IMAGE_SUFFIXES, describe_invalid_depth, fill_invalid_depth, read_depth, read_image
from ..registration import register_affine, warp

__all__ = ["Triplet", "TripletFiles", "load_triplet", "folder_files", "dfd_files", "load_triplets",
           "folder_triplets", "dfd_triplets", "holdout_split"]


@dataclass
class Triplet:
    """One scene ready for comparison.

    ``sharp``: (3, H, W) float64 in [0, 1], the sharp photo in the defocused photo's frame;
    ``real``: (3, H, W) float64, the real defocused photo; ``depth``: (H, W) float64 metres,
    in the real image's frame; ``border``: pixels ignored on each side; ``shift``: sharp ->
    defocused shift at the centre (rows, cols), px; ``raw_depth``: the depth before filtering.
    """

    name: str
    sharp: np.ndarray
    real: np.ndarray
    depth: np.ndarray
    border: int = 24
    shift: tuple[float, float] = (0.0, 0.0)
    raw_depth: np.ndarray | None = None

    @property
    def inner(self) -> tuple[slice, slice]:
        """Rows and columns inside the border."""
        b = self.border
        return slice(b, self.real.shape[1] - b), slice(b, self.real.shape[2] - b)

    @property
    def r2(self) -> np.ndarray:
        """Squared distance from the centre, 1 at the corners, (H, W)."""
        h, w = self.real.shape[1:]
        yy, xx = np.mgrid[0:h, 0:w]
        return ((yy - (h - 1) / 2) ** 2 + (xx - (w - 1) / 2) ** 2) / (((h - 1) / 2) ** 2 + ((w - 1) / 2) ** 2)


@dataclass(frozen=True)
class TripletFiles:
    """The files of one triplet: real defocused photo, sharp photo, depth."""

    name: str
    defocused: Path
    sharp: Path
    depth: Path


def load_triplet(files: TripletFiles, border: int = 24, depth_frame: str = "defocused", median: int = 5,
                 register: bool = True, depth_scale_m: float = 1e-3) -> Triplet:
    """Read one triplet, register its sharp photo onto the defocused one, filter its depth.

    Args:
        depth_frame: ``"defocused"`` (the depth is registered to the defocused photo) or
            ``"sharp"`` (to the sharp one: it is warped with it).
        median: median filter size for the depth (1: none).
        register: False if the photos are already aligned.
        depth_scale_m: metres per unit of a 16-bit depth PNG.
    """
    if depth_frame not in ("defocused", "sharp"):
        raise InputError(f"depth_frame must be 'defocused' or 'sharp', got {depth_frame!r}")
    real = read_image(files.defocused).double().numpy()
    sharp = read_image(files.sharp).double().numpy()
    depth_t = read_depth(files.depth, png_scale_m=depth_scale_m)
    for path, shape in ((files.sharp, sharp.shape[1:]), (files.depth, tuple(depth_t.shape))):
        if tuple(shape) != real.shape[1:]:
            raise InputError(f"{path}: size {shape[1]}x{shape[0]} does not match {files.defocused} "
                             f"({real.shape[2]}x{real.shape[1]}, W x H)")
    if describe_invalid_depth(depth_t) is not None:
        depth_t = fill_invalid_depth(depth_t, name=str(files.depth))
    raw_depth = depth = depth_t.double().numpy()
    h, w = real.shape[1:]
    if 2 * border >= min(h, w):
        raise InputError(f"{files.defocused}: image {w}x{h} is too small for a {border} px border")
    shift = (0.0, 0.0)
    if register:
        affine = register_affine(sharp.mean(0), real.mean(0), margin=min(32, min(h, w) // 8))
        sharp = warp(sharp, affine)
        shift = affine.shift_at(((h - 1) / 2, (w - 1) / 2))
    if median > 1:
        depth = ndi.median_filter(depth, median)
    if register and depth_frame == "sharp":
        depth = warp(depth[None], affine, order=0)[0]
        raw_depth = warp(raw_depth[None], affine, order=0)[0]
    return Triplet(files.name, sharp, real, depth, border, shift, raw_depth)


def _index(folder: Path, suffixes: tuple[str, ...]) -> dict[str, Path]:
    return {p.stem: p for p in sorted(folder.iterdir()) if p.is_file() and p.suffix.lower() in suffixes
            and not p.name.startswith(".")}


def folder_files(root) -> list[TripletFiles]:
    """The triplets of a folder (``defocused/``, ``aif/`` or ``rgb/``, ``depth/``; module docstring)."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: triplet folder does not exist")
    sharp_dir = root / "aif" if (root / "aif").is_dir() else root / "rgb"
    for d in (root / "defocused", sharp_dir, root / "depth"):
        if not d.is_dir():
            raise InputError(f"{root}: no {d.name}/ folder (expected defocused/, aif/ (or rgb/) and depth/)")
    defocused, sharp = _index(root / "defocused", IMAGE_SUFFIXES), _index(sharp_dir, IMAGE_SUFFIXES)
    depth = _index(root / "depth", DEPTH_SUFFIXES)
    stems = sorted(set(defocused) & set(sharp) & set(depth))
    if not stems:
        raise InputError(f"{root}: no stem has a file in each of defocused/, {sharp_dir.name}/ and depth/")
    lonely = sorted(f"{d}/{files[s].name}" for d, files in (("defocused", defocused), (sharp_dir.name, sharp), ("depth", depth))
                    for s in files if s not in stems)
    report_unmatched(f"triplet folder {root}", lonely, "no file with the same stem in each folder")
    return [TripletFiles(s, defocused[s], sharp[s], depth[s]) for s in stems]


def dfd_files(root, split: str = "train", limit: int | None = None) -> list[TripletFiles]:
    """DFD indoor triplets (f/2.8 photo, f/8 photo, depth) of ``split``; ``limit``: that many
    evenly spaced scenes (``np.linspace(0, n - 1, limit)`` rounded)."""
    from ..data import DFDIndoor

    ds = DFDIndoor(root, split)
    n = len(ds.names)
    idx = range(n) if limit is None else np.linspace(0, n - 1, min(limit, n)).round().astype(int)
    return [TripletFiles(Path(ds.wide_paths[i]).stem, Path(ds.wide_paths[i]), Path(ds.narrow_paths[i]),
                         Path(ds.depth_paths[i])) for i in idx]


def load_triplets(files: Sequence[TripletFiles], **kwargs) -> list[Triplet]:
    """:func:`load_triplet` for each (``kwargs`` passed on)."""
    return [load_triplet(f, **kwargs) for f in files]


def folder_triplets(root, **kwargs) -> list[Triplet]:
    """All triplets of a folder, loaded (``kwargs``: :func:`load_triplet`)."""
    return load_triplets(folder_files(root), **kwargs)


def dfd_triplets(root, split: str = "train", limit: int | None = None, **kwargs) -> list[Triplet]:
    """DFD indoor triplets, loaded (``kwargs``: :func:`load_triplet`)."""
    return load_triplets(dfd_files(root, split, limit), **kwargs)


def holdout_split(items: Sequence, n: int) -> tuple[list, list]:
    """``(fitted, held_out)``: ``n`` evenly spaced items (positions ``floor((i + 0.5) len / n)``,
    ``i < n``) are held out, the rest fitted. ``n`` must leave at least one to fit."""
    if n < 0 or n >= len(items):
        raise InputError(f"cannot hold out {n} of {len(items)} triplets (at least one must be fitted)")
    held = {int((i + 0.5) * len(items) / n) for i in range(n)} if n else set()
    return [x for i, x in enumerate(items) if i not in held], [x for i, x in enumerate(items) if i in held]


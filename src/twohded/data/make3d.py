"""Make3D (Saxena et al. 2009): Train400 / Test134 JPEGs with laser depth grids.

Files (as the official tarballs extract)::

    Train400Img/img-<stem>.jpg                 400 photos, 1704 x 2272 (W x H, portrait)
    Train400Depth/depth_sph_corr-<stem>.mat    Position3DGrid, 55 x 305 x 4 (double)
    Test134/img-<stem>.jpg                     134 photos
    Gridlaserdata/depth_sph_corr-<stem>.mat    (Test134Depth.tar.gz; also found as Test134Depth/)

Images and depths are paired by ``<stem>``; a file without a partner is reported once and
skipped. Channel 4 of ``Position3DGrid`` (``[..., 3]``) is the depth in metres (the laser's
range; about 81.9 m where it got no return, e.g. the sky).

Mapping the grid onto the image, as the field's standard Make3D evaluation does (Saxena's
code with ``VertYNuDepth = 55, HoriXNuDepth = 305``; Liu et al. 2015/2016 and Laina et al.
2016; Godard et al. 2017 / monodepth2):

- orientation: the grid's first axis (55) runs down the image rows, the second (305) across
  the columns, no transposition or flip; the grid spans the whole photo. Samples are thus
  anisotropic: about 41 image rows but only 5.6 image columns per grid cell at full size.
- resampling: the grid is mapped onto the working image grid by **nearest** neighbour (pixel
  centres), never interpolated across depth edges.
- working resolution ``base_size`` (default 460 x 345, H x W): the image is reduced to it
  (antialiased) and the depth grid resampled to it, the resolution of Liu et al. and Laina
  et al.; ``base_size=None`` keeps 2272 x 1704.
- aspect-ratio crop (``crop_ratio``, default None = full frame): ``crop_ratio=2`` is Godard et
  al.'s protocol: keep the central band of ``1 / (1.33333 * 2)`` of the rows of both the photo
  (852 of 2272 rows) and the grid (rows 17:38, 21 of 55), so the photo becomes 2:1 (W:H).

Evaluation masks: C1 counts pixels with ground truth below 70 m, C2 below 80 m
(:func:`c1_mask`, :func:`c2_mask`). ``mask`` in the items is ``0 < depth < max_depth_m``
(default 80 m: C2, which also drops the no-return value). For evaluation at the laser grid's
own resolution, :meth:`Make3D.depth_grid` returns the native (cropped) grid.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageFile, UnidentifiedImageError

from ..errors import InputError
from ..io import pil_to_float_rgb
from .base import DatasetOption, DefocusDataset, FrameInfo, report_unmatched
from .transforms import resize_image, resize_nearest

IMAGE_PREFIX = "img-"
DEPTH_PREFIX = "depth_sph_corr-"
GRID_SHAPE = (55, 305)
C1_MAX_M = 70.0
C2_MAX_M = 80.0
BASE_SIZE = (460, 345)

#: folder names searched under the root for each split: (image folders, depth folders)
SPLIT_DIRS = {
    "train": (("Train400Img", "Train400Image", "train/images", "train/img"),
              ("Train400Depth", "train/depth", "train/depths")),
    "test": (("Test134", "Test134Img", "test/images", "test/img"),
             ("Gridlaserdata", "Test134Depth", "test/depth", "test/depths")),
}


def c1_mask(depth_m: torch.Tensor) -> torch.Tensor:
    """Make3D C1 evaluation mask: valid ground truth below 70 m."""
    return torch.isfinite(depth_m) & (depth_m > 0) & (depth_m < C1_MAX_M)


def c2_mask(depth_m: torch.Tensor) -> torch.Tensor:
    """Make3D C2 evaluation mask: valid ground truth below 80 m."""
    return torch.isfinite(depth_m) & (depth_m > 0) & (depth_m < C2_MAX_M)


def crop_band(n: int, crop_ratio: float | None) -> tuple[int, int]:
    """Rows ``(top, bottom)`` kept by Godard et al.'s central crop of an ``n``-row array:
    ``round(n / (1.33333 * crop_ratio))`` central rows (2272 -> 710:1562, 55 -> 17:38)."""
    if crop_ratio is None:
        return 0, n
    if not crop_ratio > 0:
        raise InputError(f"crop_ratio must be > 0 (2 = Godard et al.), got {crop_ratio!r}")
    keep = min(n, max(1, round(n / (1.33333 * crop_ratio))))
    top = (n - keep) // 2
    return top, top + keep


def load_depth_grid(path: str | os.PathLike) -> np.ndarray:
    """``depth_sph_corr-*.mat`` -> ``(55, 305)`` float32 depth in metres (``Position3DGrid[..., 3]``)."""
    from scipy.io import loadmat

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: Make3D depth file does not exist")
    try:
        mat = loadmat(str(path))
    except Exception as exc:
        raise InputError(f"{path}: cannot read Make3D depth .mat: {exc}") from None
    if "Position3DGrid" not in mat:
        keys = ", ".join(k for k in mat if not k.startswith("__")) or "none"
        raise InputError(f"{path}: no 'Position3DGrid' in this .mat (found: {keys})")
    grid = np.asarray(mat["Position3DGrid"])
    if grid.ndim != 3 or grid.shape[2] < 4:
        raise InputError(f"{path}: Position3DGrid is {grid.shape}, expected (55, 305, 4)")
    return np.ascontiguousarray(grid[:, :, 3], dtype=np.float32)


def read_photo(path: Path, reduce_to: tuple[int, int] | None, allow_truncated: bool) -> torch.Tensor:
    """A Make3D JPEG as ``(3, H, W)`` [0, 1]; ``reduce_to`` lets the JPEG decoder shrink it by
    a power of two while staying at least twice that size (the final resize antialiases)."""
    if not path.is_file():
        raise InputError(f"{path}: Make3D image does not exist")
    old = ImageFile.LOAD_TRUNCATED_IMAGES
    try:
        ImageFile.LOAD_TRUNCATED_IMAGES = bool(allow_truncated)
        img = Image.open(path)
        if reduce_to is not None:
            img.draft("RGB", (2 * reduce_to[1], 2 * reduce_to[0]))
        img.load()
    except UnidentifiedImageError:
        raise InputError(f"{path}: cannot read image: not an image format PIL recognises") from None
    except (OSError, SyntaxError, ValueError) as exc:
        hint = " (pass allow_truncated=True to decode what is there)" if "truncated" in str(exc).lower() else ""
        raise InputError(f"{path}: cannot read image: {exc}{hint}") from None
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = old
    arr = pil_to_float_rgb(img)
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))


def _find_dir(root: Path, candidates: tuple[str, ...], pattern: str) -> Path | None:
    for name in candidates:
        for base in (root, *sorted(p for p in root.iterdir() if p.is_dir())):
            d = base / name
            if d.is_dir() and any(d.glob(pattern)):
                return d
    return None


def _stem(path: Path, prefix: str) -> str:
    name = path.stem
    return name[len(prefix):] if name.startswith(prefix) else name


class Make3D(DefocusDataset):
    """Make3D photos and laser depth, defocus rendered from the photo.

    Args:
        root: folder holding ``Train400Img/``, ``Train400Depth/``, ``Test134/`` and
            ``Gridlaserdata/`` (or ``Test134Depth/``), possibly one level down.
        split: ``"train"`` (Train400) or ``"test"`` (Test134).
        base_size: working ``(H, W)`` the photo and grid are mapped to before the common
            geometry (default 460 x 345; None for the full 2272 x 1704).
        crop_ratio: None (full frame) or Godard et al.'s width:height ratio (2.0).
        max_depth_m: ``mask`` keeps ``depth < max_depth_m`` (80 m = C2).
        allow_truncated: decode truncated JPEGs as far as they go (one Test134 file is).
        **common: see :class:`~twohded.data.base.DefocusDataset`.
    """

    defocus_modes = ("render", "deferred")
    dataset_name = "make3d"
    prepare_options = (
        DatasetOption("crop_ratio", "make3d: central band of width:height ratio (2 = Godard et al.'s protocol; "
                      "default full frame)", type=float),
        DatasetOption("allow_truncated", "make3d: decode truncated JPEGs as far as they go"),
    )

    def __init__(
        self,
        root,
        split: str = "train",
        *,
        base_size: tuple[int, int] | None = BASE_SIZE,
        crop_ratio: float | None = None,
        max_depth_m: float = C2_MAX_M,
        allow_truncated: bool = False,
        **common,
    ) -> None:
        common.setdefault("preset", "d3net_nyu")
        super().__init__(split, **common)
        root = Path(root)
        if not root.is_dir():
            raise InputError(f"{root}: Make3D root folder does not exist")
        if split not in SPLIT_DIRS:
            raise InputError(f"Make3D split {split!r}: choose train or test")
        image_dirs, depth_dirs = SPLIT_DIRS[split]
        image_dir = _find_dir(root, image_dirs, f"{IMAGE_PREFIX}*.jpg")
        depth_dir = _find_dir(root, depth_dirs, f"{DEPTH_PREFIX}*.mat")
        if image_dir is None or depth_dir is None:
            missing = "images" if image_dir is None else "depth .mat files"
            wanted = image_dirs if image_dir is None else depth_dirs
            raise InputError(
                f"{root}: no Make3D {split} {missing} found (looked for {' or '.join(wanted)} holding "
                f"{IMAGE_PREFIX if image_dir is None else DEPTH_PREFIX}*)"
            )
        images = {_stem(p, IMAGE_PREFIX): p for p in image_dir.glob(f"{IMAGE_PREFIX}*.jpg")}
        depths = {_stem(p, DEPTH_PREFIX): p for p in depth_dir.glob(f"{DEPTH_PREFIX}*.mat")}
        stems = sorted(set(images) & set(depths))
        report_unmatched(f"Make3D {split} ({root})", sorted(
            [images[s].name for s in set(images) - set(depths)] + [depths[s].name for s in set(depths) - set(images)]
        ), "image without depth .mat or depth without image")
        if not stems:
            raise InputError(f"{root}: no Make3D {split} image has a matching depth file")
        self.root = root
        self.image_paths = [images[s] for s in stems]
        self.depth_paths = [depths[s] for s in stems]
        self.names = stems
        self.base_size = tuple(base_size) if base_size is not None else None
        self.crop_ratio = crop_ratio
        self.max_depth_m = float(max_depth_m)
        self.allow_truncated = allow_truncated

    def frame_info(self) -> FrameInfo:
        """Adds, for whole frames, the native frames (same split and options)."""
        info = super().frame_info()
        if not info.full_frame:
            return info
        return replace(info, native=(type(self), self.root, self.split, {
            "base_size": self.base_size, "crop_ratio": self.crop_ratio, "allow_truncated": self.allow_truncated,
            "max_depth_m": self.max_depth_m,
        }))

    def depth_grid(self, index: int) -> torch.Tensor:
        """The native laser depth of item ``index``: ``(1, rows, 305)`` metres, cropped by ``crop_ratio``."""
        grid = load_depth_grid(self.depth_paths[index])
        top, bottom = crop_band(grid.shape[0], self.crop_ratio)
        return torch.from_numpy(grid[top:bottom].copy())[None]

    def _load(self, index: int) -> dict:
        path = self.image_paths[index]
        photo = read_photo(path, self.base_size, self.allow_truncated)
        top, bottom = crop_band(photo.shape[1], self.crop_ratio)
        photo = photo[:, top:bottom]
        if self.base_size is not None:
            band_top, band_bottom = crop_band(self.base_size[0], self.crop_ratio)
            size = (band_bottom - band_top, self.base_size[1])
            photo = resize_image(photo, size)
        depth = resize_nearest(self.depth_grid(index), tuple(photo.shape[-2:]))
        mask = torch.isfinite(depth) & (depth > 0) & (depth < self.max_depth_m)
        return {
            "aif": photo,
            "depth": depth,
            "mask": mask,
            "source": f"{path} + {self.depth_paths[index].name}",
            "pixel_scale": 1.0,
        }


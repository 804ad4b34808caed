"""NYU Depth v2, labeled subset (``nyu_depth_v2_labeled.mat``), read lazily with h5py.

The official file (about 2.8 GB) is a MATLAB v7.3 file, i.e. HDF5. MATLAB stores arrays
column-major, so h5py sees every array with its axes reversed:

=========  ===================  ==========================  ===================
key        MATLAB size          h5py shape                  twohded
=========  ===================  ==========================  ===================
images     480x640x3x1449 u8    (1449, 3, 640, 480) uint8   (3, 480, 640) / 255
depths     480x640x1449 single  (1449, 640, 480) float32    (1, 480, 640) metres
rawDepths  480x640x1449 single  (1449, 640, 480) float32    idem, 0 = no reading
=========  ===================  ==========================  ===================

so frame ``i`` is ``images[i].transpose(0, 2, 1)``. ``depths`` is the inpainted (dense) depth;
``rawDepths`` (``depth_key="rawDepths"``) keeps the Kinect holes as invalid pixels.

Splits: the official ``splits.mat`` (``trainNdxs`` 795 and ``testNdxs`` 654 frames, 1-based),
shipped in the package (:func:`official_split`).

Border: the labeled frames were registered (depth projected into the RGB camera) and
undistorted, which leaves an invalid margin, white in the RGB images, along the frame
border. The NYU toolbox's ``get_projection_mask.m`` marks the valid region as MATLAB rows
45:471, columns 41:601, i.e. 0-based ``[44:471, 40:601]``, 427 x 561 pixels (the "561x427"
of the literature). ``border=`` chooses what to do with it:

- ``"crop"`` (default): crop every frame to that region before anything else;
- ``"mask"``: keep the 640x480 frame, ``mask`` is False outside that region;
- ``"none"``: keep everything.

Evaluation uses the Eigen crop (Eigen et al. 2014 code, ``[45:471, 41:601]`` on the 640x480
frame, 426 x 560): :data:`EIGEN_CROP` and :func:`eigen_crop_mask`. It is one pixel inside the
projection region, so on ``border="crop"`` frames :func:`eigen_crop_mask` with
``frame="projection"`` is the whole frame but its first row and column.
"""

from __future__ import annotations

import importlib.resources
import math
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError
from ..extras import require
from .base import DatasetOption, DefocusDataset, FrameInfo

FILE_NAME = "nyu_depth_v2_labeled.mat"
FRAME_HW = (480, 640)
#: valid (projected) region of a 640x480 frame, 0-based end-exclusive (top, bottom, left, right)
PROJECTION_CROP = (44, 471, 40, 601)
#: Eigen et al.'s evaluation crop on a 640x480 frame, 0-based end-exclusive (top, bottom, left, right)
EIGEN_CROP = (45, 471, 41, 601)
BORDERS = ("crop", "mask", "none")
DEPTH_KEYS = ("depths", "rawDepths")


def official_split(splits_file: str | os.PathLike | None = None) -> dict[str, np.ndarray]:
    """The official split as 0-based frame indices: ``{"train": (795,), "test": (654,)}``.

    Reads ``splits_file`` (MATLAB 5 ``.mat`` with 1-based ``trainNdxs`` / ``testNdxs``), by
    default the copy shipped in ``twohded/resources/nyu_splits.mat``.
    """
    from scipy.io import loadmat

    try:
        if splits_file is None:
            ref = importlib.resources.files("twohded.resources").joinpath("nyu_splits.mat")
            with importlib.resources.as_file(ref) as path:
                mat = loadmat(str(path))
            name = "twohded/resources/nyu_splits.mat"
        else:
            name = str(splits_file)
            if not Path(splits_file).is_file():
                raise InputError(f"{name}: NYU split file does not exist")
            mat = loadmat(name)
    except InputError:
        raise
    except Exception as exc:  # scipy raises several types for a bad file
        raise InputError(f"{splits_file}: cannot read NYU split file: {exc}") from None
    out = {}
    for split, key in (("train", "trainNdxs"), ("test", "testNdxs")):
        if key not in mat:
            raise InputError(f"{name}: NYU split file has no {key!r} (expected trainNdxs and testNdxs)")
        idx = np.asarray(mat[key]).astype(np.int64).ravel()
        if idx.size and idx.min() < 1:
            raise InputError(f"{name}: {key} must be 1-based MATLAB indices, found {idx.min()}")
        out[split] = idx - 1
    return out


def eigen_crop_mask(height: int = 480, width: int = 640, frame: str = "full") -> torch.Tensor:
    """``(1, H, W)`` bool mask of the Eigen evaluation crop, scaled to an ``H x W`` image.

    Args:
        height, width: size of the image the mask is for.
        frame: what that image shows: ``"full"`` (the 640x480 frame, resized) or
            ``"projection"`` (the ``border="crop"`` 561x427 region, resized).
    """
    top, bottom, left, right = EIGEN_CROP
    if frame == "projection":
        pt, _, pl, _ = PROJECTION_CROP
        top, bottom, left, right = top - pt, bottom - pt, left - pl, right - pl
        ref_h, ref_w = PROJECTION_CROP[1] - pt, PROJECTION_CROP[3] - pl
    elif frame == "full":
        ref_h, ref_w = FRAME_HW
    else:
        raise InputError(f"frame={frame!r}: use 'full' or 'projection'")
    mask = torch.zeros(1, height, width, dtype=torch.bool)
    sy, sx = height / ref_h, width / ref_w

    def first(edge: float, scale: float) -> int:  # first pixel whose centre lies at or past the edge
        return max(0, math.ceil(edge * scale - 0.5))

    mask[:, first(top, sy) : first(bottom, sy), first(left, sx) : first(right, sx)] = True
    return mask


def find_labeled_file(root: str | os.PathLike) -> Path:
    """``root`` is the ``.mat`` file or a folder holding ``nyu_depth_v2_labeled.mat``."""
    root = Path(root)
    if not root.exists():
        raise InputError(f"{root}: NYU root does not exist (give the path of {FILE_NAME} or its folder)")
    if root.is_dir():
        path = root / FILE_NAME
        if not path.is_file():
            raise InputError(f"{root}: no {FILE_NAME} in this folder (download it from the NYU Depth v2 page)")
        return path
    return root


class NYUv2(DefocusDataset):
    """NYU Depth v2 labeled frames with rendered defocus.

    Args:
        root: ``nyu_depth_v2_labeled.mat`` or its folder.
        split: ``"train"`` (795), ``"test"`` (654) or ``"all"`` (1449), official split.
        border: ``"crop"``, ``"mask"`` or ``"none"`` (see module docstring).
        depth_key: ``"depths"`` (dense, default) or ``"rawDepths"``.
        splits_file: another split ``.mat`` (default: the official one shipped in the package).
        **common: see :class:`~twohded.data.base.DefocusDataset` (``defocus`` is ``"render"``
            or ``"deferred"``; NYU has no real defocus).

    Item names are the 1-based MATLAB frame numbers, ``"0001"`` ... ``"1449"``.
    """

    defocus_modes = ("render", "deferred")
    dataset_name = "nyu"
    prepare_options = (
        DatasetOption("border", "nyu: crop the registration border to the 561x427 valid region (default), mask it, "
                      "or keep it", choices=BORDERS),
        DatasetOption("depth_key", "nyu: dense or raw depth", choices=DEPTH_KEYS),
    )

    def __init__(
        self,
        root,
        split: str = "train",
        *,
        border: str = "crop",
        depth_key: str = "depths",
        splits_file=None,
        **common,
    ) -> None:
        common.setdefault("preset", "d3net_nyu")
        super().__init__(split, **common)
        if border not in BORDERS:
            raise InputError(f"border={border!r}: choose one of {', '.join(BORDERS)}")
        if depth_key not in DEPTH_KEYS:
            raise InputError(f"depth_key={depth_key!r}: choose one of {', '.join(DEPTH_KEYS)}")
        self.path = find_labeled_file(root)
        self.border = border
        self.depth_key = depth_key
        n, frame_wh = self._inspect()
        self.frame_hw = (frame_wh[1], frame_wh[0])
        if border != "none" and self.frame_hw != FRAME_HW:
            raise InputError(
                f"{self.path}: frames are {frame_wh[0]}x{frame_wh[1]}, not 640x480; use border='none'"
            )
        if split == "all":
            indices = np.arange(n)
        elif split in ("train", "test"):
            indices = official_split(splits_file)[split]
        else:
            raise InputError(f"NYUv2 split {split!r}: choose train, test or all")
        if indices.size and indices.max() >= n:
            raise InputError(
                f"{splits_file or 'official NYU split'}: index {int(indices.max()) + 1} is beyond the "
                f"{n} frames of {self.path}"
            )
        self.indices = indices
        self.names = [f"{i + 1:04d}" for i in indices]
        self._h5 = None
        self._pid = None

    def frame_info(self) -> FrameInfo:
        """Adds NYU's border and, for whole frames, the native frames (split ``all``: every
        frame, matched by name, since the items may come from another split file)."""
        info = super().frame_info()
        native = (type(self), self.path, "all", {"border": self.border, "depth_key": self.depth_key})
        return replace(info, border=self.border, native=native if info.full_frame else None)

    def _inspect(self) -> tuple[int, tuple[int, int]]:
        h5py = require("h5py", "data", "reading NYU Depth v2 (nyu_depth_v2_labeled.mat)")

        try:
            with h5py.File(self.path, "r") as f:
                for key in ("images", self.depth_key):
                    if key not in f:
                        raise InputError(
                            f"{self.path}: no {key!r} array; this is not the NYU Depth v2 labeled file "
                            f"(found: {', '.join(sorted(f.keys())[:12])})"
                        )
                images, depths = f["images"], f[self.depth_key]
                if images.ndim != 4 or images.shape[1] != 3 or images.dtype != np.uint8:
                    raise InputError(
                        f"{self.path}: 'images' is {images.shape} {images.dtype}, expected "
                        "(N, 3, 640, 480) uint8 (MATLAB 480x640x3xN)"
                    )
                if depths.shape != (images.shape[0], *images.shape[2:]):
                    raise InputError(
                        f"{self.path}: {self.depth_key!r} is {depths.shape}, expected {(images.shape[0], *images.shape[2:])}"
                    )
                return int(images.shape[0]), (int(images.shape[2]), int(images.shape[3]))
        except InputError:
            raise
        except OSError as exc:
            raise InputError(
                f"{self.path}: cannot open as HDF5 (MATLAB v7.3): {exc}; is the download complete?"
            ) from None

    def _file(self):
        """The HDF5 handle of this process (opened on first use, again after a fork)."""
        h5py = require("h5py", "data", "reading NYU Depth v2 (nyu_depth_v2_labeled.mat)")

        if self._h5 is None or self._pid != os.getpid():
            self._h5 = h5py.File(self.path, "r")
            self._pid = os.getpid()
        return self._h5

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_h5"] = None
        state["_pid"] = None
        return state

    def read_frame(self, frame: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Frame ``frame`` (0-based index into the file) as ``(3, 480, 640)`` [0, 1] and ``(1, 480, 640)`` metres."""
        f = self._file()
        try:
            image = np.asarray(f["images"][frame]).transpose(0, 2, 1)
            depth = np.asarray(f[self.depth_key][frame], dtype=np.float32).T
        except OSError as exc:
            raise InputError(f"{self.path}: cannot read frame {frame + 1}: {exc}") from None
        img = torch.from_numpy(np.ascontiguousarray(image)).float().div_(255.0)
        return img, torch.from_numpy(np.ascontiguousarray(depth))[None]

    def _load(self, index: int) -> dict:
        frame = int(self.indices[index])
        aif, depth = self.read_frame(frame)
        raw = {"aif": aif, "depth": depth, "source": f"{self.path} frame {frame + 1}"}
        top, bottom, left, right = PROJECTION_CROP
        if self.border == "crop":
            raw["aif"] = aif[:, top:bottom, left:right]
            raw["depth"] = depth[:, top:bottom, left:right]
        elif self.border == "mask":
            mask = torch.zeros_like(depth, dtype=torch.bool)
            mask[:, top:bottom, left:right] = True
            raw["mask"] = mask
        return raw

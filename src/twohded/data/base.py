"""The common item pipeline of every twohded dataset.

``__getitem__(i)`` = load the raw frame (subclass) -> check depth -> geometry (resize / crop /
flip, :mod:`~twohded.data.transforms`) -> defocus (real, rendered now, or deferred to the
training loop, :mod:`~twohded.data.defocus`).

Every item is a dict:

- ``image``  ``(3, H, W)`` float in [0, 1]: the defocused input (in ``"deferred"`` mode: the
  all-in-focus image, to be replaced by :func:`~twohded.data.defocus.render_batch`);
- ``depth``  ``(1, H, W)`` float metres (0 where there is no reading; a dataset may also mask
  out pixels that keep their depth, e.g. Make3D beyond 80 m: always use ``mask``);
- ``aif``    ``(3, H, W)`` float in [0, 1]: the sharp target;
- ``mask``   ``(1, H, W)`` bool: valid depth;
- ``name``   str.

``"deferred"`` items also carry ``render_depth`` (``(1, H, W)`` depth with invalid pixels
filled), ``render_seed`` (int64) and ``pixel_scale`` (float64): only per-item tensors. What is
the same for every item (camera, renderer mode, blur placement) is the dataset's
:attr:`DefocusDataset.render_spec`, which :func:`~twohded.data.defocus.render_batch` takes.

Determinism: random crops, flips and random cameras come from
``numpy.random.default_rng([seed, epoch, index])``, so an item does not depend on the worker
that loads it nor on the loading order. Call :meth:`DefocusDataset.set_epoch` to vary them
between epochs. No file handle is opened in ``__init__`` (safe with DataLoader workers).
"""

from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch.utils.data import Dataset, Subset

from ..errors import InputError
from ..io import valid_depth_mask
from ..options import check_options, keyword_names
from ..render_spec import RenderSpec
from . import defocus as _defocus
from .transforms import Geometry, apply_geometry

log = logging.getLogger("twohded.data")

TRAIN_SPLITS = ("train", "trainval")


@dataclass(frozen=True)
class FrameInfo:
    """What a dataset's items show (for the evaluation's regions and ground truth).

    Attributes:
        dataset: the dataset's name (``"nyu"``, ... ; a cache: its source's), or None.
        full_frame: items show the whole frame (resized or not), not crops of it.
        resized: frames were resampled to the item size.
        border: NYU's border handling (``"crop"``, ``"mask"``, ``"none"``), else None.
        native: ``(cls, root, split, options)``: the same frames at native resolution, matched
            by item name (None: not available).
        max_depth_m: the far end of the dataset's depth range, metres, when it has one (synthetic).
    """

    dataset: str | None = None
    full_frame: bool = True
    resized: bool = False
    border: str | None = None
    native: tuple | None = None
    max_depth_m: float | None = None

    def native_dataset(self) -> "DefocusDataset | None":
        """The native-resolution dataset (unaugmented, unflipped), or None."""
        if self.native is None:
            return None
        cls, root, split, opts = self.native
        return cls(root, split, defocus="deferred", augment=False, flip=False, **opts)


@dataclass(frozen=True)
class DatasetOption:
    """A dataset-specific constructor option that ``twohded prepare`` exposes (``--name``).

    Its default is the constructor's (read from the signature, so it is stated once).
    ``type``: argparse type (None with a bool default: an on/off flag); ``choices``: allowed values.
    """

    name: str
    help: str
    type: Any = None
    choices: tuple | None = None


def is_train_split(split: str) -> bool:
    """Training splits (augmented by default): ``train``, ``trainval`` and ``<name>-train``
    (e.g. DFD's cross-validation ``cv0-train``)."""
    return split in TRAIN_SPLITS or split.endswith("-train")


class DefocusDataset(Dataset):
    """Base class: subclasses implement ``__len__``, :meth:`_load` and set :attr:`names`.

    Args:
        split: split name (each dataset documents its own).
        defocus: ``"real"``, ``"render"`` or ``"deferred"`` (what the dataset supports).
        preset: renderer preset name, :class:`~twohded.optics.Preset`,
            :class:`~twohded.optics.Camera` or :class:`~twohded.render_spec.RenderSpec`
            (needed to render).
        size: output ``(height, width)``, or None for the frame size.
        resize: ``"resize"``, ``"crop"``, ``"fit"`` or ``"none"`` (see :class:`Geometry`).
        flip: random horizontal flips when augmenting.
        augment: random crop position and flips; default: True for training splits.
        seed: base seed of all randomness.
        blur_at: ``"source"`` or ``"output"`` (see :mod:`twohded.data.defocus`); None:
            ``"source"`` (or the given RenderSpec's).
        render_mode: renderer mode (default: the preset's, or the given RenderSpec's).

    Attributes:
        render_spec: the :class:`~twohded.render_spec.RenderSpec` resolved from ``preset``,
            ``render_mode`` and ``blur_at`` when the dataset renders (``"render"`` /
            ``"deferred"``), else None.
        allow_real_resize: permit resizing real defocused images (changes their blur).
    """

    #: defocus modes this dataset supports (subclasses narrow it)
    defocus_modes: tuple[str, ...] = ("render", "deferred")
    #: the name :func:`twohded.data.build_dataset` knows it by
    dataset_name: ClassVar[str | None] = None
    #: the dataset-specific options ``twohded prepare`` exposes
    prepare_options: ClassVar[tuple[DatasetOption, ...]] = ()

    def __init__(
        self,
        split: str,
        *,
        defocus: str = "render",
        preset=None,
        size: tuple[int, int] | None = None,
        resize: str = "resize",
        flip: bool = True,
        augment: bool | None = None,
        seed: int = 0,
        blur_at: str | None = None,
        render_mode=None,
        allow_real_resize: bool = False,
    ) -> None:
        self.split = split
        self.defocus = _defocus.check_mode(defocus, self.defocus_modes)
        self.geometry = Geometry(size=size, resize=resize if size is not None else "none", flip=flip)
        if self.defocus == "real" and self.geometry.resamples and not allow_real_resize:
            raise InputError(
                f"resize={self.geometry.resize!r} would resample the real defocused images (changing "
                "their blur in pixels); use resize='crop' or no size, or pass allow_real_resize=True"
            )
        if blur_at is not None and blur_at not in _defocus.BLUR_AT:
            raise InputError(f"blur_at={blur_at!r}: choose one of {', '.join(_defocus.BLUR_AT)}")
        self.render_spec: RenderSpec | None = None
        if self.defocus in ("render", "deferred"):
            self.render_spec = RenderSpec.resolve(preset, render_mode, blur_at)
        self.augment = is_train_split(split) if augment is None else bool(augment)
        self.seed = int(seed)
        self.epoch = 0
        self.allow_real_resize = allow_real_resize
        self.names: list[str] = []

    # --- subclass interface -------------------------------------------------------------
    def _load(self, index: int) -> dict:
        """Raw frame ``index``: dict with ``aif`` and/or ``defocused`` ``(3, H, W)``, ``depth``
        ``(1, H, W)`` metres, optional ``mask`` ``(1, H, W)`` bool, ``source`` (str naming
        the file(s), for messages) and optional ``pixel_scale`` (float)."""
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self.names)

    # --- what the dataset declares ----------------------------------------------------------
    @classmethod
    def option_names(cls) -> tuple[str, ...]:
        """Every keyword option the constructor accepts (its own and the common ones), sorted."""
        return keyword_names(cls.__init__, DefocusDataset.__init__, skip=("root", "split"))

    @classmethod
    def option_default(cls, name: str):
        """The constructor's default of option ``name``."""
        return inspect.signature(cls.__init__).parameters[name].default

    @classmethod
    def check_options(cls, options, where: str) -> None:
        """:class:`InputError` naming ``where`` if ``options`` holds a name the constructor does not take."""
        check_options(options, cls.option_names(), where, f"dataset {cls.dataset_name or cls.__name__!r}")

    def frame_info(self) -> FrameInfo:
        """What the items show (subclasses add what they know: NYU's border, native frames)."""
        g = self.geometry
        return FrameInfo(dataset=self.dataset_name, full_frame=g.resize in ("resize", "none"),
                         resized=g.size is not None and g.resize == "resize")

    # --- public -------------------------------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        """Change the random crops / flips / cameras drawn for every item."""
        self.epoch = int(epoch)

    def rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch, int(index)])

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {type(self).__name__} of length {len(self)}")
        raw = self._load(index)
        source = raw.pop("source", self.names[index])
        raw = self._check(raw, source)
        rng = self.rng(index)
        sample = apply_geometry(
            raw, self.geometry, rng if self.augment else None, source=source,
            allow_real_resize=self.allow_real_resize,
        )
        render_seed = int(rng.integers(0, 2**31 - 1))
        return self._finish(sample, index, render_seed, source)

    # --- helpers ------------------------------------------------------------------------
    def _check(self, raw: dict, source: str) -> dict:
        depth = raw["depth"]
        if depth.dim() == 2:
            depth = depth[None]
        depth = depth.float()
        valid = valid_depth_mask(depth)
        mask = valid & raw["mask"].bool() if "mask" in raw else valid
        if not bool(mask.any()):
            raise InputError(f"{source}: depth has no valid pixel (all zero, NaN or masked out)")
        hw = tuple(depth.shape[-2:])
        for key in ("aif", "defocused"):
            if key in raw and tuple(raw[key].shape[-2:]) != hw:
                w, h = raw[key].shape[-1], raw[key].shape[-2]
                raise InputError(f"{source}: {key} image is {w}x{h} but depth is {hw[1]}x{hw[0]} (WxH)")
        # invalid readings become 0; depths a dataset only masks out (NYU border, Make3D
        # beyond 80 m) are kept, so that the renderer sees them
        raw["depth"] = torch.where(valid, depth, torch.zeros_like(depth))
        raw["mask"] = mask
        raw.setdefault("pixel_scale", 1.0)
        if self.defocus == "real":
            if "defocused" not in raw:
                raise InputError(f"{source}: no real defocused image for defocus='real'")
            raw.setdefault("aif", raw["defocused"])
        else:
            raw.pop("defocused", None)
        return raw

    def _finish(self, sample: dict, index: int, render_seed: int, source: str) -> dict:
        aif = sample["aif"].contiguous()
        depth = sample["depth"].contiguous()
        item = {"aif": aif, "depth": depth, "mask": sample["mask"].contiguous(), "name": self.names[index]}
        if self.defocus == "real":
            item["image"] = sample["defocused"].contiguous()
        elif self.defocus == "render":
            filled = _defocus.filled_depth(depth, source)[None]
            images, _ = self.render_spec.render(aif[None], filled, [render_seed], [sample["pixel_scale"]])
            item["image"] = images[0]
        elif self.defocus == "none":  # the all-in-focus image itself is the input
            item["image"] = aif.clone()
        else:  # deferred
            item["image"] = aif
            item["render_depth"] = _defocus.filled_depth(depth, source)
            item["render_seed"] = torch.tensor(render_seed, dtype=torch.int64)
            item["pixel_scale"] = torch.tensor(float(sample["pixel_scale"]), dtype=torch.float64)
        first = ("image", "depth", "aif", "mask", "name")
        return {**{k: item[k] for k in first}, **{k: v for k, v in item.items() if k not in first}}

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(split={self.split!r}, n={len(self)}, defocus={self.defocus!r}, "
            f"render={self.render_spec.describe() if self.render_spec is not None else None!r}, "
            f"geometry={self.geometry})"
        )


def base_dataset(dataset: Dataset) -> Dataset:
    """The dataset under any :class:`torch.utils.data.Subset` wrappers."""
    while isinstance(dataset, Subset):
        dataset = dataset.dataset
    return dataset


def render_spec_of(dataset: Dataset) -> RenderSpec | None:
    """The :class:`~twohded.render_spec.RenderSpec` of a twohded dataset (through Subsets);
    None for a dataset that does not render (real or cached defocus, or not a twohded dataset)."""
    base = base_dataset(dataset)
    return base.render_spec if isinstance(base, DefocusDataset) else None


def report_unmatched(what: str, files: list[str], reason: str) -> None:
    """Log, once, the files that were skipped because they have no partner."""
    if files:
        shown = ", ".join(files[:20]) + (f", ... ({len(files) - 20} more)" if len(files) > 20 else "")
        log.warning("%s: skipping %d unmatched file(s) (%s): %s", what, len(files), reason, shown)

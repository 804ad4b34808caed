"""Joint geometric transforms of a sample: resize / crop / horizontal flip.

A *sample* here is a dict of tensors for one frame, all on the same pixel grid:

- ``aif``        ``(3, H, W)`` float in [0, 1], the sharp image (optional);
- ``defocused``  ``(3, H, W)`` float in [0, 1], a real defocused photo (optional);
- ``depth``      ``(1, H, W)`` float metres (invalid pixels allowed: 0, NaN, inf);
- ``mask``       ``(1, H, W)`` bool, valid depth;
- ``pixel_scale`` float, output pixels per *source* pixel along the width (resizes multiply
  it, crops and flips leave it alone). The renderer uses it to keep the blur's meaning
  (see :mod:`twohded.data.defocus`).

Images are resampled with antialiased bilinear interpolation. Depth and mask are resampled
with **nearest neighbour** (pixel centres), so an output depth is always one of the input
depths: nothing is ever averaged across an occlusion edge, and a pixel is valid in the output
exactly when the input pixel it copies is valid.

A real defocused image must not be resized (its blur is measured in pixels): see
:class:`Geometry` and :func:`apply_geometry`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError

#: Resize policies understood by :class:`Geometry`.
RESIZE_POLICIES = ("none", "resize", "crop", "fit")

IMAGE_KEYS = ("aif", "defocused")
NEAREST_KEYS = ("depth", "mask")


@dataclass(frozen=True)
class Geometry:
    """How a frame is brought to the training size.

    Attributes:
        size: output ``(height, width)`` in pixels, or None to keep the frame size.
        resize: ``"resize"`` the whole frame to ``size`` (aspect ratio may change: what the
            2HDED:NET authors' code does, e.g. NYU to 256x256); ``"crop"`` a ``size`` window at
            the native resolution (random when augmenting, centred otherwise); ``"fit"``:
            resize keeping the aspect ratio so that the frame covers ``size``, then crop;
            ``"none"``: leave the frame as it is (``size`` must be None).
        flip: random horizontal flip (probability 1/2) when augmenting.
    """

    size: tuple[int, int] | None = None
    resize: str = "resize"
    flip: bool = True

    def __post_init__(self) -> None:
        if self.resize not in RESIZE_POLICIES:
            raise InputError(f"unknown resize policy {self.resize!r}; choose one of {', '.join(RESIZE_POLICIES)}")
        if self.size is not None:
            size = tuple(int(s) for s in self.size)
            if len(size) != 2 or min(size) < 1:
                raise InputError(f"size must be (height, width) in pixels >= 1, got {self.size!r}")
            object.__setattr__(self, "size", size)
        if self.resize == "none" and self.size is not None:
            raise InputError(f"resize='none' keeps the frame size; drop size={self.size!r} or pick another policy")
        if self.size is None:
            object.__setattr__(self, "resize", "none")

    @property
    def resamples(self) -> bool:
        """True if the policy may change the pixel scale (``resize`` or ``fit``)."""
        return self.resize in ("resize", "fit")


def parse_size(text: str | int | tuple | list | None) -> tuple[int, int] | None:
    """``"256"`` -> (256, 256); ``"640x480"`` (width x height) -> (480, 640); tuples pass through as (H, W)."""
    if text is None:
        return None
    if isinstance(text, int):
        return (text, text)
    if isinstance(text, (tuple, list)):
        if len(text) != 2:
            raise InputError(f"size must be (height, width), got {text!r}")
        return (int(text[0]), int(text[1]))
    parts = str(text).lower().replace(" ", "").split("x")
    try:
        nums = [int(p) for p in parts]
    except ValueError:
        raise InputError(f"--size {text!r}: expected N or WIDTHxHEIGHT, e.g. 256 or 640x480") from None
    if len(nums) == 1:
        nums = nums * 2
    if len(nums) != 2 or min(nums) < 1:
        raise InputError(f"--size {text!r}: expected N or WIDTHxHEIGHT with positive integers")
    width, height = nums
    return (height, width)


# ---------------------------------------------------------------------------------------
# Primitive operations (all keep the (C, H, W) layout)
# ---------------------------------------------------------------------------------------


def resize_image(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``(C, H, W)`` float image -> ``(C, h, w)``, antialiased bilinear, clamped to [0, 1]."""
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    out = F.interpolate(image[None].float(), size=size, mode="bilinear", align_corners=False, antialias=True)[0]
    return out.clamp_(0.0, 1.0)


def nearest_indices(n_in: int, n_out: int) -> torch.Tensor:
    """Source index of each output pixel centre: ``floor((i + 0.5) * n_in / n_out)``."""
    idx = torch.floor((torch.arange(n_out, dtype=torch.float64) + 0.5) * (n_in / n_out)).long()
    return idx.clamp_(0, n_in - 1)


def resize_nearest(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``(C, H, W)`` any dtype -> ``(C, h, w)`` by nearest pixel centre (never averages)."""
    h, w = x.shape[-2:]
    if (h, w) == tuple(size):
        return x
    rows = nearest_indices(h, size[0]).to(x.device)
    cols = nearest_indices(w, size[1]).to(x.device)
    return x[..., rows[:, None], cols[None, :]]


def crop(x: torch.Tensor, top: int, left: int, height: int, width: int) -> torch.Tensor:
    """``x[..., top:top+height, left:left+width]``."""
    return x[..., top : top + height, left : left + width]


# ---------------------------------------------------------------------------------------
# Joint application
# ---------------------------------------------------------------------------------------


def frame_size(sample: dict) -> tuple[int, int]:
    """(H, W) of a sample (from its depth)."""
    return tuple(sample["depth"].shape[-2:])


def resize_sample(sample: dict, size: tuple[int, int]) -> dict:
    """Resize every image (bilinear) and depth/mask (nearest) of ``sample`` to ``size``."""
    h, w = frame_size(sample)
    out = dict(sample)
    for key in IMAGE_KEYS:
        if key in out:
            out[key] = resize_image(out[key], size)
    for key in NEAREST_KEYS:
        if key in out:
            out[key] = resize_nearest(out[key], size)
    out["pixel_scale"] = float(sample.get("pixel_scale", 1.0)) * size[1] / w
    return out


def crop_sample(sample: dict, top: int, left: int, height: int, width: int) -> dict:
    """Crop every tensor of ``sample`` to the same window."""
    out = dict(sample)
    for key in (*IMAGE_KEYS, *NEAREST_KEYS):
        if key in out:
            out[key] = crop(out[key], top, left, height, width)
    return out


def flip_sample(sample: dict) -> dict:
    """Mirror every tensor of ``sample`` left-right."""
    out = dict(sample)
    for key in (*IMAGE_KEYS, *NEAREST_KEYS):
        if key in out:
            out[key] = torch.flip(out[key], dims=[-1])
    return out


def _crop_offsets(h: int, w: int, size: tuple[int, int], rng: np.random.Generator | None) -> tuple[int, int]:
    th, tw = size
    if rng is None:
        return (h - th) // 2, (w - tw) // 2
    return int(rng.integers(0, h - th + 1)), int(rng.integers(0, w - tw + 1))


def apply_geometry(
    sample: dict,
    geometry: Geometry,
    rng: np.random.Generator | None = None,
    *,
    source: str = "sample",
    allow_real_resize: bool = False,
) -> dict:
    """Bring ``sample`` to ``geometry.size`` and flip it.

    Args:
        sample: see the module docstring.
        geometry: the policy.
        rng: random generator when augmenting (random crop position, random flip); None for
            deterministic evaluation (centred crop, no flip).
        source: names the sample in error messages (a file path).
        allow_real_resize: permit resizing a sample that holds a real ``defocused`` image.
            Off by default: resizing a real defocused photo changes its blur in pixels.

    Raises:
        InputError: the frame is smaller than a crop, or a real defocused image would be resized.
    """
    h, w = frame_size(sample)
    size = geometry.size
    policy = geometry.resize
    if policy != "none":
        assert size is not None
        if policy == "fit":
            scale = max(size[0] / h, size[1] / w)
            new = (max(size[0], round(h * scale)), max(size[1], round(w * scale)))
            sample = _checked_resize(sample, new, source, allow_real_resize)
        elif policy == "resize":
            sample = _checked_resize(sample, size, source, allow_real_resize)
        h, w = frame_size(sample)
        if policy in ("crop", "fit") and (h, w) != tuple(size):
            if h < size[0] or w < size[1]:
                raise InputError(
                    f"{source}: frame {w}x{h} (WxH) is smaller than the crop {size[1]}x{size[0]}; "
                    "use a smaller --size or resize='fit'"
                )
            top, left = _crop_offsets(h, w, size, rng)
            sample = crop_sample(sample, top, left, size[0], size[1])
    if geometry.flip and rng is not None and bool(rng.integers(0, 2)):
        sample = flip_sample(sample)
    return sample


def _checked_resize(sample: dict, size: tuple[int, int], source: str, allow_real_resize: bool) -> dict:
    if "defocused" in sample and tuple(size) != frame_size(sample) and not allow_real_resize:
        h, w = frame_size(sample)
        raise InputError(
            f"{source}: refusing to resize a real defocused image from {w}x{h} to {size[1]}x{size[0]} "
            "(it would change the blur in pixels); use resize='crop' or 'none', or opt in with "
            "allow_real_resize=True"
        )
    return resize_sample(sample, size)

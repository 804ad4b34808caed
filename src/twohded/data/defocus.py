"""How a dataset item gets its defocused input image.

Modes (``defocus=`` of every dataset):

``"real"``
    The dataset's own defocused photo (DFD indoor f/2.8, an RGB-D folder's ``defocused/``).
    Only cropped and flipped, never resized (see :mod:`twohded.data.transforms`).
``"render"``
    Rendered on the CPU inside ``__getitem__`` from the (already resized / cropped / flipped)
    all-in-focus image and depth, with :func:`twohded.render_defocus`.
``"deferred"``
    ``__getitem__`` returns the all-in-focus image in ``image`` plus what the renderer needs
    (``render_depth``, ``render_seed``, ``pixel_scale``); the training loop calls
    :func:`render_batch` on the collated batch, on the GPU.
``"cache"``
    Read from a ``twohded prepare`` cache: :class:`twohded.data.cache.PreparedDataset`.

The blur is always rendered at the **final** pixel grid: frames are resized first, then
rendered; a defocused image is never resized afterwards. With ``blur_at="source"`` (default)
the camera's pixel pitch is multiplied by ``1 / pixel_scale`` (source pixels per output pixel,
along the width), so that the blur relative to the scene is what the camera would produce on
the dataset's source frame, i.e. what rendering at the native resolution and then resizing
(as D3-Net and the paper do) would give, minus the resampling of the blurred image. With
``blur_at="output"`` the preset is applied to the output grid as it is.
"""

from __future__ import annotations

from typing import Sequence

import torch

from ..errors import InputError
from ..io import fill_invalid_depth

DEFOCUS_MODES = ("real", "render", "deferred", "none")
BLUR_AT = ("source", "output")


def check_mode(defocus: str, allowed: Sequence[str] = DEFOCUS_MODES) -> str:
    if defocus not in allowed:
        raise InputError(f"defocus={defocus!r} is not available here; choose one of {', '.join(allowed)}")
    return defocus


def resolve_preset(preset):
    """A preset name, :class:`~twohded.optics.Preset` or :class:`~twohded.optics.Camera` -> Preset or Camera."""
    from ..optics import Camera, Preset, get_preset

    if isinstance(preset, (Camera, Preset)):
        return preset
    if preset is None:
        raise InputError("rendering defocus needs a camera preset (e.g. preset='d3net_nyu')")
    return get_preset(str(preset))


def preset_name(preset) -> str:
    """A printable name for a preset or camera."""
    return preset if isinstance(preset, str) else getattr(preset, "name", repr(preset))


def cameras_for(preset, depth_m: torch.Tensor, seeds: Sequence[int], pixel_scales: Sequence[float], blur_at: str = "source"):
    """One :class:`~twohded.optics.Camera` per image.

    Args:
        preset: preset name, Preset or Camera.
        depth_m: ``(B, 1, H, W)`` metres, valid everywhere (random presets pick a focus from it).
        seeds: per-image seeds (random presets such as ``syndof`` draw their camera from them).
        pixel_scales: output pixels per source pixel, per image.
        blur_at: ``"source"`` scales the pixel pitch by ``1 / pixel_scale``; ``"output"`` does not.
            A width-relative preset (``paper``, ``syndof``: the sensor spans the frame) already
            gives the output image the blur of the source image resized, so it is not scaled again.
    """
    from ..optics import Camera, Preset

    spec = resolve_preset(preset)
    if blur_at not in BLUR_AT:
        raise InputError(f"blur_at={blur_at!r}: choose one of {', '.join(BLUR_AT)}")
    cams = []
    for b in range(depth_m.shape[0]):
        cam = spec if isinstance(spec, Camera) else spec.camera_for(depth_m[b], int(seeds[b]))
        scale = float(pixel_scales[b])
        width_relative = isinstance(spec, Preset) and spec.width_relative
        if blur_at == "source" and scale != 1.0 and not width_relative:
            cam = cam.with_(pixel_pitch_m=cam.pixel_pitch_m / scale)
        cams.append(cam)
    return cams


def render_mode_for(preset, mode=None):
    """The render mode to use with a list of cameras: ``mode`` or the preset's default."""
    from ..optics import Preset

    if mode is not None:
        return mode
    spec = resolve_preset(preset)
    return spec.default_mode if isinstance(spec, Preset) else "default"


def render_images(aif: torch.Tensor, depth_m: torch.Tensor, cameras, mode) -> torch.Tensor:
    """``(B, 3, H, W)`` aif and ``(B, 1, H, W)`` valid depth -> defocused ``(B, 3, H, W)`` in [0, 1]."""
    from .. import render_defocus

    out = render_defocus(aif, depth_m, list(cameras), mode=mode)
    return out.clamp_(0.0, 1.0)


def filled_depth(depth: torch.Tensor, source: str) -> torch.Tensor:
    """``(1, H, W)`` depth with invalid pixels replaced by the nearest valid depth (for rendering)."""
    return fill_invalid_depth(depth[0], name=source)[None]


def render_sample(aif, depth_filled, preset, seed: int, pixel_scale: float, blur_at: str = "source", mode=None):
    """Render one ``(3, H, W)`` image from ``(1, H, W)`` valid depth; returns ``(image, camera)``."""
    depth_b = depth_filled[None]
    cams = cameras_for(preset, depth_b, [seed], [pixel_scale], blur_at)
    image = render_images(aif[None], depth_b, cams, render_mode_for(preset, mode))[0]
    return image, cams[0]


def render_batch(batch: dict, preset=None, device=None, *, blur_at: str | None = None, mode=None, return_cameras: bool = False):
    """Render a collated ``"deferred"`` batch (on ``device``, e.g. the GPU).

    Args:
        batch: a DataLoader batch. If it holds ``render_depth`` (deferred items), ``image`` is
            replaced by the rendering of ``aif``; otherwise (real or cached defocus) the batch is
            only moved to ``device``.
        preset: preset name / Preset / Camera; default: the one the dataset was built with
            (carried by the batch as ``preset``).
        device: where to render and put the tensors (None: leave them where they are).
        blur_at: override the dataset's ``blur_at`` (carried in the batch).
        mode: render mode (default: the preset's).
        return_cameras: also return the list of cameras used (None for non-deferred batches).

    Returns:
        A new dict: every tensor moved to ``device``, ``image`` rendered, ``render_*`` kept.
    """
    out = {k: (v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) and device is not None else v)
           for k, v in batch.items()}
    cams = None
    if "render_depth" in out:
        if preset is None:
            names = out.get("preset")
            preset = names[0] if isinstance(names, (list, tuple)) else names
        if blur_at is None:
            values = out.get("blur_at", "source")
            blur_at = values[0] if isinstance(values, (list, tuple)) else values
        depth = out["render_depth"]
        seeds = out["render_seed"].tolist()
        scales = out["pixel_scale"].tolist()
        cams = cameras_for(preset, depth, seeds, scales, blur_at)
        out["image"] = render_images(out["aif"], depth, cams, render_mode_for(preset, mode))
    return (out, cams) if return_cameras else out


def blur_stats(cameras, depth_m: torch.Tensor, mask: torch.Tensor) -> list[tuple[float, float]]:
    """Per image (min, max) Gaussian sigma in pixels over the valid depth pixels."""
    stats = []
    for b, cam in enumerate(cameras):
        d = depth_m[b][mask[b]]
        if d.numel() == 0:
            stats.append((float("nan"), float("nan")))
            continue
        s = cam.sigma_px(d.double())
        stats.append((float(s.min()), float(s.max())))
    return stats

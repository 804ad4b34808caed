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
    :func:`render_batch` with the dataset's ``render_spec`` on the collated batch, on the GPU.
``"cache"``
    Read from a ``twohded prepare`` cache: :class:`twohded.data.cache.PreparedDataset`.

The blur is always rendered at the **final** pixel grid: frames are resized first, then
rendered; a defocused image is never resized afterwards. With ``blur_at="source"`` (default)
the camera's pixel pitch is multiplied by ``1 / pixel_scale`` (source pixels per output pixel,
along the width), so that the blur relative to the scene is what the camera would produce on
the dataset's source frame, i.e. what rendering at the native resolution and then resizing
(as D3-Net and the paper do) would give, minus the resampling of the blurred image. With
``blur_at="output"`` the preset is applied to the output grid as it is. The camera, the
renderer mode and ``blur_at`` form the dataset's :class:`~twohded.render_spec.RenderSpec`.
"""

from __future__ import annotations

from typing import Sequence

import torch

from ..errors import InputError
from ..io import fill_invalid_depth
from ..render_spec import BLUR_AT, RenderSpec

DEFOCUS_MODES = ("real", "render", "deferred", "none")
__all__ = ["BLUR_AT", "DEFOCUS_MODES", "RenderSpec", "blur_stats", "check_mode", "filled_depth", "render_batch"]


def check_mode(defocus: str, allowed: Sequence[str] = DEFOCUS_MODES) -> str:
    if defocus not in allowed:
        raise InputError(f"defocus={defocus!r} is not available here; choose one of {', '.join(allowed)}")
    return defocus


def filled_depth(depth: torch.Tensor, source: str) -> torch.Tensor:
    """``(1, H, W)`` depth with invalid pixels replaced by the nearest valid depth (for rendering)."""
    return fill_invalid_depth(depth[0], name=source)[None]


def render_batch(batch: dict, spec: RenderSpec | None = None, device=None, *, return_cameras: bool = False):
    """Render a collated ``"deferred"`` batch (on ``device``, e.g. the GPU).

    Args:
        batch: a DataLoader batch. If it holds ``render_depth`` (deferred items), ``image`` is
            replaced by the rendering of ``aif``; otherwise (real or cached defocus) the batch is
            only moved to ``device``.
        spec: the dataset's :class:`~twohded.render_spec.RenderSpec` (``dataset.render_spec``);
            needed for a deferred batch.
        device: where to render and put the tensors (None: leave them where they are).
        return_cameras: also return the list of cameras used (None for non-deferred batches).

    Returns:
        A new dict: every tensor moved to ``device``, ``image`` rendered, ``render_*`` kept.
    """
    out = {k: (v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) and device is not None else v)
           for k, v in batch.items()}
    cams = None
    if "render_depth" in out:
        if spec is None:
            raise InputError("a deferred batch needs its dataset's render specification (dataset.render_spec)")
        out["image"], cams = spec.render(out["aif"], out["render_depth"], out["render_seed"].tolist(),
                                         out["pixel_scale"].tolist())
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

"""Layered, occlusion-aware defocus rendering from an all-in-focus image and metric depth.

The scene is cut into depth layers. Each layer ``k`` has a coverage mask ``A_k`` and one
Gaussian PSF ``g_k`` (its sigma from the thin-lens camera at the layer's depth). Layers are
composited from near to far, each one seen through what the nearer layers leave uncovered:

    out = sum_k  (g_k * (A_k I)) . T_k,     T_k = prod_{j<k} (1 - g_k * A_j)   [with g_j]

so a nearer layer hides the farther ones (the background never leaks through an in-focus
foreground) and a farther layer's blur never smears over a nearer, sharp one.

Two modes (:func:`render_defocus`, ``mode=``):

``"d3net"`` (:class:`D3NetMode`)
    Reproduces D3-Net's MATLAB ``refoc_image`` (Carvalho et al. 2018) to float32 rounding:
    layer edges ``min(depth)-0.5 : 10/255 : max(depth)+0.5`` m, sigma at the layer midpoint,
    21x21 Gaussian (``fspecial``, sigma + 1e-4), each layer mask dilated by MATLAB's
    ``strel('disk', 4)`` (a 7x7 octagon), zero padding, no normalisation. Its artefacts are
    kept on purpose: borders get darker, large blurs are truncated to 21x21.

``"default"`` (:class:`DefaultMode`)
    The same physics without those artefacts: layers on a grid of equal blur steps
    (``sigma_step_px``; blur is linear in inverse depth), Gaussian kernels of radius
    ``ceil(truncate * sigma)`` (not cut at 21x21), reflect padding, and normalised compositing
    (divided by the accumulated coverage), so a constant image stays constant and a
    fronto-parallel plane is exactly one Gaussian blur.

Both are batched torch code (CPU or CUDA), deterministic, linear in the image, and process
layers in chunks so that memory stays bounded for any number of layers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence, Union

import torch
import torch.nn.functional as F

from .errors import InputError
from .io import describe_invalid_depth
from .optics import Camera, Preset, get_preset

#: MATLAB's ``strel('disk', 4)`` (default n = 4 periodic-line approximation): a 7x7 octagon,
#: 37 pixels, row widths 3, 5, 7, 7, 7, 5, 3. It is the union of three centred rectangles.
OCTAGON_7X7_RECTS = ((3, 7), (5, 5), (7, 3))  # (height, width)


@dataclass(frozen=True)
class D3NetMode:
    """D3-Net ``refoc_image`` compatibility (see module docstring).

    Attributes:
        layer_step_m: depth layer thickness, metres (D3-Net: 10/255).
        margin_m: the layer grid spans ``[min - margin, max + margin]`` metres (D3-Net: 0.5).
        kernel_size: PSF window, pixels (D3-Net: 21).
        sigma_offset_px: added to sigma before building the kernel (D3-Net: 1e-4).
        dilate: dilate each layer mask by the 7x7 octagon (D3-Net: True).
    """

    layer_step_m: float = 10.0 / 255.0
    margin_m: float = 0.5
    kernel_size: int = 21
    sigma_offset_px: float = 1e-4
    dilate: bool = True
    name: str = "d3net"


@dataclass(frozen=True)
class DefaultMode:
    """twohded's physically cleaner renderer (see module docstring).

    Attributes:
        sigma_step_px: blur difference between neighbouring layers, pixels, for small blur:
            layers sit on the grid ``sigma = k * sigma_step_px`` on each side of the focus plane.
        sigma_rel_step: above ``sigma_step_px / sigma_rel_step`` (5 px by default) the step
            grows with the blur, to this fraction of it (a 0.25 px difference at sigma 50 px
            is invisible; this keeps large blurs to tens of layers, not hundreds).
        truncate: kernel radius in units of sigma (``ceil(truncate * sigma)``), so that the
            kernel is never cut short.
        dilate: dilate layer masks by the 7x7 octagon as D3-Net does (off: normalisation
            already removes the dark seams that the dilation was there to hide).
    """

    sigma_step_px: float = 0.25
    sigma_rel_step: float = 0.05
    truncate: float = 3.0
    dilate: bool = False
    name: str = "default"


Mode = Union[D3NetMode, DefaultMode]
MODES = {"d3net": D3NetMode(), "default": DefaultMode()}

#: Layers processed at once, by device type (memory grows as chunk * (C + 1) * tiled area).
DEFAULT_CHUNK = {"cpu": 8, "cuda": 16}
#: Upper bound on the elements of one chunk's (layers x channels x pixels) stack, so that memory
#: stays bounded (a few GB) whatever the batch, tile and chunk sizes.
MAX_CHUNK_ELEMENTS = 2**27
#: Tile size in pixels: each tile draws only the layers it contains (see _composite_tiled).
DEFAULT_TILE = 64
#: Layers per bounding box in the CPU's per-layer-box path (small = tight boxes).
BOX_CHUNK = 2


def resolve_mode(mode: str | Mode | None, preset: Preset | None) -> Mode:
    if mode is None:
        mode = preset.default_mode if preset is not None else "default"
    if isinstance(mode, (D3NetMode, DefaultMode)):
        return mode
    try:
        return MODES[mode]
    except KeyError:
        raise InputError(f"unknown render mode {mode!r}; choose one of {', '.join(MODES)}") from None


# ---------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------


def render_defocus(
    image: torch.Tensor,
    depth_m: torch.Tensor,
    camera_or_preset: Camera | Preset | str | Sequence[Camera],
    mode: str | Mode | None = None,
    *,
    seed: int | None = None,
    chunk: int | None = None,
    tile: int | None = None,
    backend: str = "torch",
) -> torch.Tensor:
    """Render the defocused image of an all-in-focus image with metric depth.

    Args:
        image: ``(B, 3, H, W)`` or ``(3, H, W)`` float, any value range (the output is linear
            in it and keeps its range). Any number of channels C works.
        depth_m: ``(B, 1, H, W)``, ``(1, H, W)`` or ``(H, W)`` depth in metres, finite and > 0.
        camera_or_preset: a :class:`~twohded.optics.Camera`, a list of B cameras (one per
            image), a :class:`~twohded.optics.Preset`, or a preset name (``"d3net_nyu"``,
            ``"paper"``, ``"syndof"``).
        mode: ``"d3net"``, ``"default"``, a mode dataclass, or None for the preset's default
            (``"default"`` for a bare camera).
        seed: for presets that draw a random camera per image (``syndof``): image ``b`` uses
            ``seed + b``.
        chunk: number of layers processed at once (a memory/speed trade-off with no effect
            on the result); None picks :data:`DEFAULT_CHUNK` for the device.
        tile: tile size in pixels (no effect on the result); None = :data:`DEFAULT_TILE`.
        backend: ``"torch"`` (default) or ``"triton"``: the fused Triton kernels of
            :mod:`twohded.render_triton` for each chunk of layers (CUDA tensors, or the CPU
            with ``TRITON_INTERPRET=1``; same result to float32 rounding).

    Returns:
        The defocused image, same shape, dtype and device as ``image``.
    """
    if not isinstance(image, torch.Tensor) or not isinstance(depth_m, torch.Tensor):
        raise InputError("render_defocus: image and depth_m must be torch tensors")
    squeeze = image.dim() == 3
    img = image.unsqueeze(0) if squeeze else image
    if img.dim() != 4:
        raise InputError(f"render_defocus: image must be (B, 3, H, W) or (3, H, W), got {tuple(image.shape)}")
    depth = _as_b1hw(depth_m, img.shape[0])
    if depth.shape[-2:] != img.shape[-2:]:
        raise InputError(
            f"render_defocus: depth size {tuple(depth.shape[-2:])} does not match image size "
            f"{tuple(img.shape[-2:])}"
        )
    problem = describe_invalid_depth(depth)
    if problem is not None:
        raise InputError(f"render_defocus: {problem} (fill or mask invalid depth first)")
    if not img.is_floating_point():
        raise InputError(f"render_defocus: image must be a float tensor, got {img.dtype}")

    preset = get_preset(camera_or_preset) if isinstance(camera_or_preset, str) else None
    if isinstance(camera_or_preset, Preset):
        preset = camera_or_preset
    render_mode = resolve_mode(mode, preset)
    compositor = chunk_compositor(backend, img.device)
    cameras = _cameras_for_batch(camera_or_preset, preset, depth, seed)

    work = img.float()
    chunk = chunk or DEFAULT_CHUNK.get(work.device.type, 16)
    render = _render_d3net if isinstance(render_mode, D3NetMode) else _render_default
    out = render(work, depth, cameras, render_mode, chunk, tile or DEFAULT_TILE, compositor)
    out = out.to(image.dtype)
    return out.squeeze(0) if squeeze else out


BACKENDS = ("torch", "triton")


def chunk_compositor(backend: str, device):
    """The function that composites one chunk of layers for ``backend`` (``"torch"`` or
    ``"triton"``), with the signature of :func:`_composite_chunk` (zero padding)."""
    if backend == "torch":
        return _composite_chunk
    if backend != "triton":
        raise InputError(f"unknown render backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    from . import render_triton  # optional dependency, imported only on request

    render_triton.check_available(device)

    def composite(image, masks, taps, transmit, padding, dilate, inside=None):
        return render_triton.composite_chunk(image, masks, taps, transmit, dilate, inside)

    return composite


def _as_b1hw(depth: torch.Tensor, batch: int) -> torch.Tensor:
    if depth.dim() == 2:
        depth = depth[None, None]
    elif depth.dim() == 3:
        depth = depth.unsqueeze(1) if depth.shape[0] == batch and batch > 1 else depth.unsqueeze(0)
    if depth.dim() != 4 or depth.shape[1] != 1:
        raise InputError(f"render_defocus: depth must be (B, 1, H, W) or (H, W), got {tuple(depth.shape)}")
    if depth.shape[0] == 1 and batch > 1:
        depth = depth.expand(batch, -1, -1, -1)
    if depth.shape[0] != batch:
        raise InputError(f"render_defocus: depth batch {depth.shape[0]} does not match image batch {batch}")
    return depth


def _cameras_for_batch(spec, preset: Preset | None, depth: torch.Tensor, seed: int | None) -> list[Camera]:
    batch = depth.shape[0]
    if isinstance(spec, Camera):
        return [spec] * batch
    if preset is not None:
        return [preset.camera_for(depth[b], None if seed is None else seed + b) for b in range(batch)]
    cams = list(spec)
    if len(cams) != batch or not all(isinstance(c, Camera) for c in cams):
        raise InputError(f"render_defocus: expected a Camera, a preset name or {batch} cameras")
    return cams


# ---------------------------------------------------------------------------------------
# Building blocks
# ---------------------------------------------------------------------------------------


def gaussian_taps(
    sigma_px: torch.Tensor, radius: int, matlab_eps: bool = False, truncate: float | None = None
) -> torch.Tensor:
    """Normalised 1-D Gaussian taps, ``(N, 2 * radius + 1)`` for ``(N,)`` sigmas in pixels.

    A sigma of 0 gives a delta. With ``truncate``, each kernel is cut at its own radius
    ``ceil(truncate * sigma)`` (zeros beyond, so the result does not depend on ``radius``).
    With ``matlab_eps``, taps whose 2-D product would fall below ``eps * max`` are zeroed, as
    MATLAB's ``fspecial('gaussian')`` does (a < 1e-12 change, kept for exactness).
    """
    x = torch.arange(-radius, radius + 1, device=sigma_px.device, dtype=torch.float64)
    s = sigma_px.double().clamp_min(1e-12)[:, None]
    g = torch.exp(-(x[None, :] ** 2) / (2 * s * s))
    if truncate is not None:
        g = torch.where(x[None, :].abs() <= torch.ceil(truncate * s), g, torch.zeros_like(g))
    if matlab_eps:
        g = torch.where(g < torch.finfo(torch.float64).eps, torch.zeros_like(g), g)
    return g / g.sum(dim=1, keepdim=True)


def separable_blur(x: torch.Tensor, taps: torch.Tensor, padding: str) -> torch.Tensor:
    """Blur every channel of ``x`` ``(N, C, H, W)`` with its own separable kernel.

    ``taps`` is ``(C, K)`` (K odd, same for every channel). ``padding`` is ``"zeros"``
    (MATLAB ``conv2(..., 'same')``) or ``"reflect"``.
    """
    c, k = taps.shape
    r = k // 2
    if r == 0:
        return x * taps[:, :1].view(1, c, 1, 1).to(x.dtype)
    w = taps.to(x.dtype)
    if padding == "zeros":
        y = F.conv2d(x, w.view(c, 1, 1, k), padding=(0, r), groups=c)
        return F.conv2d(y, w.view(c, 1, k, 1), padding=(r, 0), groups=c)
    y = F.pad(x, (r, r, 0, 0), mode="reflect")
    y = F.conv2d(y, w.view(c, 1, 1, k), groups=c)
    y = F.pad(y, (0, 0, r, r), mode="reflect")
    return F.conv2d(y, w.view(c, 1, k, 1), groups=c)


def dilate_octagon(mask: torch.Tensor) -> torch.Tensor:
    """Binary dilation of ``(..., H, W)`` bool masks by MATLAB's ``strel('disk', 4)`` octagon.

    Pixels outside the image count as 0 (as ``imdilate`` does for dilation). The octagon is
    the union of horizontal runs of width 7, 5, 3 over rows 0, +-1..2, +-3, computed with
    shifted maxima (much faster than max-pooling on the CPU).
    """
    h, w = mask.shape[-2:]
    p = F.pad(mask, (3, 3, 3, 3))
    r3 = p[..., :, 2 : 2 + w] | p[..., :, 3 : 3 + w] | p[..., :, 4 : 4 + w]
    r5 = r3 | p[..., :, 1 : 1 + w] | p[..., :, 5 : 5 + w]
    r7 = r5 | p[..., :, 0:w] | p[..., :, 6 : 6 + w]
    out = r7[..., 2 : 2 + h, :] | r7[..., 3 : 3 + h, :] | r7[..., 4 : 4 + h, :]
    out = out | r5[..., 1 : 1 + h, :] | r5[..., 5 : 5 + h, :]
    return out | r3[..., 0:h, :] | r3[..., 6 : 6 + h, :]


def _composite_chunk(
    image: torch.Tensor,
    masks: torch.Tensor,
    taps: torch.Tensor,
    transmit: torch.Tensor,
    padding: str,
    dilate: bool,
    inside: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Composite one chunk of layers, near to far.

    Args:
        image: ``(B, C, H, W)``.
        masks: ``(B, L, H, W)`` bool layer masks, nearest first.
        taps: ``(B, L, K)`` 1-D Gaussian taps per layer.
        transmit: ``(B, 1, H, W)`` transmittance left by all nearer layers.
        inside: ``(B, 1, H, W)`` bool, pixels of the real image (dilation is cut outside).

    Returns:
        colour ``(B, C, H, W)`` and coverage ``(B, 1, H, W)`` added by the chunk, and the
        transmittance behind it.
    """
    b, l, h, w = masks.shape
    c = image.shape[1]
    if dilate:
        masks = dilate_octagon(masks)
        if inside is not None:
            masks = masks & inside  # MATLAB's imdilate output stops at the image border
    masks = masks.to(image.dtype)
    stack = torch.cat([masks.unsqueeze(2), masks.unsqueeze(2) * image.unsqueeze(1)], dim=2)  # B,L,1+C,H,W
    per_channel = taps.unsqueeze(2).expand(b, l, 1 + c, taps.shape[-1]).reshape(b * l * (1 + c), -1)
    blurred = separable_blur(stack.reshape(1, b * l * (1 + c), h, w), per_channel, padding)
    blurred = blurred.view(b, l, 1 + c, h, w)
    alpha, colour = blurred[:, :, :1], blurred[:, :, 1:]
    # transmittance in front of each layer of the chunk (exclusive cumulative product)
    through = torch.cumprod(1.0 - alpha, dim=1)
    front = torch.cat([torch.ones_like(through[:, :1]), through[:, :-1]], dim=1) * transmit.unsqueeze(1)
    colour_sum = (colour * front).sum(dim=1)
    coverage_sum = (alpha * front).sum(dim=1)
    return colour_sum, coverage_sum, through[:, -1] * transmit


def _run_layers(
    image: torch.Tensor,
    layer_index: torch.Tensor,
    layer_ids: torch.Tensor,
    layer_taps: torch.Tensor,
    dilate: bool,
    chunk: int,
    counts: list[int] | None = None,
    composite=_composite_chunk,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Composite the given layers of each image (or tile), ``chunk`` layers at a time.

    Args:
        image: ``(N, C, h, w)``.
        layer_index: ``(N, 1, h, w)`` integer layer of each pixel (larger = farther, -1 = none).
        layer_ids: ``(N, L)`` the layers to draw, nearest first; ``NO_LAYER`` = padding.
        layer_taps: ``(N, L, K)`` their 1-D kernels.
        counts: number of real layers of each of the N, in decreasing order (optional): a
            chunk then runs only on the prefix of images that still have layers.
        composite: the chunk compositor (:func:`chunk_compositor`).

    Returns:
        accumulated colour ``(N, C, h, w)`` and coverage ``(N, 1, h, w)`` (zero padding).
    """
    colour = torch.zeros_like(image)
    coverage = torch.zeros_like(image[:, :1])
    transmit = torch.ones_like(image[:, :1])
    inside = layer_index >= 0
    per_layer = image.shape[0] * (image.shape[1] + 1) * image.shape[-2] * image.shape[-1]
    chunk = max(1, min(chunk, MAX_CHUNK_ELEMENTS // per_layer))
    for start in range(0, layer_ids.shape[1], chunk):
        n = layer_ids.shape[0] if counts is None else sum(1 for c in counts if c > start)
        if n == 0:
            break
        ids = layer_ids[:n, start : start + chunk]  # n, l
        masks = layer_index[:n] == ids[:, :, None, None]  # n, l, h, w (bool)
        taps = _trim_taps(layer_taps[:n, start : start + chunk])
        col, cov, transmit[:n] = composite(
            image[:n], masks, taps, transmit[:n], "zeros", dilate, inside[:n]
        )
        colour[:n] += col
        coverage[:n] += cov
    return colour, coverage


#: Outer kernel taps below this weight are dropped (changes any output by < 1e-6 of its range).
NEGLIGIBLE_TAP = 1e-9


def _trim_taps(taps: torch.Tensor) -> torch.Tensor:
    """Drop the negligible outer taps shared by every kernel of ``(N, L, K)``."""
    k = taps.shape[-1]
    nonzero = (taps > NEGLIGIBLE_TAP).flatten(0, -2).any(dim=0)
    first = int(torch.argmax(nonzero.int())) if bool(nonzero.any()) else k // 2
    r = k // 2 - min(first, k // 2)
    return taps[..., k // 2 - r : k // 2 + r + 1]


def _reflect_positions(n: int, pad: int, device) -> torch.Tensor:
    """Source positions of ``range(-pad, n + pad)`` under reflect padding (``pad < n``)."""
    i = torch.arange(-pad, n + pad, device=device).abs()
    return torch.where(i > n - 1, 2 * (n - 1) - i, i)


def _pad_scene(image: torch.Tensor, index: torch.Tensor, halo: int, extra_h: int, extra_w: int, padding: str):
    """Pad image ``(B, C, H, W)`` and layer index ``(B, 1, H, W)`` by ``halo`` on every side
    (zeros and layer -1, or reflect), plus ``extra_h`` rows and ``extra_w`` columns of
    nothing at the bottom and right."""
    if padding == "reflect" and halo > 0:
        h, w = image.shape[-2:]
        rows = _reflect_positions(h, halo, image.device)
        cols = _reflect_positions(w, halo, image.device)
        image = image[:, :, rows][:, :, :, cols]
        index = index[:, :, rows][:, :, :, cols]
        pads = (0, extra_w, 0, extra_h)
    else:
        pads = (halo, halo + extra_w, halo, halo + extra_h)
    return F.pad(image, pads), F.pad(index, pads, value=-1)


def _tiles(x: torch.Tensor, size: int, step: int) -> torch.Tensor:
    """``(B, C, H, W)`` -> overlapping tiles ``(B * ny * nx, C, size, size)``."""
    c = x.shape[1]
    t = x.unfold(2, size, step).unfold(3, size, step)  # B, C, ny, nx, size, size
    return t.permute(0, 2, 3, 1, 4, 5).reshape(-1, c, size, size)


NO_LAYER = -2  # padding in per-tile layer lists (-1 marks pixels outside the image)


def _local_layers(index_tiles: torch.Tensor, n_layers: int) -> torch.Tensor:
    """Sorted ids of the layers present in each tile, ``(N, Lt)``, padded with ``NO_LAYER``."""
    n = index_tiles.shape[0]
    presence = torch.zeros(n, n_layers + 1, dtype=torch.bool, device=index_tiles.device)
    presence.scatter_(1, index_tiles.reshape(n, -1) + 1, True)
    presence = presence[:, 1:]  # drop "-1 = none"
    n_local = max(int(presence.sum(dim=1).max()), 1)
    ids = torch.arange(n_layers, device=index_tiles.device).expand(n, -1)
    ids = torch.where(presence, ids, torch.full_like(ids, n_layers))
    ids = torch.sort(ids, dim=1).values[:, :n_local]
    return torch.where(ids == n_layers, torch.full_like(ids, NO_LAYER), ids)


def _composite_tiled(
    image: torch.Tensor,
    index: torch.Tensor,
    taps_table: torch.Tensor,
    padding: str,
    dilate: bool,
    chunk: int,
    tile: int,
    composite=_composite_chunk,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Layered compositing of a batch, tile by tile, each tile drawing only its own layers.

    Args:
        image: ``(B, C, H, W)``.
        index: ``(B, 1, H, W)`` layer of each pixel, 0 = nearest.
        taps_table: ``(B, L, K)`` 1-D kernel of every layer of every image.
        padding: ``"zeros"`` or ``"reflect"`` at the image borders.
        composite: the chunk compositor (:func:`chunk_compositor`).

    A tile's interior depends only on pixels within ``halo = radius (+ 3 for the dilation)``,
    so cutting the padded scene into overlapping tiles of ``tile + 2 * halo`` and keeping the
    interiors gives exactly the full-image result, while each tile loops over the few layers
    it contains instead of all of them.

    Returns colour ``(B, C, H, W)`` and coverage ``(B, 1, H, W)``.
    """
    b, c, h, w = image.shape
    n_layers, k = taps_table.shape[1:]
    halo = k // 2 + (3 if dilate else 0)
    tile = max(tile, 2 * halo)  # keep the halo overhead bounded for very large kernels
    ny, nx = -(-h // tile), -(-w // tile)
    img_p, idx_p = _pad_scene(image, index, halo, ny * tile - h, nx * tile - w, padding)
    size = tile + 2 * halo
    img_t, idx_t = _tiles(img_p, size, tile), _tiles(idx_p, size, tile)
    if image.device.type == "cpu" and b == 1:
        # On the CPU, cost is pixel-layers: where per-layer bounding boxes touch fewer pixels
        # than tiles (scattered, noisy depth), use them instead (same result).
        ids = _local_layers(idx_t, n_layers)
        tiled_cost = int((ids >= 0).sum()) * size * size
        hp, wp = img_p.shape[-2:]
        boxes = _layer_boxes(idx_p[0, 0], n_layers)
        present = torch.nonzero(boxes[:, 1] >= 0).flatten().tolist()
        first_kept = (taps_table[0] > NEGLIGIBLE_TAP).float().argmax(dim=1)  # per layer
        halos = ((k // 2 - first_kept).clamp_min(0) + (3 if dilate else 0)).tolist()  # its reach
        windows = _bbox_windows(boxes.tolist(), present, BOX_CHUNK, halos, hp, wp)
        boxed_cost = sum((r.stop - r.start) * (q.stop - q.start) * len(g) for g, r, q in windows)
        if boxed_cost < tiled_cost:
            colour, coverage = _composite_boxed(img_p, idx_p, taps_table, windows, halo, dilate, composite)
            return colour[:, :, halo : halo + h, halo : halo + w], coverage[:, :, halo : halo + h, halo : halo + w]
    ids = _local_layers(idx_t, n_layers)  # N, Lt
    # busiest tiles first, so that each chunk of layers runs on a prefix of the tiles
    counts = (ids >= 0).sum(dim=1)
    order = torch.argsort(counts, descending=True, stable=True)
    owner = torch.arange(b, device=image.device).repeat_interleave(ny * nx)[order]
    ids = ids[order]
    taps = taps_table[owner[:, None], ids.clamp_min(0)]  # N, Lt, K
    colour, coverage = _run_layers(img_t[order], idx_t[order], ids, taps, dilate, chunk, counts[order].tolist(), composite)
    unsort = torch.argsort(order)
    colour, coverage = colour[unsort], coverage[unsort]
    out = torch.cat([colour, coverage], dim=1)[:, :, halo : halo + tile, halo : halo + tile]
    out = out.reshape(b, ny, nx, c + 1, tile, tile).permute(0, 3, 1, 4, 2, 5)
    out = out.reshape(b, c + 1, ny * tile, nx * tile)[:, :, :h, :w]
    return out[:, :c], out[:, c:]


def _layer_boxes(index: torch.Tensor, n_layers: int) -> torch.Tensor:
    """Bounding box ``(row0, row1, col0, col1)`` of every layer of an index map ``(h, w)``.

    Returns ``(n_layers, 4)`` long; absent layers get an empty box (row0 > row1).
    """
    h, w = index.shape
    flat = index.reshape(-1)
    keep = flat >= 0
    layer = flat[keep]
    pos = torch.arange(h * w, device=index.device)[keep]
    rows, cols = pos // w, pos % w
    big = torch.full((n_layers,), max(h, w), dtype=torch.long, device=index.device)
    small = torch.full((n_layers,), -1, dtype=torch.long, device=index.device)
    return torch.stack(
        [
            big.scatter_reduce(0, layer, rows, "amin"),
            small.scatter_reduce(0, layer, rows, "amax"),
            big.scatter_reduce(0, layer, cols, "amin"),
            small.scatter_reduce(0, layer, cols, "amax"),
        ],
        dim=1,
    )


def _bbox_windows(boxes: list[list[int]], ids: list[int], chunk: int, halos: list[int], h: int, w: int):
    """Per chunk of ``ids``: (ids, row slice, column slice) of the union box of its layers,
    grown by the largest reach (kernel radius + dilation) among them, ``halos[id]``."""
    out = []
    for start in range(0, len(ids), chunk):
        group = ids[start : start + chunk]
        halo = max(halos[i] for i in group)
        r0 = max(min(boxes[i][0] for i in group) - halo, 0)
        r1 = min(max(boxes[i][1] for i in group) + 1 + halo, h)
        c0 = max(min(boxes[i][2] for i in group) - halo, 0)
        c1 = min(max(boxes[i][3] for i in group) + 1 + halo, w)
        out.append((group, slice(r0, r1), slice(c0, c1)))
    return out


def _composite_boxed(image, index, taps_table, windows, halo: int, dilate: bool, composite=_composite_chunk):
    """Layered compositing of one padded image, each chunk of layers cut to its bounding box.

    ``image`` ``(1, C, h, w)`` and ``index`` ``(1, 1, h, w)`` are already padded by ``halo``;
    ``windows`` come from :func:`_bbox_windows`. Returns colour and coverage, still padded.
    """
    colour = torch.zeros_like(image)
    coverage = torch.zeros_like(image[:, :1])
    transmit = torch.ones_like(image[:, :1])
    for group, rows, cols in windows:
        ids = torch.tensor(group, device=image.device)[None]
        sub = (..., rows, cols)
        idx = index[sub]
        masks = idx == ids[:, :, None, None]
        taps = _trim_taps(taps_table[:, ids[0]])
        col, cov, transmit[sub] = composite(
            image[sub], masks, taps, transmit[sub], "zeros", dilate, idx >= 0
        )
        colour[sub] += col
        coverage[sub] += cov
    return colour, coverage


def _taps_table(
    sigmas: list[torch.Tensor], radius: int, matlab_eps: bool, device, truncate: float | None = None
) -> torch.Tensor:
    """Kernels of every layer of every image, ``(B, L, 2 * radius + 1)`` (float64)."""
    n = max(int(s.numel()) for s in sigmas)
    table = torch.zeros(len(sigmas), n, 2 * radius + 1, dtype=torch.float64, device=device)
    table[:, :, radius] = 1.0
    for i, s in enumerate(sigmas):
        if s.numel():
            table[i, : s.numel()] = gaussian_taps(s.to(device), radius, matlab_eps, truncate)
    return table


# ---------------------------------------------------------------------------------------
# D3-Net mode
# ---------------------------------------------------------------------------------------


def octave_range(base: float, limit: float, step: float) -> torch.Tensor:
    """GNU Octave's ``base:step:limit`` in float64 (elements ``base + i * step``)."""
    n = int(math.floor((limit - base) / step * (1 + 3 * 2.220446049250313e-16))) + 1
    return base + step * torch.arange(max(n, 0), dtype=torch.float64)


def d3net_layers(depth_m: torch.Tensor, camera: Camera, mode: D3NetMode) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """D3-Net's layer grid for one depth map ``(1, H, W)`` metres.

    Returns the layer index of every pixel ``(1, H, W)`` (long; layer k holds
    ``edges[k] <= depth < edges[k+1]``), the edges ``(L + 1,)`` metres and the layer sigmas
    ``(L,)`` pixels at the layer midpoints (without the +1e-4 offset), both float64 CPU.
    """
    d64 = depth_m.double()
    dmin, dmax = float(d64.min()), float(d64.max())
    edges = octave_range(dmin - mode.margin_m, dmax + mode.margin_m, mode.layer_step_m)
    mids = 0.5 * (edges[:-1] + edges[1:])
    sigmas = camera.sigma_px(mids)
    index = torch.searchsorted(edges.to(d64.device), d64.reshape(-1), right=True).reshape(d64.shape) - 1
    return index, edges, sigmas


def _render_d3net(image, depth, cameras: list[Camera], mode: D3NetMode, chunk: int, tile: int, composite=_composite_chunk) -> torch.Tensor:
    indices, sigmas = [], []
    for b in range(image.shape[0]):
        index, _, sigma = d3net_layers(depth[b], cameras[b], mode)
        indices.append(index)
        sigmas.append(sigma + mode.sigma_offset_px)
    taps = _taps_table(sigmas, mode.kernel_size // 2, True, image.device)
    colour, _ = _composite_tiled(image, torch.stack(indices), taps, "zeros", mode.dilate, chunk, tile, composite)
    return colour


# ---------------------------------------------------------------------------------------
# Default mode
# ---------------------------------------------------------------------------------------


def _layer_coordinate(blur_px: torch.Tensor, mode: DefaultMode) -> torch.Tensor:
    """Signed sigma (px) -> continuous layer coordinate: steps of ``sigma_step_px`` up to
    ``s0 = sigma_step_px / sigma_rel_step``, then steps of ``sigma_rel_step`` of the blur."""
    step, rel = mode.sigma_step_px, mode.sigma_rel_step
    mag = blur_px.abs()
    if rel <= 0:
        return blur_px / step
    s0 = step / rel
    far = s0 / step + torch.log(mag.clamp_min(s0) / s0) / math.log1p(rel)
    return torch.sign(blur_px) * torch.where(mag <= s0, mag / step, far)


def default_layers(depth_m: torch.Tensor, camera: Camera, mode: DefaultMode) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The default mode's layers for one depth map ``(1, H, W)`` metres.

    Pixels are binned by their signed blur ``s = (1/S - 1/x) * K`` (pixels; blur is linear in
    inverse depth): layer ``k = round(q(s))`` where ``q`` counts steps of ``sigma_step_px`` up
    to 5 px and steps of 5 % of the blur beyond (:func:`_layer_coordinate`); k grows with depth
    (negative in front of the focus plane, positive behind). Each layer is blurred with the
    sigma of its pixels' mean ``s`` (a fronto-parallel plane gets its exact sigma; elsewhere
    the error is at most half a step).

    Returns the layer index of every pixel ``(1, H, W)`` long, the non-empty layer ids
    ``(L,)`` sorted near to far, and their sigmas ``(L,)`` in pixels (float64).
    """
    gain = camera.blur_gain_px_m()
    blur = ((1.0 / camera.focus_m - 1.0 / depth_m.double()) * gain).reshape(-1)  # signed sigma, px
    index = torch.round(_layer_coordinate(blur, mode)).long()
    ids, inverse = torch.unique(index, return_inverse=True)
    total = torch.zeros(ids.numel(), dtype=torch.float64, device=blur.device).index_add_(0, inverse, blur)
    count = torch.bincount(inverse, minlength=ids.numel()).double()
    sigmas = (total / count).abs()
    return index.reshape(depth_m.shape), ids, sigmas


def _render_default(image, depth, cameras: list[Camera], mode: DefaultMode, chunk: int, tile: int, composite=_composite_chunk) -> torch.Tensor:
    h, w = image.shape[-2:]
    layers = [default_layers(depth[b], cameras[b], mode) for b in range(image.shape[0])]
    # layer ids are signed blur steps from the focus plane: shift them to start at 0
    offset = min(int(ids.min()) for _, ids, _ in layers)
    n = max(int(ids.max()) for _, ids, _ in layers) - offset + 1
    sigmas = []
    for _, ids, sig in layers:
        table = torch.zeros(n, dtype=torch.float64, device=sig.device)
        table[ids - offset] = sig
        sigmas.append(table)
    max_sigma = max(float(s.max()) for s in sigmas)
    radius = min(int(math.ceil(mode.truncate * max_sigma)), max(min(h, w) - 1, 0))
    taps = _taps_table(sigmas, radius, False, image.device, mode.truncate)
    index = torch.stack([index for index, _, _ in layers]) - offset
    colour, coverage = _composite_tiled(image, index, taps, "reflect", mode.dilate, chunk, tile, composite)
    return colour / coverage.clamp_min(1e-12)

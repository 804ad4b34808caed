"""Depth first, then non-blind deconvolution: a classical deblurring baseline.

In the spirit of Anwar, Hayder and Porikli (*Depth Estimation and Blur Removal from a Single
Out-of-focus Image*, BMVC 2017): given a depth map (the ground truth, an oracle upper bound,
or a network's prediction) and the camera, the defocus blur at every pixel is known, and the
sharp image is recovered by non-blind deconvolution. Here the blur model is **the renderer's
own** (:mod:`twohded.render`, default mode): the same depth layers (steps of 0.25 px of blur
up to 5 px, then 5 % of the blur), the same truncated Gaussian kernel per layer, the same
near-to-far occlusion compositing. :class:`LayeredBlur` is that renderer written with FFTs
(equal to :func:`twohded.render_defocus` to float rounding, tested) together with its exact
transpose, so on rendered data the oracle's only error is the ill-posedness of the inverse.

Three solvers (:func:`deconvolve`, ``method=``; batched torch, CPU or CUDA, float32 FFTs):

``"wiener"`` (one pass, no iteration)
    Wiener deconvolution of the whole image with each layer's kernel ``g_k``, in the Fourier
    domain (on the image's even periodic extension, so that the circular convolution is
    the renderer's reflect-padded one): ``X_k = G_k Y / (G_k^2 + lambda P)``, then the layer
    results are blended by the layer masks (``blend=``):

    * ``"soft"`` (default): the masks blurred by a 1 px Gaussian (``blend_sigma_px``) and
      normalised: each pixel takes its own layer's result, cross-faded over 1-2 px between
      neighbouring layers so that layer boundaries leave no seam;
    * ``"hard"``: each pixel takes its own layer's result;
    * ``"render"``: the renderer's occlusion-aware compositing weights
      ``a_k T_k / sum_j a_j T_j`` (``a_k = g_k * A_k``, ``T_k = prod_{j nearer} (1 - a_j)``):
      the share of the observed pixel's light that comes from layer ``k``.

    Each layer is deconvolved as if the whole image had its blur, so next to a depth
    discontinuity (where the observed pixel mixes layers) it rings; no blend removes that.
``"cg"`` (default; occlusion-aware)
    Regularised least squares with the full layered forward model ``H`` (occlusion
    included): ``min_x ||H x - y||^2 + lambda ||D x||^2``, solved by ``iterations`` steps of
    conjugate gradients on the normal equations ``(H^T H + lambda D^T D) x = H^T y``, started
    from the input. The fixed iteration count (early stopping) regularises too.
``"rl"``
    Richardson-Lucy with the same ``H``: ``x <- x . H^T(y / H x) / H^T 1`` from the input,
    kept in ``[eps, 1]``; regularised by early stopping (``iterations``).

The regulariser ``P`` / ``D`` is a **gradient prior** by default (``prior="gradient"``:
``D`` = horizontal and vertical forward differences, ``P = |D_x|^2 + |D_y|^2 = 4 - 2 cos w_x -
2 cos w_y``: Tikhonov on the image gradient; a natural image's spectrum falls as 1/f^2, so
this damps the high frequencies the blur erased and leaves the low ones alone) or a constant
noise-to-signal ratio (``prior="nsr"``: ``P = 1``, ``D = I``). ``lambda`` (``reg``) is chosen
on training images (:func:`tune_regularisation`), never on the evaluation set.

:class:`DepthThenDeconvolution` wraps it as a twohded model (``outputs``, ``ModelOutput``),
so that :func:`twohded.evaluate.evaluate_model` evaluates it like any network: with
``depth_source="oracle"`` it declares ``needs_depth = True`` and the evaluation passes the
batch's ground-truth depth; with a depth model it predicts the depth itself.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import InputError
from ..models.base import DefocusModel, ModelOutput
from ..optics import Camera, Preset
from ..render import DefaultMode, default_layers, gaussian_taps, separable_blur

__all__ = [
    "BLENDS",
    "DEFAULT_ITERATIONS",
    "DEFAULT_REG",
    "METHODS",
    "PRIORS",
    "DepthThenDeconvolution",
    "LayeredBlur",
    "deconvolve",
    "layer_decomposition",
    "tune_regularisation",
]

METHODS = ("cg", "wiener", "rl")
BLENDS = ("soft", "hard", "render")
PRIORS = ("gradient", "nsr")
#: default regularisation weight per method (gradient prior): the best of :data:`REG_GRID` on
#: built-in training scenes at 128 and 256 px (``paper`` camera, no noise); real photos want
#: more, so the comparison tunes it on each dataset's training split (:func:`tune_regularisation`)
DEFAULT_REG = {"wiener": 3e-2, "cg": 1e-4, "rl": 1e-4}
#: default iterations per method
DEFAULT_ITERATIONS = {"wiener": 0, "cg": 30, "rl": 30}
#: the grid :func:`tune_regularisation` searches
REG_GRID = (1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
_EPS = 1e-4


# ---------------------------------------------------------------------------------------
# Layers and kernels (the renderer's)
# ---------------------------------------------------------------------------------------


def _cameras(spec, depth: Tensor) -> list[Camera]:
    """One camera per image: a Camera, a list of them, a Preset or a preset name."""
    from ..optics import get_preset
    from ..render_spec import RenderSpec

    b = depth.shape[0]
    if isinstance(spec, Camera):
        return [spec] * b
    if isinstance(spec, (list, tuple)):
        if len(spec) != b or not all(isinstance(c, Camera) for c in spec):
            raise InputError(f"deconvolve: expected {b} cameras, got {spec!r}")
        return list(spec)
    if not isinstance(spec, (str, Preset)):
        raise InputError(f"deconvolve: expected a camera, a preset or a preset name, got {spec!r}")
    preset = get_preset(spec) if isinstance(spec, str) else spec
    if preset.camera is None:
        raise InputError(f"deconvolve: preset {preset.name!r} draws a random camera per image; pass the cameras themselves")
    # the image is taken at the preset's own pixel grid (pixel_scale 1)
    return RenderSpec.resolve(preset, blur_at="output").cameras(depth, [0] * b, [1.0] * b)


def layer_decomposition(depth: Tensor, cameras: Sequence[Camera], mode: DefaultMode) -> tuple[Tensor, Tensor, int]:
    """The renderer's default-mode layers for a batch of depth maps.

    Args:
        depth: ``(B, 1, H, W)`` metres, valid everywhere.
        cameras: one per image.
        mode: :class:`~twohded.render.DefaultMode` (layer steps, kernel truncation).

    Returns:
        ``index`` ``(B, 1, H, W)`` long, the layer of every pixel (0 = nearest; ids shared
        across the batch), ``sigmas`` ``(B, L)`` float64 per layer (0 for absent ones), and
        the kernel radius (as the renderer: ``ceil(truncate * max sigma)``, at most ``min(H, W) - 1``).
    """
    h, w = depth.shape[-2:]
    layers = [default_layers(depth[b], cam, mode) for b, cam in enumerate(cameras)]
    offset = min(int(ids.min()) for _, ids, _ in layers)
    n = max(int(ids.max()) for _, ids, _ in layers) - offset + 1
    table = torch.zeros(len(layers), n, dtype=torch.float64, device=depth.device)
    for b, (_, ids, sig) in enumerate(layers):
        table[b, (ids - offset).to(depth.device)] = sig.to(depth.device)
    index = torch.stack([idx for idx, _, _ in layers]).to(depth.device) - offset
    radius = min(math.ceil(mode.truncate * float(table.max())), max(min(h, w) - 1, 0))
    return index, table, radius


def _otf_1d(taps: Tensor, n: int, rfft: bool) -> Tensor:
    """Exact DFT (real: the taps are symmetric) of centred taps ``(N, 2r+1)`` on a circle of ``n``."""
    r = taps.shape[-1] // 2
    f = torch.arange(n // 2 + 1 if rfft else n, device=taps.device, dtype=torch.float64)
    j = torch.arange(-r, r + 1, device=taps.device, dtype=torch.float64)
    cos = torch.cos(2.0 * math.pi * torch.outer(j, f) / n)  # (2r+1, F)
    return taps @ cos


def _prior(hp: int, wp: int, prior: str, device) -> Tensor:
    """``(Hp, Wp//2+1)`` float64 spectrum of the regulariser ``D^T D`` (periodic)."""
    if prior == "nsr":
        return torch.ones(hp, wp // 2 + 1, dtype=torch.float64, device=device)
    fy = torch.arange(hp, device=device, dtype=torch.float64)
    fx = torch.arange(wp // 2 + 1, device=device, dtype=torch.float64)
    py = 2.0 - 2.0 * torch.cos(2.0 * math.pi * fy / hp)
    px = 2.0 - 2.0 * torch.cos(2.0 * math.pi * fx / wp)
    return py[:, None] + px[None, :]


def _gradient_normal(x: Tensor, prior: str) -> Tensor:
    """``D^T D x`` on the image grid (forward differences, no wrap; ``D = I`` for ``"nsr"``)."""
    if prior == "nsr":
        return x
    dx = x[..., :, 1:] - x[..., :, :-1]
    dy = x[..., 1:, :] - x[..., :-1, :]
    out = torch.zeros_like(x)
    out[..., :, 1:] += dx
    out[..., :, :-1] -= dx
    out[..., 1:, :] += dy
    out[..., :-1, :] -= dy
    return out


def _reflect_extend(x: Tensor) -> Tensor:
    """The even, periodic extension of ``(..., H, W)`` that reflect padding implies.

    ``[x_0 .. x_{n-1}, x_{n-2} .. x_1]`` along each axis (period ``2n - 2``): a circular
    convolution of it with a symmetric kernel of radius ``< n - 1`` equals the renderer's
    reflect-padded convolution on the first ``n`` samples, so the Fourier-domain inverse has
    no wrap-around seam (at 4x the area of the image).
    """
    h, w = x.shape[-2:]
    if h > 2:
        x = torch.cat([x, x[..., 1 : h - 1, :].flip(-2)], dim=-2)
    if w > 2:
        x = torch.cat([x, x[..., :, 1 : w - 1].flip(-1)], dim=-1)
    return x


# ---------------------------------------------------------------------------------------
# Deconvolution
# ---------------------------------------------------------------------------------------


def _as_batch(image: Tensor, depth_m: Tensor) -> tuple[Tensor, Tensor, bool]:
    squeeze = image.dim() == 3
    y = (image.unsqueeze(0) if squeeze else image).float()
    if y.dim() != 4:
        raise InputError(f"deconvolve: image must be (B, C, H, W) or (C, H, W), got {tuple(image.shape)}")
    depth = depth_m.float()
    if depth.dim() == 2:
        depth = depth[None, None]
    elif depth.dim() == 3:
        depth = depth.unsqueeze(1) if depth.shape[0] == y.shape[0] and y.shape[0] > 1 else depth.unsqueeze(0)
    if depth.dim() == 4 and depth.shape[0] == 1 and y.shape[0] > 1:
        depth = depth.expand(y.shape[0], -1, -1, -1)
    if depth.dim() != 4 or depth.shape[0] != y.shape[0] or depth.shape[-2:] != y.shape[-2:] or depth.shape[1] != 1:
        raise InputError(f"deconvolve: depth {tuple(depth_m.shape)} does not match image {tuple(image.shape)}")
    if not bool((torch.isfinite(depth) & (depth > 0)).all()):
        raise InputError("deconvolve: depth must be finite and > 0 everywhere (fill invalid pixels first)")
    if min(y.shape[-2:]) < 4:
        raise InputError(f"deconvolve: image too small ({tuple(y.shape[-2:])}); at least 4x4 pixels")
    return y, depth.to(y.device), squeeze


@torch.no_grad()
def deconvolve(
    image: Tensor,
    depth_m: Tensor,
    camera_or_preset: Camera | Preset | str | Sequence[Camera],
    *,
    method: str = "cg",
    reg: float | None = None,
    iterations: int | None = None,
    prior: str = "gradient",
    blend: str = "soft",
    blend_sigma_px: float = 1.0,
    mode: DefaultMode | str = "default",
    chunk: int = 8,
    clamp: bool = True,
) -> Tensor:
    """Non-blind, depth-aware deconvolution of defocused images (module docstring).

    Args:
        image: ``(B, 3, H, W)`` (or ``(3, H, W)``) defocused images in ``[0, 1]``.
        depth_m: ``(B, 1, H, W)`` (or ``(H, W)``) depth in metres, finite and > 0 (fill holes
            first, e.g. with :func:`twohded.io.fill_invalid_depth`).
        camera_or_preset: the camera that blurred the image: a :class:`~twohded.optics.Camera`,
            one per image, a :class:`~twohded.optics.Preset` or a preset name (taken at the
            image's own pixel grid; width-relative presets scale with the image width).
        method: ``"cg"``, ``"wiener"`` or ``"rl"``.
        reg: regularisation weight ``lambda`` (> 0; ``"rl"`` has none and ignores it); default
            :data:`DEFAULT_REG` of the method.
        iterations: for ``"cg"`` and ``"rl"``; default :data:`DEFAULT_ITERATIONS`.
        prior: ``"gradient"`` or ``"nsr"``.
        blend: ``"wiener"`` only: ``"soft"``, ``"hard"`` or ``"render"``.
        blend_sigma_px: Gaussian width of the ``"soft"`` cross-fade, pixels.
        mode: the renderer's default mode (or a :class:`~twohded.render.DefaultMode` with
            other layer steps); the layers, kernels and compositing of the blur model.
        chunk: layers processed at once (memory / speed only).
        clamp: clamp the output to ``[0, 1]``.

    Returns:
        The restored images, same shape as ``image``, float32 on its device.
    """
    if method not in METHODS:
        raise InputError(f"deconvolve: method={method!r}; choose one of {', '.join(METHODS)}")
    if prior not in PRIORS:
        raise InputError(f"deconvolve: prior={prior!r}; choose one of {', '.join(PRIORS)}")
    if blend not in BLENDS:
        raise InputError(f"deconvolve: blend={blend!r}; choose one of {', '.join(BLENDS)}")
    reg = DEFAULT_REG[method] if reg is None else reg
    if not (isinstance(reg, (int, float)) and math.isfinite(reg) and reg > 0):
        raise InputError(f"deconvolve: reg must be a number > 0, got {reg!r}")
    iterations = DEFAULT_ITERATIONS[method] if iterations is None else int(iterations)
    if iterations < 0:
        raise InputError(f"deconvolve: iterations must be >= 0, got {iterations}")
    if mode == "default":
        mode = DefaultMode()
    if not isinstance(mode, DefaultMode):
        raise InputError(f"deconvolve: mode must be 'default' or a DefaultMode (the blur model is the default renderer), got {mode!r}")
    y, depth, squeeze = _as_batch(image, depth_m)
    cameras = _cameras(camera_or_preset, depth)

    with torch.autocast(device_type=y.device.type, enabled=False):
        blur = LayeredBlur(depth, cameras, mode, chunk=max(1, int(chunk)))
        if method == "wiener":
            out = blur.wiener(y, reg, prior, blend, blend_sigma_px)
        elif method == "cg":
            out = blur.least_squares(y, reg, prior, iterations)
        else:
            out = blur.richardson_lucy(y, iterations)
    if clamp:
        out = out.clamp(0.0, 1.0)
    return out.squeeze(0) if squeeze else out


class LayeredBlur:
    """The renderer's layered blur of one batch of depth maps, as Fourier-domain operators.

    ``H x = sum_k W_k . (g_k * (A_k x))`` with ``A_k`` the layer masks, ``g_k`` the layer
    kernels and ``W_k = T_k / coverage`` the renderer's normalised compositing weights (default
    mode: ``T_k = prod_{j nearer} (1 - g_j * A_j)``, ``coverage = sum_k (g_k * A_k) T_k``), so
    :meth:`forward` is :func:`twohded.render_defocus` (default mode, no dilation) computed with
    FFTs, and :meth:`adjoint` is its exact transpose. Borders are reflected, as in the renderer.

    Args:
        depth: ``(B, 1, H, W)`` metres, valid everywhere.
        cameras: one :class:`~twohded.optics.Camera` per image.
        mode: the renderer's :class:`~twohded.render.DefaultMode` (layers and kernels).
        chunk: layers processed at once.
    """

    def __init__(self, depth: Tensor, cameras: Sequence[Camera], mode, chunk: int = 8) -> None:
        self.index, self.sigmas, self.radius = layer_decomposition(depth, cameras, mode)
        self.mode = mode
        self.chunk = chunk
        self.shape = tuple(depth.shape[-2:])
        h, w = self.shape
        self.ext_shape = (2 * h - 2 if h > 2 else h, 2 * w - 2 if w > 2 else w)
        self.device = depth.device
        self._weights: list[Tensor] | None = None
        self._otf_cache: dict[tuple[int, int], Tensor] = {}
        self._chunks: list[tuple[int, int, Tensor]] | None = None
        # reflect padding of the forward model (needs pad < size; the kernels are cut there too)
        self.pad = min(self.radius, h - 1, w - 1)

    @property
    def n_layers(self) -> int:
        return int(self.sigmas.shape[1])

    def chunks(self) -> list[tuple[int, int, Tensor]]:
        """``(start, stop, masks (B, l, H, W) float)`` of the chunks that hold any pixel (computed once)."""
        if self._chunks is None:
            self._chunks = []
            for start in range(0, self.n_layers, self.chunk):
                stop = min(start + self.chunk, self.n_layers)
                ids = torch.arange(start, stop, device=self.device)
                masks = (self.index == ids[None, :, None, None]).float()
                if bool(masks.any()):
                    self._chunks.append((start, stop, masks))
        return self._chunks

    def _otf(self, start: int, stop: int, size: tuple[int, int]) -> Tensor:
        """``(B, l, Hp, Wp//2+1)`` float32 real transfer functions of layers ``start:stop`` on a grid ``size``."""
        hp, wp = size
        sig = self.sigmas[:, start:stop]
        taps = gaussian_taps(sig.reshape(-1), self.radius, truncate=self.mode.truncate)
        gy = _otf_1d(taps, hp, rfft=False).view(sig.shape[0], -1, hp)
        gx = _otf_1d(taps, wp, rfft=True).view(sig.shape[0], -1, wp // 2 + 1)
        return (gy[..., :, None] * gx[..., None, :]).float()

    def _conv(self, x: Tensor, start: int, stop: int) -> Tensor:
        """``x`` ``(B, l, C, H, W)`` blurred by the kernels of layers ``start:stop`` (reflect borders).

        Reflect padding by the kernel radius, then a circular FFT convolution: the wrap-around
        only reaches the padding, so the cropped result is the renderer's convolution exactly.
        """
        h, w = self.shape
        r = self.pad
        z = F.pad(x.flatten(0, 1), (r, r, r, r), mode="reflect").unflatten(0, x.shape[:2]) if r else x
        z = torch.fft.irfft2(torch.fft.rfft2(z) * self.otf_padded(start, stop)[:, :, None], s=z.shape[-2:])
        return z[..., r : r + h, r : r + w]

    def _conv_adjoint(self, x: Tensor, start: int, stop: int) -> Tensor:
        """Transpose of :meth:`_conv`: zero-pad, circular blur, fold the reflected borders back."""
        h, w = self.shape
        r = self.pad
        z = F.pad(x, (r, r, r, r))
        z = torch.fft.irfft2(torch.fft.rfft2(z) * self.otf_padded(start, stop)[:, :, None], s=z.shape[-2:])
        if r:
            # rows: padded row r - j (j = 1..r) and r + h - 1 + j copy rows j and h - 1 - j
            mid = z[..., r : r + h, :].clone()
            mid[..., 1 : r + 1, :] += z[..., :r, :].flip(-2)
            mid[..., h - 1 - r : h - 1, :] += z[..., r + h :, :].flip(-2)
            out = mid[..., r : r + w].clone()
            out[..., 1 : r + 1] += mid[..., :r].flip(-1)
            out[..., w - 1 - r : w - 1] += mid[..., r + w :].flip(-1)
            return out
        return z

    def otf_padded(self, start: int, stop: int) -> Tensor:
        """Transfer functions on the reflect-padded grid of :meth:`_conv` (cached)."""
        key = (start, stop)
        if key not in self._otf_cache:
            h, w = self.shape
            self._otf_cache[key] = self._otf(start, stop, (h + 2 * self.pad, w + 2 * self.pad))
        return self._otf_cache[key]

    # -- Wiener --------------------------------------------------------------------------
    def wiener(self, y: Tensor, reg: float, prior: str, blend: str, blend_sigma_px: float) -> Tensor:
        """Per-layer Wiener deconvolution of ``y`` ``(B, C, H, W)``, blended (module docstring)."""
        hp, wp = self.ext_shape
        spectrum = torch.fft.rfft2(_reflect_extend(y))  # (B, C, Hp, Wf)
        prior_f = _prior(hp, wp, prior, y.device)
        numerator = torch.zeros_like(y)
        denominator = torch.zeros_like(y[:, :1])
        transmit = torch.ones_like(y[:, :1])
        h, w = self.shape
        if blend == "soft":
            soft = gaussian_taps(torch.tensor([float(blend_sigma_px)], device=y.device), max(1, math.ceil(3 * blend_sigma_px)))
        for start, stop, masks in self.chunks():
            otf = self._otf(start, stop, self.ext_shape).double()
            filt = (otf / (otf * otf + reg * prior_f)).float()
            est = torch.fft.irfft2(spectrum[:, None] * filt[:, :, None], s=self.ext_shape)[..., :h, :w]
            if blend == "hard":
                weight = masks
            elif blend == "soft":
                b, l = masks.shape[:2]
                weight = separable_blur(masks.reshape(1, b * l, h, w), soft.expand(b * l, -1), "reflect").view(b, l, h, w)
            else:  # the renderer's compositing weights, seen through the nearer layers
                alpha = self._conv(masks[:, :, None], start, stop)[:, :, 0]
                through = torch.cumprod(1.0 - alpha, dim=1)
                front = torch.cat([torch.ones_like(through[:, :1]), through[:, :-1]], dim=1) * transmit
                weight = alpha * front
                transmit = through[:, -1:] * transmit
            numerator += (est * weight[:, :, None]).sum(dim=1)
            denominator += weight.sum(dim=1, keepdim=True)
        return numerator / denominator.clamp_min(1e-12)

    # -- the forward model and its transpose ----------------------------------------------
    def weights(self) -> list[Tensor]:
        """Per chunk, ``W_k = T_k / coverage`` ``(B, l, H, W)`` (computed once)."""
        if self._weights is None:
            b = self.index.shape[0]
            h, w = self.shape
            transmit = torch.ones(b, 1, h, w, device=self.device)
            coverage = torch.zeros(b, 1, h, w, device=self.device)
            fronts = []
            for start, stop, masks in self.chunks():
                alpha = self._conv(masks[:, :, None], start, stop)[:, :, 0]
                through = torch.cumprod(1.0 - alpha, dim=1)
                front = torch.cat([torch.ones_like(through[:, :1]), through[:, :-1]], dim=1) * transmit
                coverage += (alpha * front).sum(dim=1, keepdim=True)
                transmit = through[:, -1:] * transmit
                fronts.append(front)
            self._weights = [f / coverage.clamp_min(1e-12) for f in fronts]
        return self._weights

    def forward(self, x: Tensor) -> Tensor:
        """``H x``: the layered, occlusion-aware blur of ``x`` ``(B, C, H, W)``."""
        out = torch.zeros_like(x)
        for (start, stop, masks), weight in zip(self.chunks(), self.weights()):
            blurred = self._conv(masks[:, :, None] * x[:, None], start, stop)
            out += (weight[:, :, None] * blurred).sum(dim=1)
        return out

    def adjoint(self, v: Tensor) -> Tensor:
        """``H^T v`` (exact transpose of :meth:`forward`)."""
        out = torch.zeros_like(v)
        for (start, stop, masks), weight in zip(self.chunks(), self.weights()):
            back = self._conv_adjoint(weight[:, :, None] * v[:, None], start, stop)
            out += (masks[:, :, None] * back).sum(dim=1)
        return out

    def richardson_lucy(self, y: Tensor, iterations: int) -> Tensor:
        """Richardson-Lucy from the input: ``x <- x * H^T(y / H x) / H^T 1``, kept in ``[eps, 1]``."""
        y = y.clamp_min(_EPS)
        x = y.clamp(_EPS, 1.0)
        norm = self.adjoint(torch.ones_like(y[:, :1])).clamp_min(_EPS)
        for _ in range(iterations):
            x = (x * self.adjoint(y / self.forward(x).clamp_min(_EPS)) / norm).clamp(_EPS, 1.0)
        return x

    def least_squares(self, y: Tensor, reg: float, prior: str, iterations: int) -> Tensor:
        """Conjugate gradients on ``(H^T H + reg D^T D) x = H^T y`` from ``x = y`` (per image)."""

        def normal(v: Tensor) -> Tensor:
            return self.adjoint(self.forward(v)) + reg * _gradient_normal(v, prior)

        def dot(a: Tensor, b: Tensor) -> Tensor:
            return (a * b).flatten(1).sum(dim=1).view(-1, 1, 1, 1)

        x = y.clone()
        r = self.adjoint(y) - normal(x)
        p = r.clone()
        rs = dot(r, r)
        for _ in range(iterations):
            ap = normal(p)
            alpha = rs / dot(p, ap).clamp_min(1e-30)
            x = x + alpha * p
            r = r - alpha * ap
            rs_new = dot(r, r)
            p = r + (rs_new / rs.clamp_min(1e-30)) * p
            rs = rs_new
        return x


# ---------------------------------------------------------------------------------------
# As a model
# ---------------------------------------------------------------------------------------


class DepthThenDeconvolution(DefocusModel):
    """A two-stage model: a depth map, then :func:`deconvolve` with the camera.

    Args:
        depth_source: ``"oracle"`` (the ground-truth depth, passed by the evaluation as
            ``model(image, depth=...)``: ``needs_depth`` is True) or a depth model (any
            twohded model with a ``depth`` output, e.g. a trained ``2hded-depth``).
        preset: the camera that blurred the images: a preset name, a
            :class:`~twohded.optics.Preset` or a :class:`~twohded.optics.Camera`.
        depth_clamp_m: predicted depths are clamped to this range (metres) before the blur is
            computed (a near-zero prediction would ask for an enormous kernel).
        **deconv: options of :func:`deconvolve` (``method``, ``reg``, ``iterations``,
            ``prior``, ``blend``, ``blend_sigma_px``, ``mode``, ``chunk``).

    ``forward(image, depth=None)`` -> ``ModelOutput(aif=...)`` (oracle) or
    ``ModelOutput(depth=..., aif=...)`` (with a depth model). Works on CPU and CUDA; under
    the evaluation's bf16 autocast the depth network runs in bf16 and the deconvolution in
    float32.
    """

    def __init__(
        self,
        depth_source: str | DefocusModel = "oracle",
        preset: str | Preset | Camera = "paper",
        *,
        depth_clamp_m: tuple[float, float] = (0.1, 100.0),
        **deconv: Any,
    ) -> None:
        super().__init__()
        if isinstance(depth_source, str):
            if depth_source != "oracle":
                raise InputError(f"depth_source={depth_source!r}: use 'oracle' or a depth model")
            self.depth_model = None
        elif isinstance(depth_source, DefocusModel):
            if "depth" not in depth_source.outputs:
                raise InputError("depth_source: the model has no depth output")
            self.depth_model = depth_source
        else:
            raise InputError(f"depth_source: expected 'oracle' or a depth model, got {type(depth_source).__name__}")
        unknown = set(deconv) - {"method", "reg", "iterations", "prior", "blend", "blend_sigma_px", "mode", "chunk"}
        if unknown:
            raise InputError(f"DepthThenDeconvolution: unknown option(s) {', '.join(sorted(unknown))}")
        if isinstance(preset, str):
            from ..optics import get_preset

            get_preset(preset)  # fail early on an unknown name
        self.preset = preset
        self.depth_clamp_m = (float(depth_clamp_m[0]), float(depth_clamp_m[1]))
        self.deconv = dict(deconv)
        # parameter-free in oracle mode: a buffer tells where the module lives
        self.register_buffer("_anchor", torch.zeros(()), persistent=False)

    @property
    def needs_depth(self) -> bool:
        """True for the oracle: the evaluation passes the ground-truth depth."""
        return self.depth_model is None

    @property
    def outputs(self) -> tuple[str, ...]:
        """``("aif",)`` (oracle) or ``("depth", "aif")`` (with a depth model)."""
        return ("aif",) if self.depth_model is None else ("depth", "aif")

    @property
    def stride(self) -> int:
        """The depth model's stride (1 for the oracle: deconvolution keeps the resolution)."""
        return 1 if self.depth_model is None else self.depth_model.stride

    def forward(self, image: Tensor, depth: Tensor | None = None) -> ModelOutput:
        if image.dim() != 4 or image.shape[1] != 3:
            raise InputError(f"image: expected (B, 3, H, W), got {tuple(image.shape)}")
        predicted = None
        if self.depth_model is not None:
            predicted = self.depth_model(image).depth
            depth = predicted.float().clamp(*self.depth_clamp_m)
        elif depth is None:
            raise InputError("DepthThenDeconvolution('oracle') needs the ground-truth depth: model(image, depth=...)")
        else:
            depth = _fill(depth.float())
        aif = deconvolve(image.float().contiguous(), depth.contiguous(), self.preset, **self.deconv)
        return ModelOutput(depth=predicted, aif=aif)

    def extra_repr(self) -> str:
        name = getattr(self.preset, "name", self.preset)
        source = "oracle" if self.depth_model is None else type(self.depth_model).__name__
        return f"depth_source={source}, preset={name}, deconv={self.deconv}"


def _fill(depth: Tensor) -> Tensor:
    """Invalid depth (<= 0, not finite) -> the nearest valid pixel's, per image."""
    valid = torch.isfinite(depth) & (depth > 0)
    if bool(valid.all()):
        return depth
    from ..io import fill_invalid_depth

    return torch.stack([fill_invalid_depth(d[0], name="oracle depth")[None].to(depth.device) for d in depth])


# ---------------------------------------------------------------------------------------
# Choosing the regularisation on training data
# ---------------------------------------------------------------------------------------


def tune_regularisation(
    dataset,
    preset,
    *,
    grid: Sequence[float] = REG_GRID,
    limit: int = 8,
    device: str | torch.device = "cpu",
    **deconv: Any,
) -> tuple[float, dict[float, float]]:
    """Pick ``reg`` by mean PSNR of the oracle deconvolution on (training) items.

    Args:
        dataset: a twohded dataset with a sharp target (e.g. DFD ``train``, synthetic ``train``).
        preset: the camera (as :class:`DepthThenDeconvolution`).
        grid: candidate values.
        limit: number of items used (the first ``limit``).
        **deconv: other :func:`deconvolve` options.

    Returns:
        ``(best reg, {reg: mean PSNR dB})``.
    """
    from torch.utils.data import default_collate

    from ..data import render_batch, render_spec_of
    from ..metrics import psnr

    if not grid:
        raise InputError("tune_regularisation: empty grid")
    if deconv.get("method") == "rl":
        raise InputError("tune_regularisation: method 'rl' has no regularisation weight (tune its iterations)")
    items = []
    for i in range(min(int(limit), len(dataset))):
        batch = render_batch(default_collate([dataset[i]]), render_spec_of(dataset), device)
        depth = batch.get("render_depth", batch["depth"]).float()
        items.append((batch["image"].float(), _fill(depth), batch["aif"].float()))
    scores: dict[float, float] = {}
    for reg in grid:
        values = [psnr(deconvolve(y, d, preset, reg=float(reg), **deconv)[0], t[0]) for y, d, t in items]
        scores[float(reg)] = sum(values) / len(values)
    best = max(scores, key=scores.get)
    return best, scores

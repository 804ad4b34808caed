"""Prediction: depth (metres) and the all-in-focus image from defocused photos of any size.

Two lines from Python::

    model = twohded.load_model("runs/nyu/best.pt")    # a Predictor
    result = model.predict("photo.jpg")                # path, PIL image, NumPy array or tensor
    result.depth    # (H, W) float32 NumPy array, metres (None for an AiF-only model)
    result.aif      # (H, W, 3) float32 NumPy array in [0, 1] (None for a depth-only model)
    result.save("out/", "photo")   # photo_depth.npy, photo_depth.png, photo_depth_color.png, photo_aif.png

Decisions (see docs/evaluation.md):

* results are NumPy arrays at the input's size: depth ``(H, W)`` in metres (clamped at 0;
  the network's output is linear and can dip below zero), AiF ``(H, W, 3)`` in ``[0, 1]``
  (height x width x channels, as PIL, matplotlib and OpenCV expect);
  :meth:`Prediction.as_tensors` gives ``(1, H, W)`` / ``(3, H, W)`` tensors;
* inputs: a file path (any format PIL reads: grayscale, palette, RGBA, 16-bit, EXIF
  orientation applied), a PIL image, a NumPy array ``(H, W)`` / ``(H, W, 1|3|4)`` (uint8 /
  uint16 scaled to [0, 1], floats taken as [0, 1]) or a tensor ``(3, H, W)`` / ``(1, 3, H, W)``
  / ``(H, W)`` (float in [0, 1] or uint8). Alpha is dropped, gray replicated to RGB;
* images smaller than :data:`MIN_SIDE` (32 px, the network's total stride) on either side
  are refused;
* images whose longer side exceeds ``max_side`` (default 1024 px) are processed in
  overlapping square tiles of ``max_side`` rounded down to a multiple of 32 px, overlapping
  by at least ``overlap`` px (default 128), blended with raised-cosine weights over the
  overlap (weight 1 elsewhere and at the image border), so there are no seams;
* the fast path (:mod:`twohded.fast`; default on CUDA, ``fast=False`` to disable): BatchNorm
  folded into the convolutions, bf16 autocast with bf16 convolution weights, channels-last
  tensors and CUDA graphs per input shape; ``compile=True`` adds ``torch.compile``. On the CPU:
  plain fp32 (``fast=True`` there folds the BatchNorms, still fp32). ``settings=``
  (:class:`~twohded.fast.InferenceSettings`) chooses each part.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from .devices import resolve_device
from .errors import InputError
from .models.base import check_model

if TYPE_CHECKING:
    from .fast import FastModel, InferenceSettings

__all__ = [
    "DEFAULT_MAX_SIDE",
    "DEFAULT_OVERLAP",
    "MIN_SIDE",
    "OUTPUT_SUFFIXES",
    "Prediction",
    "Predictor",
    "load_model",
    "output_paths",
    "resolve_device",
    "save_depth_colormap",
    "to_image_tensor",
]

#: smallest accepted image side in pixels (the network's total stride)
MIN_SIDE = 32
#: images with a longer side than this are processed in tiles
DEFAULT_MAX_SIDE = 1024
#: minimum overlap of neighbouring tiles, pixels
DEFAULT_OVERLAP = 128
#: files written per image: output kind -> file name suffix
OUTPUT_SUFFIXES = {
    "depth": ("_depth.npy", "_depth.png", "_depth_color.png"),
    "aif": ("_aif.png",),
}


# ---------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------


def _check_size(h: int, w: int, what: str) -> None:
    if h < MIN_SIDE or w < MIN_SIDE:
        raise InputError(
            f"{what}: image is {w}x{h} pixels; the network needs at least {MIN_SIDE}x{MIN_SIDE}"
        )


def to_image_tensor(image: Any, name: str = "image") -> Tensor:
    """Any supported input (see module docstring) -> ``(3, H, W)`` float32 CPU tensor in [0, 1]."""
    from PIL import Image

    from .io import pil_to_float_rgb, read_image

    if isinstance(image, (str, os.PathLike)):
        t = read_image(image)
        name = str(image)
    elif isinstance(image, Image.Image):
        t = torch.from_numpy(np.ascontiguousarray(pil_to_float_rgb(image).transpose(2, 0, 1)))
    elif isinstance(image, np.ndarray):
        t = _from_numpy(image, name)
    elif isinstance(image, Tensor):
        t = _from_tensor(image, name)
    else:
        raise InputError(f"{name}: expected a file path, PIL image, NumPy array or tensor, got {type(image).__name__}")
    if not bool(torch.isfinite(t).all()):
        raise InputError(f"{name}: image has NaN or infinite values")
    _check_size(t.shape[-2], t.shape[-1], name)
    return t.float().clamp_(0.0, 1.0).contiguous()


def _scale_integer(arr: np.ndarray) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0
    if arr.dtype == np.uint16:
        return arr.astype(np.float32) / 65535.0
    if arr.dtype == bool:
        return arr.astype(np.float32)
    if np.issubdtype(arr.dtype, np.integer):
        scale = 65535.0 if arr.max(initial=0) > 255 else 255.0
        return arr.astype(np.float32) / scale
    if np.issubdtype(arr.dtype, np.floating):
        return arr.astype(np.float32)
    raise InputError(f"array of dtype {arr.dtype} is not an image")


def _from_numpy(arr: np.ndarray, name: str) -> Tensor:
    try:
        arr = _scale_integer(arr)
    except InputError as exc:
        raise InputError(f"{name}: {exc}") from None
    if arr.ndim == 3 and arr.shape[2] == 4:
        arr = arr[..., :3]
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise InputError(f"{name}: NumPy images must be (H, W), (H, W, 1), (H, W, 3) or (H, W, 4); got {arr.shape}")
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))


def _from_tensor(t: Tensor, name: str) -> Tensor:
    t = t.detach().cpu()
    if t.dim() == 4 and t.shape[0] == 1:
        t = t[0]
    if t.dim() == 2:
        t = t[None]
    if t.dim() != 3 or t.shape[0] not in (1, 3, 4):
        raise InputError(f"{name}: tensors must be (3, H, W), (1, 3, H, W) or (H, W); got {tuple(t.shape)}")
    if t.dtype == torch.uint8:
        t = t.float() / 255.0
    elif not t.is_floating_point():
        raise InputError(f"{name}: tensor of dtype {t.dtype}: use float in [0, 1] or uint8")
    if t.shape[0] == 4:
        t = t[:3]
    if t.shape[0] == 1:
        t = t.expand(3, -1, -1)
    return t.float()


# ---------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------


def output_paths(out_dir: str | os.PathLike, stem: str, outputs: Sequence[str]) -> list[Path]:
    """Files :meth:`Prediction.save` writes for an image ``stem`` and a model's ``outputs``."""
    out_dir = Path(out_dir)
    return [out_dir / f"{stem}{suffix}" for kind in outputs for suffix in OUTPUT_SUFFIXES[kind]]


@dataclass
class Prediction:
    """What :meth:`Predictor.predict` returns, at the input image's size.

    Attributes:
        depth: ``(H, W)`` float32 NumPy array, metres (None if the model has no depth head).
        aif: ``(H, W, 3)`` float32 NumPy array in [0, 1] (None if the model has no AiF head).
        tiles: number of tiles the image was processed in (1: whole image at once).
    """

    depth: np.ndarray | None
    aif: np.ndarray | None
    tiles: int = 1

    @property
    def size(self) -> tuple[int, int]:
        """``(H, W)``."""
        arr = self.depth if self.depth is not None else self.aif
        return tuple(arr.shape[:2])

    @property
    def outputs(self) -> tuple[str, ...]:
        return tuple(k for k in ("depth", "aif") if getattr(self, k) is not None)

    def as_tensors(self) -> tuple[Tensor | None, Tensor | None]:
        """``(depth (1, H, W) metres, aif (3, H, W))`` as float32 tensors (None where absent)."""
        d = torch.from_numpy(self.depth)[None] if self.depth is not None else None
        a = torch.from_numpy(np.ascontiguousarray(self.aif.transpose(2, 0, 1))) if self.aif is not None else None
        return d, a

    def save(
        self,
        out_dir: str | os.PathLike,
        stem: str,
        *,
        overwrite: bool = False,
        depth_range: tuple[float, float] | None = None,
    ) -> list[Path]:
        """Write this prediction's files (see :func:`output_paths`) as one group: all are written
        to temporary files first and renamed once every one is complete, so a full disk or a
        kill leaves none of them (and no temporary file). Returns the paths written.

        ``<stem>_depth.npy`` (float32 metres), ``<stem>_depth.png`` (16-bit millimetres, 0 =
        none), ``<stem>_depth_color.png`` (colour map with a scale bar in metres; range
        ``depth_range`` or the depth's min..max) and ``<stem>_aif.png`` (8-bit RGB).
        Refuses (:class:`InputError`, nothing written) if a file exists and not ``overwrite``,
        or if the depth holds NaN or infinite values (a broken model: never written silently).
        """
        import contextlib

        from .io import atomic_write, write_depth_png_mm, write_image, write_npy

        paths = output_paths(out_dir, stem, self.outputs)
        if not overwrite:
            for p in paths:
                if p.exists():
                    raise InputError(f"{p}: already exists (use --overwrite to replace it)")
        if self.depth is not None and not bool(np.isfinite(self.depth).all()):
            bad = int((~np.isfinite(self.depth)).sum())
            raise InputError(f"{stem}: the predicted depth has {bad} NaN or infinite pixels of {self.depth.size}; "
                             "nothing written (is the model broken?)")
        with contextlib.ExitStack() as group:
            tmps = [group.enter_context(atomic_write(p)) for p in paths]
            if self.depth is not None:
                write_npy(tmps[0], self.depth.astype(np.float32))
                write_depth_png_mm(tmps[1], torch.from_numpy(self.depth))
                save_depth_colormap(tmps[2], self.depth, *(depth_range or (None, None)))
            if self.aif is not None:
                write_image(tmps[-1], self.as_tensors()[1])
        return list(paths)

    def save_ply(
        self, path: str | os.PathLike, intrinsics, colors: np.ndarray | None = None, step: int = 1,
    ) -> int:
        """Write the depth as a coloured binary PLY point cloud (metres; x right, y down, z
        forward; :mod:`twohded.pointcloud`), atomically; returns the number of points.

        ``intrinsics``: a :class:`twohded.pointcloud.Intrinsics` of this image's size. Colours:
        ``colors`` ``(H, W, 3)`` in [0, 1] if given, else the all-in-focus image, else grey.
        ``step``: keep every ``step``-th row and column.
        """
        from .pointcloud import save_point_cloud

        if self.depth is None:
            raise InputError("this model predicts no depth: no point cloud")
        return save_point_cloud(path, self.depth, colors if colors is not None else self.aif, intrinsics, step)


def save_depth_colormap(
    path: str | os.PathLike,
    depth_m: np.ndarray | Tensor,
    vmin: float | None = None,
    vmax: float | None = None,
    cmap: str | None = None,
) -> Path:
    """Write a colour-mapped depth PNG with a vertical scale bar labelled in metres (atomic).

    The map is drawn at the depth's own resolution (upscaled so that its height is at least
    256 px, downscaled to at most 2048 px); ``vmin``/``vmax`` default to the finite min/max.
    Drawn with a look-up table and PIL, no matplotlib figure: :mod:`twohded.colormap`.
    """
    from .colormap import save_depth_colormap as save

    return save(path, depth_m, vmin, vmax, cmap)


# ---------------------------------------------------------------------------------------
# Tiling
# ---------------------------------------------------------------------------------------


def _starts(length: int, tile: int, overlap: int) -> list[int]:
    """Tile start positions covering ``length`` with tiles of ``tile`` px overlapping >= ``overlap``."""
    if length <= tile:
        return [0]
    n = math.ceil((length - overlap) / (tile - overlap))
    return [int(round(i * (length - tile) / (n - 1))) for i in range(n)]


def _ramp_1d(size: int, start: int, length: int, overlap: int) -> Tensor:
    """Blending weight along one axis: raised cosine over ``overlap`` px at edges shared with a neighbour."""
    w = torch.ones(size, dtype=torch.float32)
    r = min(overlap, size // 2)
    if r > 0:
        x = (torch.arange(r, dtype=torch.float32) + 0.5) / r
        ramp = 0.5 - 0.5 * torch.cos(math.pi * x)
        if start > 0:
            w[:r] = ramp
        if start + size < length:
            w[-r:] = torch.minimum(w[-r:], ramp.flip(0))
    return w


def tile_grid(height: int, width: int, max_side: int, overlap: int) -> tuple[int, int, list[tuple[int, int]]]:
    """``(tile_h, tile_w, [(top, left), ...])`` for an image; one tile if it fits ``max_side``."""
    if max(height, width) <= max_side:
        return height, width, [(0, 0)]
    tile = max(2 * MIN_SIDE, (max_side // 32) * 32)
    overlap = min(max(0, overlap), tile // 2)
    th, tw = min(height, tile), min(width, tile)
    tops = _starts(height, th, overlap)
    lefts = _starts(width, tw, overlap)
    return th, tw, [(t, l) for t in tops for l in lefts]


# ---------------------------------------------------------------------------------------
# The predictor
# ---------------------------------------------------------------------------------------


@dataclass
class Predictor:
    """A model ready for prediction (see the module docstring for the conventions).

    Build it with :func:`load_model` (from a checkpoint) or ``Predictor(model)``.

    Args:
        model: a twohded model (``model(x) -> ModelOutput``).
        device: ``None``/``"auto"`` (CUDA if available), ``"cpu"``, ``"cuda:1"``, ...
        fast: the fast path of :mod:`twohded.fast` (None: on CUDA, off on the CPU; True on the
            CPU folds the BatchNorms only, in fp32; False: plain fp32 eager).
        compile: ``torch.compile`` the model (with ``fast``).
        settings: full control (:class:`~twohded.fast.InferenceSettings`); overrides ``fast``
            and ``compile``.
        max_side: images with a longer side are processed in tiles of this size.
        overlap: minimum overlap of neighbouring tiles (pixels).
        batch_size: tiles (or same-size images in :meth:`predict_many`) per forward pass.
    """

    model: nn.Module
    device: str | torch.device | None = None
    fast: bool | None = None
    compile: bool = False
    max_side: int = DEFAULT_MAX_SIDE
    overlap: int = DEFAULT_OVERLAP
    batch_size: int = 4
    info: dict = field(default_factory=dict)
    settings: InferenceSettings | None = None

    def __post_init__(self) -> None:
        if self.max_side < 2 * MIN_SIDE:
            raise InputError(f"max_side must be at least {2 * MIN_SIDE} pixels, got {self.max_side}")
        if self.overlap < 0:
            raise InputError(f"overlap must be >= 0, got {self.overlap}")
        if self.batch_size < 1:
            raise InputError(f"batch_size must be >= 1, got {self.batch_size}")
        from .fast import InferenceSettings, prepare_inference

        self.device = resolve_device(self.device)
        if self.settings is None:
            self.settings = InferenceSettings.from_flags(self.fast, self.compile)
        base = self.model
        self._outputs = tuple(check_model(base, "Predictor").outputs)
        self._runner = prepare_inference(base, self.device, self.settings)
        self.settings = self._runner.settings
        self.fast = bool(self.settings.fast)
        self.compile = bool(self.settings.compile)
        self.model = self._runner.model

    @property
    def outputs(self) -> tuple[str, ...]:
        """What the model predicts: ``("depth", "aif")``, ``("depth",)`` or ``("aif",)``."""
        return self._outputs

    @property
    def runner(self) -> FastModel:
        """The :class:`~twohded.fast.FastModel` that runs the network (``describe()`` says how)."""
        return self._runner

    def _forward(self, x: Tensor) -> tuple[Tensor | None, Tensor | None]:
        """``(B, 3, H, W)`` CPU float -> ``(depth (B, 1, H, W), aif (B, 3, H, W))`` float32 CPU."""
        out = self._runner(x)
        depth = out.depth.float().cpu() if out.depth is not None else None
        aif = out.aif.float().clamp(0.0, 1.0).cpu() if out.aif is not None else None
        return depth, aif

    def _finish(self, depth: Tensor | None, aif: Tensor | None, tiles: int) -> Prediction:
        d = depth.reshape(depth.shape[-2:]).clamp(min=0.0).contiguous().numpy() if depth is not None else None
        a = np.ascontiguousarray(aif.permute(1, 2, 0).numpy()) if aif is not None else None
        return Prediction(depth=d, aif=a, tiles=tiles)

    def predict(self, image: Any) -> Prediction:
        """Depth and AiF image of one image (path, PIL, NumPy or tensor); see :class:`Prediction`."""
        x = to_image_tensor(image)
        h, w = x.shape[-2:]
        th, tw, corners = tile_grid(h, w, self.max_side, self.overlap)
        if len(corners) == 1:
            depth, aif = self._forward(x[None])
            return self._finish(depth[0] if depth is not None else None, aif[0] if aif is not None else None, 1)
        return self._predict_tiled(x, th, tw, corners)

    def _predict_tiled(self, x: Tensor, th: int, tw: int, corners: list[tuple[int, int]]) -> Prediction:
        h, w = x.shape[-2:]
        overlap = min(self.overlap, max(th, tw) // 2)
        acc_d = torch.zeros(1, h, w) if "depth" in self.outputs else None
        acc_a = torch.zeros(3, h, w) if "aif" in self.outputs else None
        acc_w = torch.zeros(1, h, w)
        for i in range(0, len(corners), self.batch_size):
            chunk = corners[i : i + self.batch_size]
            batch = torch.stack([x[:, t : t + th, l : l + tw] for t, l in chunk])
            depth, aif = self._forward(batch)
            for j, (t, l) in enumerate(chunk):
                wt = _ramp_1d(th, t, h, overlap)[:, None] * _ramp_1d(tw, l, w, overlap)[None, :]
                acc_w[:, t : t + th, l : l + tw] += wt
                if depth is not None:
                    acc_d[:, t : t + th, l : l + tw] += depth[j] * wt
                if aif is not None:
                    acc_a[:, t : t + th, l : l + tw] += aif[j] * wt
        depth = acc_d / acc_w if acc_d is not None else None
        aif = (acc_a / acc_w).clamp(0.0, 1.0) if acc_a is not None else None
        return self._finish(depth, aif, len(corners))

    def predict_many(self, images: Iterable[Any]) -> list[Prediction]:
        """Predict several images; consecutive images of one size (that need no tiling) share a batch."""
        return [p for _, p in self.iter_predict(images)]

    def iter_predict(self, images: Iterable[Any], names: Iterable[Any] | None = None):
        """Yield ``(name, Prediction)`` in input order, batching consecutive same-size images.

        ``names`` (default: the inputs themselves) are passed through, for progress and saving.
        """
        images = list(images)
        names = list(names) if names is not None else images
        pending: list[tuple[Any, Tensor]] = []

        def flush():
            if not pending:
                return []
            depth, aif = self._forward(torch.stack([t for _, t in pending]))
            out = [
                (n, self._finish(depth[k] if depth is not None else None, aif[k] if aif is not None else None, 1))
                for k, (n, _) in enumerate(pending)
            ]
            pending.clear()
            return out

        for name, image in zip(names, images):
            x = to_image_tensor(image, str(name))
            fits = max(x.shape[-2:]) <= self.max_side
            if pending and (not fits or pending[0][1].shape != x.shape or len(pending) >= self.batch_size):
                yield from flush()
            if fits:
                pending.append((name, x))
            else:
                yield name, self.predict(x)
        yield from flush()

    __call__ = predict


def load_model(
    checkpoint: str | os.PathLike | dict,
    *,
    model: str | None = None,
    device: str | torch.device | None = None,
    fast: bool | None = None,
    compile: bool = False,
    use_ema: bool = True,
    max_side: int = DEFAULT_MAX_SIDE,
    overlap: int = DEFAULT_OVERLAP,
    batch_size: int = 4,
    settings: InferenceSettings | None = None,
    sha256: str | None = None,
) -> Predictor:
    """Load a checkpoint (file, run folder with best.pt / last.pt, URL or shipped name) as a :class:`Predictor`.

    Args:
        checkpoint: path, loaded checkpoint dict (see :mod:`twohded.checkpoint`), ``http(s)://``
            URL (downloaded once into the cache, hash-checked) or the name of a shipped model
            (see :mod:`twohded.pretrained`).
        sha256: expected SHA-256 of a URL's file (or a ``#sha256=<hex>`` suffix on the URL).
        model: refuse a checkpoint of another variant (e.g. ``"2hded"``).
        device, fast, compile, max_side, overlap, batch_size, settings: see :class:`Predictor`.
        use_ema: use the EMA weights when the checkpoint has them.

    Raises:
        InputError: missing or corrupt file, another variant, weights that do not fit, a
            shipped name with no weights yet, a download that fails or does not verify.
    """
    from .checkpoint import load_checkpoint, model_from_checkpoint
    from .pretrained import resolve_checkpoint

    if not isinstance(checkpoint, dict):
        checkpoint = resolve_checkpoint(checkpoint, sha256=sha256)
    state = checkpoint if isinstance(checkpoint, dict) else load_checkpoint(checkpoint)
    net = model_from_checkpoint(state, expect_name=model, use_ema=use_ema)
    info = {"checkpoint": state.get("path"), "model_name": state["model_name"], "step": state.get("step")}
    return Predictor(
        net, device=device, fast=fast, compile=compile, max_side=max_side, overlap=overlap,
        batch_size=batch_size, info=info, settings=settings,
    )

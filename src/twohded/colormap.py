"""Colour-mapped depth images with a scale bar in metres, drawn with NumPy and PIL (no figure).

A colour map is a ``(256, 3)`` uint8 look-up table (LUT). ``turbo`` and ``viridis`` (and their
reversed ``_r`` forms) ship with twohded in ``resources/colormaps.npz`` (matplotlib's tables,
written by ``scripts/make_colormaps.py``), so predicting needs no matplotlib; any other name is
taken once from matplotlib (``matplotlib.colormaps[name]``) and cached. Values map to entries
as matplotlib maps them: ``index = floor(256 * (v - vmin) / (vmax - vmin))`` clipped to 0..255;
NaN and infinite values are drawn white.

:func:`render_depth_colormap` draws what ``twohded predict`` writes as ``<stem>_depth_color.png``:
the map at the depth's resolution (upscaled by pixel repetition so that it is at least 256 px
high, box-filtered down to at most 2048 px), and on its right a vertical colour bar with ticks
at round values, labelled in metres, titled "depth (m)".
"""

from __future__ import annotations

import functools
import math
import os
from importlib import resources
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

#: the default colour map of depth images: near = warm, far = cold
DEPTH_CMAP = "turbo_r"
#: colour maps stored in resources/colormaps.npz (each also reversed with "_r")
SHIPPED = ("turbo", "viridis")
MIN_HEIGHT_PX = 256
MAX_HEIGHT_PX = 2048
BAD_COLOR = (255, 255, 255)

__all__ = ["DEPTH_CMAP", "apply_colormap", "colormap_lut", "nice_ticks", "render_depth_colormap",
           "save_depth_colormap"]


@functools.lru_cache(maxsize=16)
def colormap_lut(name: str = DEPTH_CMAP) -> np.ndarray:
    """The ``(256, 3)`` uint8 RGB table of colour map ``name`` (read-only array).

    Shipped maps need no matplotlib; other names need it. :class:`InputError` for an unknown name.
    """
    from .errors import InputError

    base, reverse = (name[:-2], True) if name.endswith("_r") else (name, False)
    if base in SHIPPED:
        with resources.files("twohded").joinpath("resources/colormaps.npz").open("rb") as fh:
            table = np.load(fh)[base]
    else:
        try:
            import matplotlib
        except ImportError:
            raise InputError(f"colour map {name!r} needs matplotlib (shipped: {', '.join(SHIPPED)})") from None
        try:
            cmap = matplotlib.colormaps[base]
        except KeyError:
            raise InputError(f"unknown colour map {name!r}") from None
        table = cmap(np.linspace(0.0, 1.0, 256), bytes=True)[:, :3]
    table = np.ascontiguousarray(table[::-1] if reverse else table, dtype=np.uint8)
    table.setflags(write=False)
    return table


def apply_colormap(values: np.ndarray, vmin: float, vmax: float, name: str = DEPTH_CMAP) -> np.ndarray:
    """``(H, W)`` values -> ``(H, W, 3)`` uint8 RGB: ``vmin`` maps to the first entry, ``vmax`` to the last.

    Values outside ``[vmin, vmax]`` take the end colours; NaN / inf are white. ``vmax > vmin``.
    """
    v = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(v)
    x = (np.where(finite, v, vmin) - vmin) * (256.0 / (vmax - vmin))
    idx = np.clip(np.floor(x), 0, 255).astype(np.intp)
    rgb = colormap_lut(name)[idx]
    if not finite.all():
        rgb[~finite] = BAD_COLOR
    return rgb


def nice_ticks(lo: float, hi: float, max_ticks: int = 8) -> tuple[list[float], int]:
    """Round tick values in ``[lo, hi]`` (steps of 1, 2, 2.5 or 5 times a power of ten) and the
    number of decimals that writes each exactly; at most ``max_ticks`` ticks, at least 2."""
    span = hi - lo
    raw = span / max(max_ticks - 1, 1)
    power = 10.0 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw * (1 - 1e-9))
    first = math.ceil(lo / step - 1e-9)
    last = math.floor(hi / step + 1e-9)
    ticks = [k * step for k in range(first, last + 1)]
    if len(ticks) < 2:
        ticks = [lo, hi]
    decimals = next((d for d in range(8) if all(abs(round(t, d) - t) <= 1e-9 * max(abs(t), span) for t in ticks)), 8)
    return ticks, decimals


def _font(size_px: int) -> ImageFont.ImageFont:
    """PIL's built-in scalable font at ``size_px`` (Pillow >= 10.1 with FreeType), else its bitmap font."""
    try:
        return ImageFont.load_default(size=size_px)
    except (TypeError, ImportError, OSError):
        return ImageFont.load_default()


def _display(depth: np.ndarray) -> np.ndarray:
    """Depth resampled to the display height (``MIN_HEIGHT_PX`` .. ``MAX_HEIGHT_PX``), aspect kept."""
    h, w = depth.shape
    disp_h = min(max(h, MIN_HEIGHT_PX), MAX_HEIGHT_PX)
    disp_w = max(1, round(w * disp_h / h))
    if disp_h >= h:  # pixel repetition (nearest), as the map is drawn at its own resolution
        rows = (np.arange(disp_h) * h) // disp_h
        cols = (np.arange(disp_w) * w) // disp_w
        return depth[rows][:, cols]
    finite = np.isfinite(depth)
    img = Image.fromarray(np.where(finite, depth, np.nan).astype(np.float32), mode="F")
    return np.asarray(img.resize((disp_w, disp_h), Image.Resampling.BOX), dtype=np.float32)


def render_depth_colormap(
    depth_m: np.ndarray, vmin: float | None = None, vmax: float | None = None, cmap: str | None = None,
) -> Image.Image:
    """``(H, W)`` depth in metres -> RGB PIL image: the colour map and a scale bar in metres.

    ``vmin`` / ``vmax`` (metres) default to the finite minimum / maximum (``vmax`` is raised
    to ``vmin + 1 mm`` if not above it); ``cmap`` defaults to :data:`DEPTH_CMAP`.
    """
    d = np.asarray(depth_m, dtype=np.float32)
    d = d.reshape(d.shape[-2:])
    finite = d[np.isfinite(d)]
    lo = float(vmin) if vmin is not None else (float(finite.min()) if finite.size else 0.0)
    hi = float(vmax) if vmax is not None else (float(finite.max()) if finite.size else 1.0)
    if not hi > lo:
        hi = lo + 1e-3
    name = cmap or DEPTH_CMAP
    body = apply_colormap(_display(d), lo, hi, name)
    disp_h, disp_w = body.shape[:2]
    font_px = int(round(max(11.0, min(39.0, disp_h / 20.0))))
    font = _font(font_px)
    gap, bar_w, tick = round(0.02 * disp_h), max(10, round(0.035 * disp_h)), max(3, font_px // 3)
    ticks, decimals = nice_ticks(lo, hi)
    labels = [f"{t:.{decimals}f}" for t in ticks]
    label_w = max(int(np.ceil(font.getlength(s))) for s in labels)
    title = _vertical_text("depth (m)", font)
    total_w = disp_w + gap + bar_w + tick + 4 + label_w + font_px // 2 + title.width + font_px // 3
    canvas = Image.new("RGB", (total_w, disp_h), "white")
    canvas.paste(Image.fromarray(body), (0, 0))
    top, bottom = round(0.04 * disp_h), round(0.96 * disp_h)
    x0 = disp_w + gap
    ramp = np.linspace(hi, lo, bottom - top)[:, None].repeat(bar_w, axis=1)
    canvas.paste(Image.fromarray(apply_colormap(ramp, lo, hi, name)), (x0, top))
    draw = ImageDraw.Draw(canvas)
    draw.rectangle((x0, top, x0 + bar_w - 1, bottom - 1), outline="black")
    x1 = x0 + bar_w
    for t, s in zip(ticks, labels):
        y = bottom - 1 - (t - lo) / (hi - lo) * (bottom - 1 - top)
        draw.line((x1, y, x1 + tick, y), fill="black")
        _, b_top, _, b_bottom = draw.textbbox((0, 0), s, font=font)
        draw.text((x1 + tick + 4, y - (b_top + b_bottom) / 2), s, fill="black", font=font)
    tx = x1 + tick + 4 + label_w + font_px // 2
    canvas.paste(title, (tx, (top + bottom - title.height) // 2))
    return canvas


def _vertical_text(text: str, font: ImageFont.ImageFont) -> Image.Image:
    """``text`` in black on white, rotated to read bottom-to-top (as a colour bar's title)."""
    left, top, right, bottom = font.getbbox(text)
    img = Image.new("RGB", (right - left + 2, bottom - top + 2), "white")
    ImageDraw.Draw(img).text((1 - left, 1 - top), text, fill="black", font=font)
    return img.rotate(90, expand=True)


def save_depth_colormap(
    path: str | os.PathLike, depth_m, vmin: float | None = None, vmax: float | None = None, cmap: str | None = None,
) -> Path:
    """Write :func:`render_depth_colormap` of ``depth_m`` (``(H, W)`` or ``(1, H, W)`` metres,
    NumPy array or tensor) as a PNG at ``path``, atomically. Returns the path."""
    from .io import atomic_write

    if hasattr(depth_m, "detach"):
        depth_m = depth_m.detach().float().cpu().numpy()
    image = render_depth_colormap(np.asarray(depth_m, dtype=np.float32), vmin, vmax, cmap)
    path = Path(path)
    with atomic_write(path) as tmp:
        image.save(tmp, format="PNG")
    return path

"""Figures: panels of images and colour-mapped depth maps, written atomically (matplotlib, Agg)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from .colormap import DEPTH_CMAP  # near = warm, far = cold
from .io import atomic_write


@dataclass
class Panel:
    """One tile of a figure.

    ``data`` is an image ``(3, H, W)`` in [0, 1] (``kind="image"``), a depth map ``(H, W)`` or
    ``(1, H, W)`` in metres (``kind="depth"``, drawn with a colour bar in metres) or any scalar
    map (``kind="map"``, e.g. an error or sigma map, with ``unit`` on its colour bar).
    """

    title: str
    data: torch.Tensor | np.ndarray
    kind: str = "image"
    vmin: float | None = None
    vmax: float | None = None
    unit: str = "m"


def _hw(data) -> np.ndarray:
    arr = data.detach().float().cpu().numpy() if isinstance(data, torch.Tensor) else np.asarray(data)
    return arr.reshape(arr.shape[-2:]) if arr.ndim == 3 and arr.shape[0] == 1 else arr


def save_figure(path: str | os.PathLike, rows: Sequence[Sequence[Panel]], tile_inches: float = 3.0, title: str | None = None) -> Path:
    """Draw ``rows`` of :class:`Panel` into one PNG at ``path`` (atomically). Returns the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_rows, n_cols = len(rows), max(len(r) for r in rows)
    first = _hw(rows[0][0].data)
    aspect = first.shape[-2] / first.shape[-1] if first.ndim >= 2 else 1.0
    fig, axes = plt.subplots(
        n_rows,
        n_cols,
        figsize=(tile_inches * n_cols, tile_inches * aspect * n_rows + 0.5 * n_rows),
        squeeze=False,
    )
    for r, row in enumerate(rows):
        for c in range(n_cols):
            ax = axes[r][c]
            ax.axis("off")
            if c >= len(row):
                continue
            p = row[c]
            arr = _hw(p.data)
            if p.kind == "image":
                ax.imshow(np.clip(arr.transpose(1, 2, 0), 0, 1))
            else:
                cmap = DEPTH_CMAP if p.kind == "depth" else "magma"
                im = ax.imshow(arr, cmap=cmap, vmin=p.vmin, vmax=p.vmax)
                bar = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02)
                bar.set_label(p.unit)
            ax.set_title(p.title, fontsize=9)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    path = Path(path)
    with atomic_write(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return path

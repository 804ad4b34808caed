"""Image registration: align one photo of a scene onto another (e.g. DFD's f/8 onto its f/2.8).

The DFD indoor f/8 photo is offset from the f/2.8 one of the same scene by up to ~12 px, and
the offset varies slightly across the frame (the two apertures were shot one after the other
on a tripod; focus breathing scales the frame a little). Training a deblurring head against
the unaligned photo teaches it to shift, and scoring against it mixes misregistration into
PSNR. :func:`register_affine` finds an affine map that lays ``moving`` on ``fixed``:

1. a global translation by phase correlation (:func:`phase_shift`, integer peak refined to
   sub-pixel by a parabola through its neighbours);
2. Gauss-Newton (Lucas-Kanade) refinement of the six affine parameters on both images
   smoothed by ``smooth`` px, with a gain and offset between them fitted at every step
   (exposure differs between apertures), over the frame less ``margin`` px. A symmetric blur
   difference between the images (the f/2.8 photo is blurrier) hardly biases it.

:func:`warp` resamples a ``(C, H, W)`` image with that map (cubic spline, reflect at the
edges; ``order=0`` for depth). Coordinates are ``(row, col)`` pixels, as
``scipy.ndimage.affine_transform`` takes them: output pixel ``p`` reads ``moving`` at
``matrix @ p + offset``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

__all__ = ["Affine", "phase_shift", "register_affine", "warp", "register_onto"]


@dataclass(frozen=True)
class Affine:
    """``moving`` coordinates of ``fixed`` pixel ``p`` (row, col): ``matrix @ p + offset``."""

    matrix: np.ndarray  # (2, 2)
    offset: np.ndarray  # (2,) pixels

    def shift_at(self, point: tuple[float, float]) -> tuple[float, float]:
        """How far (rows, cols; pixels) ``moving`` content at ``point`` moves to land on ``fixed``."""
        p = np.asarray(point, dtype=np.float64)
        return tuple(float(v) for v in p - (self.matrix @ p + self.offset))

    def to_list(self) -> list[float]:
        """``[m00, m01, m10, m11, o0, o1]`` (plain floats, e.g. for JSON)."""
        return [float(v) for v in (*self.matrix.ravel(), *self.offset)]


def phase_shift(fixed: np.ndarray, moving: np.ndarray) -> np.ndarray:
    """Translation ``(rows, cols)`` in pixels that moves ``moving`` onto ``fixed`` (both (H, W)).

    Phase correlation with a Hann window; the integer peak is refined by a parabola through
    its two neighbours on each axis (about 0.1 px).
    """
    h, w = fixed.shape
    win = np.outer(np.hanning(h), np.hanning(w))
    a = np.fft.fft2((fixed - fixed.mean()) * win)
    b = np.fft.fft2((moving - moving.mean()) * win)
    cross = a * np.conj(b)
    corr = np.fft.ifft2(cross / np.maximum(np.abs(cross), 1e-12)).real
    peak = np.unravel_index(int(np.argmax(corr)), corr.shape)
    out = np.zeros(2)
    for axis, n in enumerate((h, w)):
        i = peak[axis]
        idx = [peak[0], peak[1]]
        idx[axis] = (i - 1) % n
        left = corr[tuple(idx)]
        idx[axis] = (i + 1) % n
        right = corr[tuple(idx)]
        centre = corr[peak]
        denom = left - 2 * centre + right
        frac = 0.5 * (left - right) / denom if abs(denom) > 1e-12 else 0.0
        s = i + float(np.clip(frac, -0.5, 0.5))
        out[axis] = s - n if s > n / 2 else s
    return out


def register_affine(moving: np.ndarray, fixed: np.ndarray, smooth: float = 1.5, margin: int = 32,
                    iters: int = 30) -> Affine:
    """Affine map laying ``moving`` (H, W) on ``fixed`` (H, W), both grey images of one scene.

    Args:
        moving, fixed: (H, W) float images (any range; exposure may differ).
        smooth: Gaussian smoothing (pixels) of both images before the refinement.
        margin: pixels on each side left out of the refinement (warp edges).
        iters: largest number of Gauss-Newton steps.

    Returns:
        :class:`Affine` (``fixed`` pixel -> ``moving`` coordinates).
    """
    moving = np.asarray(moving, dtype=np.float64)
    fixed = np.asarray(fixed, dtype=np.float64)
    matrix, offset = np.eye(2), -phase_shift(fixed, moving)
    ms, fs = ndi.gaussian_filter(moving, smooth), ndi.gaussian_filter(fixed, smooth)
    h, w = fixed.shape
    yy, xx = np.mgrid[margin : h - margin, margin : w - margin].astype(np.float64)
    y, x, f = yy.ravel(), xx.ravel(), fs[margin : h - margin, margin : w - margin].ravel()
    grad_y, grad_x = np.gradient(ms)
    for _ in range(iters):
        coords = np.stack([matrix[0, 0] * y + matrix[0, 1] * x + offset[0], matrix[1, 0] * y + matrix[1, 1] * x + offset[1]])
        m, gy, gx = (ndi.map_coordinates(a, coords, order=1, mode="reflect") for a in (ms, grad_y, grad_x))
        gain, bias = np.linalg.lstsq(np.stack([m, np.ones_like(m)], 1), f, rcond=None)[0]
        jac = gain * np.stack([gy * y, gy * x, gx * y, gx * x, gy, gx], axis=1)
        step = np.linalg.lstsq(jac, f - (gain * m + bias), rcond=None)[0]
        matrix = matrix + step[:4].reshape(2, 2)
        offset = offset + step[4:]
        if np.abs(step[4:]).max() < 1e-3 and np.abs(step[:4]).max() * max(h, w) < 1e-3:
            break
    return Affine(matrix, offset)


def warp(image: np.ndarray, affine: Affine, order: int = 3) -> np.ndarray:
    """Resample each channel of ``image`` (C, H, W) at ``affine`` (reflect at the edges).

    ``order`` 3 (cubic spline) for photos, 0 (nearest) for depth maps.
    """
    out = np.stack([ndi.affine_transform(c, affine.matrix, affine.offset, order=order, mode="reflect") for c in image])
    return out.astype(image.dtype, copy=False)


def register_onto(moving: np.ndarray, fixed: np.ndarray) -> tuple[np.ndarray, Affine]:
    """``moving`` (3, H, W) in [0, 1] warped onto ``fixed`` (3, H, W), and the map used.

    The map is estimated on the channel means; the result is clipped to [0, 1].
    """
    affine = register_affine(moving.mean(0), fixed.mean(0))
    return np.clip(warp(moving.astype(np.float64), affine), 0.0, 1.0).astype(moving.dtype), affine

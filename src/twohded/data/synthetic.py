"""Built-in synthetic RGB-D scenes: a procedural, seed-deterministic, download-free generator.

Each scene is an all-in-focus (AiF) image and its metric depth map (metres). The defocused
input is made from them by :func:`twohded.render_defocus`. This is the default data of the
project: the README's first command, the demo and the CI training runs use it, and models
pre-train on it. Units: depth and 3-D sizes in **metres**, image sizes and texture scales in
**pixels**.

Design (aimed at NYU-Depth-v2-like indoor statistics, without giving a depth network shortcuts):

* **Camera.** A pinhole with focal length ``focal_length_px`` (default ``0.81 * max(H, W)``,
  NYU's 518.8 px at 640 px). Depth is the z-depth along the optical axis, as in NYU.
* **Background** (painted first). With probability ``room_prob`` a box-shaped room (floor,
  ceiling, left/right/back wall; 2.5-7 m wide, 2.4-3.2 m high, 3-12 m deep, camera 1.0-1.7 m
  above the floor) seen by a camera with random yaw (+-30 deg), pitch (+-12 deg) and roll
  (+-4 deg): every wall is a slanted plane whose depth grows towards the vanishing point.
  The room is scaled (scaling a scene leaves the image geometry unchanged) so that its
  farthest point lies at a random distance in the upper 55 % of ``depth_range_m``, so the far
  end of the range is used. Otherwise one large plane slanted by up to ``max_slant_deg``,
  meeting a fronto-parallel far wall (in the same upper part of the range) where it recedes.
* **Decals** (``n_decals``): posters, rugs, panels painted *onto* a background surface with
  their own texture and no depth change, so that not every colour edge is a depth edge.
* **Occluders** (``n_objects``): rotated rectangles (some thin, like legs and poles), rounded
  rectangles, ellipses, convex polygons and 3-D boxes (cuboids, ray-traced, with per-face
  shading). Planar shapes are fronto-parallel or slanted (a true 3-D plane, up to
  ``max_slant_deg``). Each is anchored at a random pixel, its depth log-uniform between the
  near end of the range and the background behind it; its image size is drawn independently
  of its depth (fraction ``object_size`` of ``min(H, W)``). They are drawn far to near with a
  z-buffer (nearer wins; interpenetrating slanted planes resolve per pixel). Edges are
  anti-aliased over about one pixel (analytic signed distance, or 2x2 supersampling for boxes);
  depth takes the object where its coverage is at least one half.
* **Textures** (one per surface): multi-octave value noise with a random spectral slope
  (1/f-like; octave amplitude ``cell**beta``, beta 0.5-1.3, anisotropic), alone or as the
  detail layer of a structured pattern: soft-to-sharp stripes, tiles/bricks/planks/checker
  with grout lines, wood grain (warped rings), thresholded blotches (sharp edges at several
  scales), or near-plain paint. Colours: random luminance 0.12-0.85 with a moderate tint; the
  second palette colour is either a darker shade or another colour, blended by a random
  contrast; plus a mild linear shading ramp. Textures live in **screen space** and their
  scales (pixels), patterns and colours are drawn independently of depth, so texture scale,
  contrast or colour does not encode depth: a network has to use blur (or scene layout).
* **Range.** Every depth value is clipped to ``depth_range_m``; the AiF to [0, 1].

Determinism: everything is drawn from ``numpy.random.default_rng(seed)`` (no global RNG
state). Per-pixel work uses only IEEE-exact arithmetic (+, -, *, /, sqrt, floor, min/max,
gathers; no transcendental functions, BLAS or FFT), and the few scalar transcendental results
(``exp``, ``log``, ``tan``) are rounded to float32, so the same seed and config give
bit-identical tensors across runs and, in practice, across machines (with the same NumPy
random streams; NumPy documents those as stable for ``random``, ``uniform``, ``integers``).

Speed (vectorised NumPy, one thread): about 20 ms for a 240x320 scene, 80 ms for 480x640.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

import numpy as np
import torch

from ..errors import InputError

__all__ = ["SceneConfig", "Scene", "make_scene", "make_scenes"]

MIN_SIZE_PX = 32
_F32 = np.float32


# --------------------------------------------------------------------------------------------
# Validation helpers
# --------------------------------------------------------------------------------------------


def _is_int(x: object) -> bool:
    return isinstance(x, numbers.Integral) and not isinstance(x, bool)


def _number(x: object, name: str) -> float:
    if isinstance(x, bool) or not isinstance(x, numbers.Real):
        raise InputError(f"SceneConfig.{name} must be a number, got {x!r}")
    return float(x)


def _pair(x: object, name: str, kind: type) -> tuple:
    try:
        a, b = x  # type: ignore[misc]
    except (TypeError, ValueError):
        raise InputError(f"SceneConfig.{name} must be a pair (min, max), got {x!r}") from None
    if kind is int:
        if not (_is_int(a) and _is_int(b)):
            raise InputError(f"SceneConfig.{name} must be a pair of integers, got {x!r}")
        return int(a), int(b)
    return _number(a, name), _number(b, name)


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SceneConfig:
    """Settings of the synthetic scene generator (validated on construction).

    Attributes:
        height: image height, pixels (>= 32).
        width: image width, pixels (>= 32).
        depth_range_m: ``(near, far)`` metres, ``0 < near < far``; every depth lies within it.
            Default NYU's 0.7-10 m.
        n_objects: inclusive ``(min, max)`` number of occluding objects per scene.
        n_decals: inclusive ``(min, max)`` number of flat patches painted onto the background
            (texture edges without depth edges).
        object_size: ``(min, max)`` object extent as a fraction of ``min(height, width)``
            (drawn log-uniformly, independently of depth), each in (0, 2].
        focal_length_px: pinhole focal length, pixels; ``None`` means ``0.81 * max(H, W)``
            (NYU's 518.8 px at 640 px width). Only shapes the geometry (room, slants, boxes).
        room_prob: probability that the background is a room (else one slanted plane).
        slant_prob: probability that a planar object is slanted rather than fronto-parallel.
        max_slant_deg: largest angle between a slanted plane's normal and the optical axis,
            degrees, in [0, 75].
    """

    height: int = 240
    width: int = 320
    depth_range_m: tuple[float, float] = (0.7, 10.0)
    n_objects: tuple[int, int] = (3, 8)
    n_decals: tuple[int, int] = (0, 3)
    object_size: tuple[float, float] = (0.1, 0.75)
    focal_length_px: float | None = None
    room_prob: float = 0.75
    slant_prob: float = 0.5
    max_slant_deg: float = 60.0

    def __post_init__(self) -> None:
        for name in ("height", "width"):
            value = getattr(self, name)
            if not _is_int(value) or value < MIN_SIZE_PX:
                raise InputError(
                    f"SceneConfig.{name} must be an integer >= {MIN_SIZE_PX} pixels, got {value!r}"
                )
            object.__setattr__(self, name, int(value))
        near, far = _pair(self.depth_range_m, "depth_range_m", float)
        if not (math.isfinite(near) and math.isfinite(far) and 0.0 < near < far):
            raise InputError(
                f"SceneConfig.depth_range_m must be finite metres with 0 < near < far, "
                f"got {self.depth_range_m!r}"
            )
        object.__setattr__(self, "depth_range_m", (near, far))
        for name in ("n_objects", "n_decals"):
            lo, hi = _pair(getattr(self, name), name, int)
            if not (0 <= lo <= hi <= 1000):
                raise InputError(
                    f"SceneConfig.{name} must be an inclusive range 0 <= min <= max <= 1000, "
                    f"got {getattr(self, name)!r}"
                )
            object.__setattr__(self, name, (lo, hi))
        lo, hi = _pair(self.object_size, "object_size", float)
        if not (0.0 < lo <= hi <= 2.0):
            raise InputError(
                f"SceneConfig.object_size must be fractions of min(H, W) with 0 < min <= max <= 2, "
                f"got {self.object_size!r}"
            )
        object.__setattr__(self, "object_size", (lo, hi))
        if self.focal_length_px is not None:
            f = _number(self.focal_length_px, "focal_length_px")
            if not (math.isfinite(f) and f > 0):
                raise InputError(f"SceneConfig.focal_length_px must be > 0 pixels, got {f!r}")
            object.__setattr__(self, "focal_length_px", f)
        for name in ("room_prob", "slant_prob"):
            p = _number(getattr(self, name), name)
            if not 0.0 <= p <= 1.0:
                raise InputError(f"SceneConfig.{name} must be a probability in [0, 1], got {p!r}")
            object.__setattr__(self, name, p)
        s = _number(self.max_slant_deg, "max_slant_deg")
        if not 0.0 <= s <= 75.0:
            raise InputError(f"SceneConfig.max_slant_deg must be in [0, 75] degrees, got {s!r}")
        object.__setattr__(self, "max_slant_deg", s)

    @property
    def focal_px(self) -> float:
        """The focal length in pixels actually used (resolves the ``None`` default)."""
        if self.focal_length_px is not None:
            return float(self.focal_length_px)
        return 0.81 * max(self.height, self.width)


@dataclass(frozen=True, eq=False)
class Scene:
    """One synthetic scene.

    Attributes:
        aif: ``(3, H, W)`` float32 in [0, 1], the all-in-focus image.
        depth: ``(1, H, W)`` float32 metres, every pixel finite and within ``depth_range_m``.
        seed: the seed it was made from.
    """

    aif: torch.Tensor
    depth: torch.Tensor
    seed: int


def make_scene(seed: int, config: SceneConfig = SceneConfig()) -> Scene:
    """Generate the scene of ``seed`` (a non-negative integer) under ``config``.

    Same seed and config give bit-identical tensors. Raises :class:`InputError` for a bad seed
    or config.
    """
    if not _is_int(seed) or seed < 0:
        raise InputError(f"make_scene: seed must be a non-negative integer, got {seed!r}")
    if not isinstance(config, SceneConfig):
        raise InputError(f"make_scene: config must be a SceneConfig, got {type(config).__name__}")
    seed = int(seed)
    gen = _Generator(config, np.random.default_rng(seed))
    aif, depth = gen.run()
    return Scene(aif=torch.from_numpy(aif), depth=torch.from_numpy(depth[None]), seed=seed)


def make_scenes(seeds: Iterable[int], config: SceneConfig = SceneConfig()) -> Iterator[Scene]:
    """Lazily generate the scenes of ``seeds`` (one :func:`make_scene` each)."""
    for seed in seeds:
        yield make_scene(seed, config)


# --------------------------------------------------------------------------------------------
# Random helpers (scalar transcendental results are rounded to float32, see module docstring)
# --------------------------------------------------------------------------------------------


def _r32(x: float) -> float:
    return float(np.float32(x))


def _uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


def _loguniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    if hi <= lo:
        return float(lo)
    return _r32(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def _unit2(rng: np.random.Generator) -> tuple[float, float]:
    """A uniformly random 2-D unit vector (cos, sin), by rejection: arithmetic only."""
    while True:
        x, y = rng.uniform(-1.0, 1.0, 2)
        r2 = x * x + y * y
        if 1e-4 < r2 <= 1.0:
            r = math.sqrt(r2)
            return float(x / r), float(y / r)


def _half_angle_rot(rng: np.random.Generator, max_deg: float) -> tuple[float, float]:
    """(cos, sin) of an angle in [-max_deg, max_deg] via t = tan(angle / 2): arithmetic only."""
    t = _uniform(rng, -1.0, 1.0) * _r32(math.tan(math.radians(max_deg) / 2))
    d = 1.0 + t * t
    return (1.0 - t * t) / d, 2.0 * t / d


# --------------------------------------------------------------------------------------------
# Textures
# --------------------------------------------------------------------------------------------


def _axis_lattice(rng: np.random.Generator, n: int, cell: float):
    pos = (np.arange(n, dtype=np.float64) + _uniform(rng, 0.0, cell)) / cell
    i0 = np.floor(pos).astype(np.intp)
    t = (pos - i0).astype(_F32)
    return i0, t * t * (_F32(3.0) - _F32(2.0) * t), int(i0[-1]) + 2


def _value_noise(rng: np.random.Generator, h: int, w: int, cell_y: float, cell_x: float) -> np.ndarray:
    """Smoothstep-interpolated lattice noise in [0, 1], cells of ``cell_y x cell_x`` pixels."""
    iy, wy, gh = _axis_lattice(rng, h, cell_y)
    ix, wx, gw = _axis_lattice(rng, w, cell_x)
    g = rng.random((gh, gw), dtype=_F32)
    rows = g[:, ix]
    rows += (g[:, ix + 1] - rows) * wx
    out = rows[iy]
    out += (rows[iy + 1] - out) * wy[:, None]
    return out


def _fbm(rng: np.random.Generator, h: int, w: int, cell_max: float, beta: float, aniso: float) -> np.ndarray:
    """Sum of value-noise octaves (cells halving from ``cell_max`` to ~2 px), amplitude
    ``cell**beta`` (a 1/f-like spectrum), in [0, 1] with mean 0.5 and std about 0.17.

    The normalisation uses the octave amplitudes, not the values drawn, so the contrast does not
    depend on the size of the region evaluated (a small object is not more contrasted than a
    wall)."""
    out = np.zeros((h, w), _F32)
    cell = max(cell_max, 2.0)
    amp_sum, amp_sq = 0.0, 0.0
    for _ in range(10):
        amp = _r32(cell**beta)
        out += _F32(amp) * _value_noise(rng, h, w, max(cell * aniso, 1.0), max(cell / aniso, 1.0))
        amp_sum += amp
        amp_sq += amp * amp
        cell *= 0.5
        if cell < 1.5:
            break
    # each octave: mean 0.5, std ~0.2 (uniform lattice values, smoothstep interpolation)
    gain = 0.17 / (0.2 * math.sqrt(amp_sq))
    out -= _F32(0.5 * amp_sum)
    out *= _F32(gain)
    out += _F32(0.5)
    return np.clip(out, 0.0, 1.0, out=out)


def _colour(rng: np.random.Generator) -> np.ndarray:
    lum = _uniform(rng, 0.12, 0.85)
    sat = _uniform(rng, 0.0, 1.0)
    sat = 0.32 * sat * sat  # mostly muted colours, sometimes vivid
    tint = rng.random(3) - 0.5
    tint -= tint.mean()
    return np.clip(lum + 2.0 * sat * tint, 0.02, 0.98)


_PATTERNS = ("fbm", "stripes", "tiles", "wood", "blotch", "plain")
_PATTERN_P = np.array([0.26, 0.15, 0.15, 0.12, 0.20, 0.12])


def _texture(rng: np.random.Generator, h: int, w: int, scale_px: float) -> np.ndarray:
    """A ``(3, h, w)`` float32 texture; ``scale_px`` is the image's ``min(H, W)`` (texture
    scales are drawn relative to it, never to depth)."""
    kind = _PATTERNS[int(rng.choice(len(_PATTERNS), p=_PATTERN_P))]
    beta = _uniform(rng, 0.5, 1.3)
    cell_max = scale_px * _loguniform(rng, 0.04, 0.6)
    aniso = _loguniform(rng, 0.5, 2.0) if rng.random() < 0.5 else 1.0
    n = _fbm(rng, h, w, cell_max, beta, aniso)

    X = np.arange(w, dtype=_F32)[None, :]
    Y = np.arange(h, dtype=_F32)[:, None]

    def rotated() -> tuple[np.ndarray, np.ndarray]:
        c, s = _unit2(rng)
        if rng.random() < 0.5:  # axis-aligned patterns are common in man-made scenes
            c, s = (1.0, 0.0) if rng.random() < 0.5 else (0.0, 1.0)
        return _F32(c) * X + _F32(s) * Y, _F32(c) * Y - _F32(s) * X

    def frac(a: np.ndarray) -> np.ndarray:
        return a - np.floor(a)

    mix = _uniform(rng, 0.1, 0.45)  # weight of the noise detail layer on a pattern
    if kind == "fbm":
        gain = _uniform(rng, 1.0, 2.5)
        v = np.clip((n - _F32(0.5)) * _F32(gain) + _F32(0.5), 0.0, 1.0)
    elif kind == "plain":
        v = _F32(0.5) + (n - _F32(0.5)) * _F32(_uniform(rng, 0.05, 0.35))
    elif kind == "blotch":
        thr = _uniform(rng, 0.35, 0.65)
        sharp = _loguniform(rng, 4.0, 60.0)
        v = np.clip((n - _F32(thr)) * _F32(sharp) + _F32(0.5), 0.0, 1.0)
        v = v * _F32(1.0 - mix) + n * _F32(mix)
    elif kind == "stripes":
        xr, _ = rotated()
        period = _loguniform(rng, 3.0, max(4.0, 0.25 * scale_px))
        warp = _uniform(rng, 0.0, 2.0) if rng.random() < 0.6 else 0.0
        phase = xr * _F32(1.0 / period) + (n - _F32(0.5)) * _F32(warp)
        tri = np.abs(frac(phase) - _F32(0.5)) * _F32(2.0)
        sharp = _loguniform(rng, 1.5, 30.0)
        v = np.clip((tri - _F32(_uniform(rng, 0.3, 0.7))) * _F32(sharp) + _F32(0.5), 0.0, 1.0)
        v = v * _F32(1.0 - mix) + n * _F32(mix)
    elif kind == "tiles":
        xr, yr = rotated()
        px = _loguniform(rng, 6.0, max(7.0, 0.4 * scale_px))
        py = px * _loguniform(rng, 0.25, 4.0) if rng.random() < 0.5 else px
        fy = yr * _F32(1.0 / py)
        iy = np.floor(fy)
        fx = xr * _F32(1.0 / px)
        if rng.random() < 0.35:  # bricks: every other row shifted by half a tile
            fx = fx + _F32(0.5) * (iy - _F32(2.0) * np.floor(iy * _F32(0.5)))
        ix = np.floor(fx)
        if rng.random() < 0.3:
            tile = (ix + iy) - _F32(2.0) * np.floor((ix + iy) * _F32(0.5))  # checker 0/1
            tile = _F32(0.15) + _F32(0.7) * tile
        else:
            table = rng.random((7, 5), dtype=_F32)
            spread = _F32(_uniform(rng, 0.1, 1.0))
            tile = _F32(0.5) + (table[np.mod(ix, 7).astype(np.intp), np.mod(iy, 5).astype(np.intp)] - _F32(0.5)) * spread
        dx = np.minimum(fx - ix, _F32(1.0) - (fx - ix)) * _F32(px)
        dy = np.minimum(fy - iy, _F32(1.0) - (fy - iy)) * _F32(py)
        half = _F32(_uniform(rng, 0.3, 1.8))
        grout = np.clip(half - np.minimum(dx, dy) + _F32(0.5), 0.0, 1.0)
        gval = _F32(_uniform(rng, 0.0, 1.0))
        v = tile + (gval - tile) * grout
        v = v * _F32(1.0 - mix) + n * _F32(mix)
    else:  # wood
        xr, yr = rotated()
        period = _loguniform(rng, 2.5, max(3.0, 0.08 * scale_px))
        ecc = _uniform(rng, 0.02, 0.3)
        x0 = _uniform(rng, -3.0, 3.0) * scale_px
        y0 = _uniform(rng, -3.0, 3.0) * scale_px
        dxx = xr - _F32(x0)
        dyy = (yr - _F32(y0)) * _F32(ecc)
        r = np.sqrt(dxx * dxx + dyy * dyy) * _F32(1.0 / period)
        r += (n - _F32(0.5)) * _F32(_uniform(rng, 0.5, 4.0))
        t = frac(r)
        v = t * t
        v = v * _F32(1.0 - mix) + n * _F32(mix)
    return _colourise(rng, v, X, Y, scale_px)


def _colourise(rng: np.random.Generator, v: np.ndarray, X: np.ndarray, Y: np.ndarray, scale_px: float) -> np.ndarray:
    """``(h, w)`` pattern values in [0, 1] -> ``(3, h, w)`` float32 image: a random two-colour
    ramp and a mild linear shading (``X`` ``(1, w)``, ``Y`` ``(h, 1)`` pixel coordinates)."""
    h, w = Y.shape[0], X.shape[1]
    c0 = _colour(rng)
    if rng.random() < 0.45:
        c1 = _colour(rng)
    else:
        c1 = c0 * _uniform(rng, 0.25, 0.8)
    c1 = c0 + (c1 - c0) * _uniform(rng, 0.35, 1.0)
    if rng.random() < 0.5:
        c0, c1 = c1, c0
    c0 = c0.astype(_F32)[:, None, None]
    dc = (c1 - c0[:, 0, 0]).astype(_F32)[:, None, None]
    img = c0 + v[None] * dc
    # mild shading: a linear brightness ramp, scales relative to the image, not to depth
    gx = _F32(_uniform(rng, -0.25, 0.25) / scale_px)
    gy = _F32(_uniform(rng, -0.25, 0.25) / scale_px)
    ramp = _F32(1.0) + gx * (X - _F32(w / 2)) + gy * (Y - _F32(h / 2))
    img *= np.clip(ramp, 0.6, 1.4)[None]
    return img


# --------------------------------------------------------------------------------------------
# Shapes: signed distance (pixels, positive inside) given offsets from the centre
# --------------------------------------------------------------------------------------------

SdFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _rot(dx: np.ndarray, dy: np.ndarray, c: float, s: float) -> tuple[np.ndarray, np.ndarray]:
    return _F32(c) * dx + _F32(s) * dy, _F32(c) * dy - _F32(s) * dx


def _make_shape(kind: str, rng: np.random.Generator, r: float) -> tuple[SdFn, float]:
    """A planar shape of extent radius ~``r`` pixels: (signed-distance function, bound radius)."""
    c, s = _unit2(rng)
    if kind == "rect":
        if rng.random() < 0.2:  # thin: legs, poles, frames
            hx, hy = r, max(1.0, r / _loguniform(rng, 5.0, 20.0))
        else:
            hx, hy = r, r / _loguniform(rng, 1.0, 3.0)
        if rng.random() < 0.4:
            c, s = (1.0, 0.0) if rng.random() < 0.5 else (0.0, 1.0)

        def sd(dx, dy):
            xr, yr = _rot(dx, dy, c, s)
            return np.minimum(_F32(hx) - np.abs(xr), _F32(hy) - np.abs(yr))

        return sd, math.sqrt(hx * hx + hy * hy) + 2.0
    if kind == "rrect":
        hx, hy = r, r / _loguniform(rng, 1.0, 2.5)
        rad = min(hx, hy) * _uniform(rng, 0.15, 0.9)

        def sd(dx, dy):
            xr, yr = _rot(dx, dy, c, s)
            qx = np.abs(xr) - _F32(hx - rad)
            qy = np.abs(yr) - _F32(hy - rad)
            ox, oy = np.maximum(qx, 0.0), np.maximum(qy, 0.0)
            return _F32(rad) - np.sqrt(ox * ox + oy * oy) - np.minimum(np.maximum(qx, qy), 0.0)

        return sd, math.sqrt(hx * hx + hy * hy) + 2.0
    if kind == "ellipse":
        a, b = r, r / _loguniform(rng, 1.0, 3.0)
        ia2, ib2 = 1.0 / (a * a), 1.0 / (b * b)

        def sd(dx, dy):
            xr, yr = _rot(dx, dy, c, s)
            q = xr * xr * _F32(ia2) + yr * yr * _F32(ib2)
            gx, gy = xr * _F32(ia2), yr * _F32(ib2)
            grad = _F32(2.0) * np.sqrt(gx * gx + gy * gy)
            return (_F32(1.0) - q) / np.maximum(grad, _F32(1e-6))

        return sd, a + 2.0
    # convex polygon: vertices on an ellipse, in angular order
    a, b = r, r / _loguniform(rng, 1.0, 2.0)
    k = int(rng.integers(3, 8))
    verts = []
    for _ in range(k):
        vx, vy = _unit2(rng)
        verts.append((vx, vy))
    verts.sort(key=lambda p: (1 - p[0] / (abs(p[0]) + abs(p[1]))) if p[1] >= 0 else (3 + p[0] / (abs(p[0]) + abs(p[1]))))
    pts = [(a * vx * c - b * vy * s, a * vx * s + b * vy * c) for vx, vy in verts]
    area2 = sum(pts[i][0] * pts[(i + 1) % k][1] - pts[(i + 1) % k][0] * pts[i][1] for i in range(k))
    if abs(area2) < 0.2 * r * r:  # nearly degenerate: use an ellipse instead
        return _make_shape("ellipse", rng, r)
    sign = 1.0 if area2 > 0 else -1.0
    edges = []
    for i in range(k):
        (x0, y0), (x1, y1) = pts[i], pts[(i + 1) % k]
        ex, ey = x1 - x0, y1 - y0
        ln = math.sqrt(ex * ex + ey * ey)
        if ln < 1e-9:
            continue
        edges.append((x0, y0, -sign * ey / ln, sign * ex / ln))  # inward unit normal

    def sd(dx, dy):
        out = None
        for x0, y0, nx, ny in edges:
            d = (dx - _F32(x0)) * _F32(nx) + (dy - _F32(y0)) * _F32(ny)
            out = d if out is None else np.minimum(out, d)
        return out

    return sd, a + 2.0


# --------------------------------------------------------------------------------------------
# Scene generator
# --------------------------------------------------------------------------------------------


class _Generator:
    def __init__(self, config: SceneConfig, rng: np.random.Generator) -> None:
        self.cfg = config
        self.rng = rng
        self.H, self.W = config.height, config.width
        self.near, self.far = config.depth_range_m
        self.f = config.focal_px
        self.cx = (self.W - 1) / 2.0
        self.cy = (self.H - 1) / 2.0
        self.scale_px = float(min(self.H, self.W))
        self.u = ((np.arange(self.W, dtype=np.float64) - self.cx) / self.f).astype(_F32)  # (W,)
        self.v = ((np.arange(self.H, dtype=np.float64) - self.cy) / self.f).astype(_F32)  # (H,)
        self.tan_slant = _r32(math.tan(math.radians(config.max_slant_deg)))
        self.img = np.zeros((3, self.H, self.W), _F32)
        self.depth = np.zeros((self.H, self.W), _F32)
        self.labels = np.zeros((self.H, self.W), np.int8)

    # ---- driver ---------------------------------------------------------------------------
    def run(self) -> tuple[np.ndarray, np.ndarray]:
        rng = self.rng
        if rng.random() < self.cfg.room_prob:
            self._room()
        else:
            self._plane_background()
        lo, hi = self.cfg.n_decals
        for _ in range(int(rng.integers(lo, hi + 1))):
            self._decal()
        lo, hi = self.cfg.n_objects
        objects = [self._object_params(i) for i in range(int(rng.integers(lo, hi + 1)))]
        objects.sort(key=lambda o: (-o["z0"], o["index"]))  # far to near
        for obj in objects:
            self._draw_object(obj)
        np.clip(self.img, 0.0, 1.0, out=self.img)
        np.clip(self.depth, _F32(self.near), _F32(self.far), out=self.depth)
        return self.img, self.depth

    # ---- background -----------------------------------------------------------------------
    def _background_scale(self, depth: np.ndarray) -> np.ndarray:
        """Scale the background so its farthest point is in the upper part of the range."""
        target = self.near + (self.far - self.near) * _uniform(self.rng, 0.45, 1.0)
        depth *= _F32(target / float(depth.max()))
        return np.clip(depth, _F32(self.near), _F32(self.far))

    def _rays(self, ox: float, oy: float) -> tuple[np.ndarray, np.ndarray]:
        """Ray directions (u, v, 1) of pixel centres shifted by (ox, oy) pixels: u (1, W), v (H, 1)."""
        if ox == 0.0 and oy == 0.0:
            return self.u[None, :], self.v[:, None]
        u = ((np.arange(self.W, dtype=np.float64) + ox - self.cx) / self.f).astype(_F32)
        v = ((np.arange(self.H, dtype=np.float64) + oy - self.cy) / self.f).astype(_F32)
        return u[None, :], v[:, None]

    def _room(self) -> None:
        rng = self.rng
        cyaw, syaw = _half_angle_rot(rng, 30.0)
        cpit, spit = _half_angle_rot(rng, 12.0)
        crol, srol = _half_angle_rot(rng, 4.0)
        # camera -> world rotation R = Ry(yaw) @ Rx(pitch) @ Rz(roll); world y points down
        rz = np.array([[crol, -srol, 0.0], [srol, crol, 0.0], [0.0, 0.0, 1.0]])
        rx = np.array([[1.0, 0.0, 0.0], [0.0, cpit, -spit], [0.0, spit, cpit]])
        ry = np.array([[cyaw, 0.0, syaw], [0.0, 1.0, 0.0], [-syaw, 0.0, cyaw]])
        R = _matmul3(ry, _matmul3(rx, rz))
        width = _uniform(rng, 2.5, 7.0)
        left = width * _uniform(rng, 0.2, 0.8)
        right = width - left
        height = _uniform(rng, 2.4, 3.2)
        cam_h = _uniform(rng, 1.0, min(1.7, height - 0.4))
        length = _uniform(rng, 3.0, 12.0)
        # planes (label, axis, c): floor y = cam_h, ceiling y = cam_h - height, left wall
        # x = -left, right wall x = right, back wall z = length. A ray (u, v, 1) in camera
        # coordinates has world direction w = R (u, v, 1) and meets the plane X[axis] = c at
        # camera depth t = c / w[axis] (valid when t > 0); the nearest plane is seen.
        planes = ((1, cam_h), (1, cam_h - height), (0, -left), (0, right), (2, length))
        inf = _F32(np.inf)

        def evaluate(ox: float, oy: float) -> tuple[np.ndarray, np.ndarray]:
            u, v = self._rays(ox, oy)
            w = [_F32(R[i][0]) * u + _F32(R[i][1]) * v + _F32(R[i][2]) for i in range(3)]
            depth = np.full((self.H, self.W), inf, _F32)
            labels = np.zeros((self.H, self.W), np.int8)
            for k, (axis, c) in enumerate(planes):
                with np.errstate(divide="ignore", invalid="ignore"):
                    t = _F32(c) / w[axis]
                closer = (t > 0) & (t < depth)
                depth[closer] = t[closer]
                labels[closer] = k
            depth[~np.isfinite(depth)] = _F32(length)  # impossible for |yaw| <= 30 deg; be safe
            return depth, labels

        depth, self.labels = evaluate(0.0, 0.0)
        self.depth = self._background_scale(depth)
        # textures: walls often share one paint, lit differently
        shared = self._full_texture() if rng.random() < 0.5 else None
        self._paint_background(evaluate, 5, shared_from=2 if shared is not None else None, shared=shared)

    def _plane_background(self) -> None:
        """A large slanted plane (a wall or floor seen obliquely) in front of a far
        fronto-parallel wall, which it meets where the plane recedes past it."""
        rng = self.rng
        tx, ty = self._slant(rng, force=True)
        far_wall = self.near + (self.far - self.near) * _uniform(rng, 0.45, 1.0)
        z0 = _loguniform(rng, min(far_wall, max(self.near, 1.5 * self.near)), far_wall)

        def evaluate(ox: float, oy: float) -> tuple[np.ndarray, np.ndarray]:
            u, v = self._rays(ox, oy)
            den = _F32(1.0) + _F32(tx) * u + _F32(ty) * v
            with np.errstate(divide="ignore"):
                plane = _F32(z0) / den
            plane[~(den > 0)] = _F32(np.inf)
            return np.minimum(plane, _F32(far_wall)), (plane > _F32(far_wall)).astype(np.int8)

        depth, self.labels = evaluate(0.0, 0.0)
        self.depth = np.clip(depth, _F32(self.near), _F32(self.far))
        self._paint_background(evaluate, 2)

    def _paint_background(self, evaluate, n_labels: int, shared_from: int | None = None,
                          shared: np.ndarray | None = None) -> None:
        """Paint each background surface with its texture, weighted by its coverage of each
        pixel (2x2 sub-pixel samples: anti-aliased surface boundaries)."""
        cover = np.zeros((n_labels, self.H, self.W), _F32)
        for oy in (-0.25, 0.25):
            for ox in (-0.25, 0.25):
                _, lab = evaluate(ox, oy)
                for k in range(n_labels):
                    cover[k] += lab == k
        cover *= _F32(0.25)
        for k in range(n_labels):
            shade = _F32(_uniform(self.rng, 0.7, 1.05))
            m = cover[k]
            rows = np.flatnonzero(m.any(axis=1))
            if rows.size == 0:  # surface not visible
                continue
            cols = np.flatnonzero(m.any(axis=0))
            y0, y1, x0, x1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
            if shared is not None and shared_from is not None and k >= shared_from:
                tex = shared[:, y0:y1, x0:x1]
            else:
                tex = _texture(self.rng, y1 - y0, x1 - x0, self.scale_px)
            self.img[:, y0:y1, x0:x1] += (m[y0:y1, x0:x1] * shade)[None] * tex

    def _full_texture(self) -> np.ndarray:
        return _texture(self.rng, self.H, self.W, self.scale_px)

    # ---- decals ---------------------------------------------------------------------------
    def _decal(self) -> None:
        rng = self.rng
        kind = ("rect", "rect", "rrect", "ellipse", "poly")[int(rng.integers(0, 5))]
        r = 0.5 * self.scale_px * _loguniform(rng, 0.06, 0.4)
        sd, bound = _make_shape(kind, rng, r)
        px, py = _uniform(rng, 0, self.W - 1), _uniform(rng, 0, self.H - 1)
        label = self.labels[int(round(py)), int(round(px))]
        box = self._bbox(px, py, bound)
        if box is None:
            return
        y0, y1, x0, x1 = box
        X = np.arange(x0, x1, dtype=_F32)[None, :] - _F32(px)
        Y = np.arange(y0, y1, dtype=_F32)[:, None] - _F32(py)
        alpha = np.clip(sd(X, Y) + _F32(0.5), 0.0, 1.0)
        alpha *= self.labels[y0:y1, x0:x1] == label
        tex = _texture(rng, y1 - y0, x1 - x0, self.scale_px)
        sub = self.img[:, y0:y1, x0:x1]
        sub += alpha[None] * (tex - sub)

    # ---- objects --------------------------------------------------------------------------
    def _bbox(self, px: float, py: float, bound: float):
        x0 = max(0, int(math.floor(px - bound)))
        x1 = min(self.W, int(math.ceil(px + bound)) + 1)
        y0 = max(0, int(math.floor(py - bound)))
        y1 = min(self.H, int(math.ceil(py + bound)) + 1)
        if x0 >= x1 or y0 >= y1:
            return None
        return y0, y1, x0, x1

    def _object_params(self, index: int) -> dict:
        rng = self.rng
        kinds = ("rect", "rrect", "ellipse", "poly", "box")
        kind = kinds[int(rng.choice(5, p=[0.25, 0.15, 0.2, 0.2, 0.2]))]
        lo, hi = self.cfg.object_size
        r = 0.5 * self.scale_px * _loguniform(rng, lo, hi)
        px = _uniform(rng, -0.1, 1.1) * (self.W - 1)
        py = _uniform(rng, -0.1, 1.1) * (self.H - 1)
        zbg = float(self.depth[int(np.clip(round(py), 0, self.H - 1)), int(np.clip(round(px), 0, self.W - 1))])
        z0 = _loguniform(rng, self.near, max(self.near, 0.97 * zbg))
        return {"kind": kind, "r": r, "px": px, "py": py, "z0": z0, "index": index,
                "seed": int(rng.integers(0, 2**63 - 1))}

    def _draw_object(self, obj: dict) -> None:
        rng = np.random.default_rng(obj["seed"])  # per-object stream: order-independent draws
        if obj["kind"] == "box":
            res = self._box(rng, obj)
        else:
            res = self._planar(rng, obj)
        if res is None:
            return
        (y0, y1, x0, x1), z, alpha, shade = res
        dsub = self.depth[y0:y1, x0:x1]
        front = z < dsub
        alpha = alpha * front
        if not alpha.any():
            return
        tex = _texture(rng, y1 - y0, x1 - x0, self.scale_px)
        if shade is not None:
            tex *= shade[None]
        sub = self.img[:, y0:y1, x0:x1]
        sub += alpha[None] * (tex - sub)
        take = alpha >= _F32(0.5)
        dsub[take] = z[take]

    def _planar(self, rng: np.random.Generator, obj: dict):
        sd, bound = _make_shape(obj["kind"], rng, obj["r"])
        px, py, z0 = obj["px"], obj["py"], obj["z0"]
        box = self._bbox(px, py, bound)
        if box is None:
            return None
        y0, y1, x0, x1 = box
        X = np.arange(x0, x1, dtype=_F32)[None, :]
        Y = np.arange(y0, y1, dtype=_F32)[:, None]
        alpha = np.clip(sd(X - _F32(px), Y - _F32(py)) + _F32(0.5), 0.0, 1.0)
        tx, ty = self._slant(rng)
        u0, v0 = (px - self.cx) / self.f, (py - self.cy) / self.f
        den0 = 1.0 + tx * u0 + ty * v0
        if den0 < 0.3:
            tx, ty, den0 = 0.0, 0.0, 1.0
        u, v = self.u[None, x0:x1], self.v[y0:y1, None]
        den = _F32(1.0) + _F32(tx) * u + _F32(ty) * v
        with np.errstate(divide="ignore"):
            z = _F32(z0 * den0) / den
        ok = (den > _F32(1e-3)) & (z <= _F32(self.far))
        alpha = alpha * ok
        z = np.where(ok, np.maximum(z, _F32(self.near)), _F32(self.far))
        return (y0, y1, x0, x1), z, alpha, None

    def _slant(self, rng: np.random.Generator, force: bool = False) -> tuple[float, float]:
        """(tx, ty) of a plane normal (tx, ty, 1): slant angle up to ``max_slant_deg``."""
        if not force and rng.random() >= self.cfg.slant_prob:
            return 0.0, 0.0
        c, s = _unit2(rng)
        mag = self.tan_slant * math.sqrt(_uniform(rng, 0.0, 1.0))
        return c * mag, s * mag

    def _box(self, rng: np.random.Generator, obj: dict):
        """A cuboid, ray-traced (slab method) at 2x2 sub-pixel samples."""
        r, px, py, z0 = obj["r"], obj["px"], obj["py"], obj["z0"]
        m_per_px = z0 / self.f
        half = [r * m_per_px * _uniform(rng, 0.35, 1.0) for _ in range(3)]
        cyaw, syaw = _unit2(rng)
        cpit, spit = _half_angle_rot(rng, 25.0)
        ry = np.array([[cyaw, 0.0, syaw], [0.0, 1.0, 0.0], [-syaw, 0.0, cyaw]])
        rx = np.array([[1.0, 0.0, 0.0], [0.0, cpit, -spit], [0.0, spit, cpit]])
        R = _matmul3(rx, ry)  # box -> camera
        zc = z0 + max(half)  # front roughly at z0
        C = [zc * (px - self.cx) / self.f, zc * (py - self.cy) / self.f, zc]
        # projected bounding box of the 8 corners
        xs, ys, behind = [], [], False
        for sx in (-1, 1):
            for sy in (-1, 1):
                for sz in (-1, 1):
                    local = (sx * half[0], sy * half[1], sz * half[2])
                    P = [C[i] + sum(R[i][j] * local[j] for j in range(3)) for i in range(3)]
                    behind = behind or P[2] <= 1e-3
                    if not behind:
                        xs.append(self.f * P[0] / P[2] + self.cx)
                        ys.append(self.f * P[1] / P[2] + self.cy)
        if behind:  # a corner behind the camera: search the whole image
            xs, ys = [-1e9, 1e9], [-1e9, 1e9]
        x0 = max(0, int(math.floor(min(xs))) - 1)
        x1 = min(self.W, int(math.ceil(max(xs))) + 2)
        y0 = max(0, int(math.floor(min(ys))) - 1)
        y1 = min(self.H, int(math.ceil(max(ys))) + 2)
        if x0 >= x1 or y0 >= y1:
            return None
        # ray origin in box frame: o = R^T (0 - C); direction d = R^T (u, v, 1)
        o = [-sum(R[j][k] * C[j] for j in range(3)) for k in range(3)]
        h, w = y1 - y0, x1 - x0
        zbest = np.full((h, w), np.inf, _F32)
        face = np.zeros((h, w), np.int8)
        hits = np.zeros((h, w), _F32)
        inv_f = 1.0 / self.f
        for oy in (-0.25, 0.25):
            for ox in (-0.25, 0.25):
                u = ((np.arange(x0, x1, dtype=np.float64) + ox - self.cx) * inv_f).astype(_F32)[None, :]
                v = ((np.arange(y0, y1, dtype=np.float64) + oy - self.cy) * inv_f).astype(_F32)[:, None]
                tnear = np.full((h, w), -np.inf, _F32)
                tfar = np.full((h, w), np.inf, _F32)
                fnear = np.zeros((h, w), np.int8)
                for k in range(3):
                    d = _F32(R[0][k]) * u + _F32(R[1][k]) * v + _F32(R[2][k])
                    d = np.where(np.abs(d) < _F32(1e-7), _F32(1e-7), d)
                    inv = _F32(1.0) / d
                    t1 = (_F32(-half[k] - o[k])) * inv
                    t2 = (_F32(half[k] - o[k])) * inv
                    tmin, tmax = np.minimum(t1, t2), np.maximum(t1, t2)
                    better = tmin > tnear
                    fnear[better] = k
                    tnear = np.maximum(tnear, tmin)
                    tfar = np.minimum(tfar, tmax)
                hit = (tnear <= tfar) & (tnear > _F32(1e-3))
                hits += hit
                closer = hit & (tnear < zbest)
                zbest[closer] = tnear[closer]
                face[closer] = fnear[closer]
        alpha = hits * _F32(0.25)
        ok = np.isfinite(zbest) & (zbest <= _F32(self.far))
        alpha *= ok
        z = np.where(ok, np.maximum(zbest, _F32(self.near)), _F32(self.far))
        face_shade = np.array([_uniform(rng, 0.55, 1.0) for _ in range(3)], _F32)
        return (y0, y1, x0, x1), z, alpha, face_shade[face]


def _matmul3(a, b) -> list[list[float]]:
    """3x3 product in plain Python floats (no BLAS, reproducible everywhere)."""
    a, b = np.asarray(a, dtype=np.float64).tolist(), np.asarray(b, dtype=np.float64).tolist()
    return [[a[i][0] * b[0][j] + a[i][1] * b[1][j] + a[i][2] * b[2][j] for j in range(3)] for i in range(3)]

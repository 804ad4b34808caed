"""Thin-lens camera: circle of confusion and Gaussian blur for metric depth.

Units are carried in names: ``*_m`` metres, ``*_px`` pixels.

A lens of focal length ``f`` and aperture diameter ``A = f / N``, focused at distance ``S``,
puts the sensor at the image distance ``v = f S / (S - f)``. A point at depth ``x`` then
blurs into a disc (circle of confusion, CoC) of diameter, on the sensor,

    c(x) = A * v * |1/S - 1/x|  =  A * f / (S - f) * |x - S| / x          (exact thin lens)

The paper (Nazir et al. 2023, eq. 8, after SYNDOF) writes ``eps = alpha |x - S| / x`` with
``alpha = f D / S`` where *its* ``f`` is the lens-to-sensor distance: with ``f := v`` that is
exactly the formula above. Plugging the *focal length* into eq. 8 instead (as the paper's
numbers suggest, "focal length 0.07 m") gives ``c_eq8 = A f |1/S - 1/x| ... * (S - f)/S``, i.e.
the exact CoC times ``(S - f) / S`` (0.965 for f = 70 mm, S = 2 m). Both are offered
(:attr:`Camera.coc_model`).

Blur is modelled as a Gaussian PSF with ``sigma_px = sigma_per_coc * c / pixel_pitch``:
``sigma_per_coc = 1/4`` in the paper and SYNDOF, ``0.3`` ("rho") in D3-Net's code. In every
case ``sigma_px(x) = K * |1/S - 1/x|`` with a constant ``K`` (:meth:`Camera.blur_gain_px_m`,
pixel-metres): blur is linear in inverse depth, zero at the focus distance and bounded by
``K / S`` far away.

Presets (:func:`get_preset`): ``d3net_nyu``, ``paper``, ``dfd_indoor``, ``syndof``, or a camera file
(``mycam.yaml``, :mod:`twohded.camera_file`); see ``docs/physics.md``.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
import torch

from .errors import InputError

CocModel = Literal["thin_lens", "paper_eq8"]


@dataclass(frozen=True)
class Camera:
    """A thin-lens camera with a Gaussian PSF.

    Attributes:
        focal_length_m: focal length f, metres.
        f_number: N = f / aperture diameter (dimensionless).
        focus_m: focus distance S (object side), metres; must exceed the focal length.
        pixel_pitch_m: size of one pixel on the sensor, metres.
        sigma_per_coc: Gaussian sigma as a fraction of the CoC diameter (paper 1/4, D3-Net 0.3).
        coc_model: ``"thin_lens"`` (exact, lens-to-sensor distance v) or ``"paper_eq8"``
            (the paper's eq. 8 with the focal length in place of v).
        name: label for logs and docs.
    """

    focal_length_m: float
    f_number: float
    focus_m: float
    pixel_pitch_m: float
    sigma_per_coc: float = 0.25
    coc_model: CocModel = "thin_lens"
    name: str = "custom"

    def __post_init__(self) -> None:
        for attr in ("focal_length_m", "f_number", "pixel_pitch_m", "sigma_per_coc", "focus_m"):
            value = getattr(self, attr)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise InputError(f"impossible camera: {attr} must be a finite number > 0, got {value!r}")
        if self.focus_m <= self.focal_length_m:
            raise InputError(
                f"impossible camera: focus distance {self.focus_m} m is not beyond the focal length "
                f"{self.focal_length_m} m (a thin lens cannot focus closer than f)"
            )
        if self.coc_model not in ("thin_lens", "paper_eq8"):
            raise InputError(f"unknown coc_model {self.coc_model!r} (use 'thin_lens' or 'paper_eq8')")

    # --- constructors -----------------------------------------------------------------
    @classmethod
    def from_aperture(cls, focal_length_m: float, aperture_m: float, **kwargs) -> "Camera":
        """Build a camera from the aperture diameter (metres) instead of the f-number."""
        if not aperture_m > 0:
            raise InputError(f"impossible camera: aperture diameter must be > 0 m, got {aperture_m!r}")
        return cls(focal_length_m=focal_length_m, f_number=focal_length_m / aperture_m, **kwargs)

    @staticmethod
    def pitch_from_sensor(sensor_width_m: float, image_width_px: int) -> float:
        """Pixel pitch (metres) of an image ``image_width_px`` wide spanning ``sensor_width_m``."""
        if not (sensor_width_m > 0 and image_width_px > 0):
            raise InputError("sensor width and image width must be > 0")
        return sensor_width_m / image_width_px

    def with_(self, **changes) -> "Camera":
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)

    # --- derived quantities -------------------------------------------------------------
    @property
    def aperture_m(self) -> float:
        """Aperture diameter A = f / N, metres."""
        return self.focal_length_m / self.f_number

    @property
    def image_distance_m(self) -> float:
        """Lens-to-sensor distance v = f S / (S - f) when focused at S, metres."""
        f, s = self.focal_length_m, self.focus_m
        return f * s / (s - f)

    def coc_gain_m2(self) -> float:
        """``A * v`` (thin lens) or ``A * f`` (paper eq. 8): CoC = gain * |1/S - 1/x|, metres^2."""
        lens_to_sensor = self.image_distance_m if self.coc_model == "thin_lens" else self.focal_length_m
        return self.aperture_m * lens_to_sensor

    def blur_gain_px_m(self) -> float:
        """K such that ``sigma_px(x) = K * |1/S - 1/x|`` (pixel-metres)."""
        return self.sigma_per_coc * self.coc_gain_m2() / self.pixel_pitch_m

    def coc_m(self, depth_m):
        """CoC diameter on the sensor, metres, for depth in metres (tensor, array or float)."""
        return self.coc_gain_m2() * _abs(1.0 / self.focus_m - 1.0 / depth_m)

    def coc_px(self, depth_m):
        """CoC diameter in pixels for depth in metres."""
        return self.coc_m(depth_m) / self.pixel_pitch_m

    def sigma_px(self, depth_m):
        """Gaussian PSF standard deviation in pixels for depth in metres."""
        return self.sigma_per_coc * self.coc_px(depth_m)

    def describe(self) -> str:
        return (
            f"{self.name}: f={self.focal_length_m * 1e3:g} mm, N={self.f_number:.4g} "
            f"(A={self.aperture_m * 1e3:.4g} mm), focus={self.focus_m:g} m, "
            f"pixel={self.pixel_pitch_m * 1e6:.4g} um, sigma={self.sigma_per_coc:g}*CoC ({self.coc_model})"
        )


def _abs(x):
    return x.abs() if isinstance(x, torch.Tensor) else np.abs(x)


# ---------------------------------------------------------------------------------------
# Presets
# ---------------------------------------------------------------------------------------

#: D3-Net NYUv2 setting (Carvalho et al. 2018, matlab/parameters_blurred_NYUv2.m):
#: f = 15 mm, N = 2.8, pixel = 2 x 2.8 um = 5.6 um, focus 2 m; refoc_image uses
#: sigma = rho * CoC / px with rho = 0.3 (so K = 4.337 px m), 21x21 kernels, layers of 10/255 m.
D3NET_NYU = Camera(
    focal_length_m=0.015,
    f_number=2.8,
    focus_m=2.0,
    pixel_pitch_m=5.6e-6,
    sigma_per_coc=0.3,
    coc_model="thin_lens",
    name="d3net_nyu",
)

#: The paper's camera: aperture D = 4.48 cm, focal length 0.07 m (f/1.5625), sigma = CoC / 4,
#: CoC from eq. 8 as printed (focal length in alpha). The paper gives neither the focus
#: distance nor the pixel size. We follow SYNDOF, which the paper cites for its blur model:
#: SYNDOF maps a 36 mm wide (full-frame) sensor onto the image width, so at NYU's 640 px the
#: pixel pitch is 36 mm / 640 = 56.25 um (the ``paper`` preset applies 36 mm / width to any
#: image width; ``PAPER`` itself is the camera at 640 px). Focus: 2 m (D3-Net's NYU choice, mid-room; the paper
#: does not say). Blur over NYU's 0.7-10 m is then sigma 12.9 px (0.7 m) to 0 (2 m) to 5.6 px
#: (10 m): a defocused input of about 33 dB PSNR on the built-in scenes, below the paper's
#: 34.85 dB after deblurring, as it must be (D3-Net's 4 px budget would give 39 dB, higher than
#: the paper's result). A 5.6 um pixel would give sigma = 130 px at 0.7 m. See docs/physics.md.
PAPER_SENSOR_WIDTH_M = 0.036
PAPER_IMAGE_WIDTH_PX = 640
PAPER_PIXEL_PITCH_M = PAPER_SENSOR_WIDTH_M / PAPER_IMAGE_WIDTH_PX
PAPER = Camera.from_aperture(
    focal_length_m=0.07,
    aperture_m=0.0448,
    focus_m=2.0,
    pixel_pitch_m=PAPER_PIXEL_PITCH_M,
    sigma_per_coc=0.25,
    coc_model="paper_eq8",
    name="paper",
)


#: The DFD indoor dataset's camera (Carvalho et al. 2018) as it appears in its 645x432 frames,
#: fitted to the real photos: ``render_defocus(f/8 photo, depth, DFD_INDOOR)`` (default mode)
#: best matches the real f/2.8 photo of the same scene. D3-Net's lens (f = 15 mm, f/2.8,
#: sigma = 0.3 CoC, thin lens) with a fitted focus distance and an effective pixel pitch (the
#: blur gain K = sigma_per_coc * A * v / pitch, in pixels of the 645x432 frames; the DSLR's
#: sensor was downscaled to that size, so it is not the sensor's pitch). Fitted by
#: ``python scripts/fit_dfd_camera.py`` (2026-11-22) on the 70 training scenes of
#: ``DFDIndoor`` (never the 11 validation scenes): the f/8 photo registered onto the f/2.8
#: one, per-image colour/vignetting fit, grid search of (S, K) for the best mean PSNR.
#: sigma_px(x) = 3.55 |0.6 - 1/x|: 4.97 px at 0.5 m, 1.42 at 1 m, 0 at 1.667 m, 0.95 at 3 m,
#: 1.77 at 10 m. It renders the f/2.8 look better than ``d3net_nyu`` (34.49 vs 33.67 dB on the
#: training scenes, 37.31 vs 36.06 dB on the validation scenes; docs/physics.md,
#: docs/results/dfd_camera_fit.md). Note: the sharp input is the f/8 photo, itself slightly
#: defocused, so this is the blur to *add* to it; the f/2.8 photo's own gain is about K / 0.937.
DFD_INDOOR_FOCUS_M = 1.0 / 0.6
DFD_INDOOR_BLUR_GAIN_PX_M = 3.55
_DFD_V = 0.015 * DFD_INDOOR_FOCUS_M / (DFD_INDOOR_FOCUS_M - 0.015)  # lens-to-sensor distance
DFD_INDOOR = Camera(
    focal_length_m=0.015,
    f_number=2.8,
    focus_m=DFD_INDOOR_FOCUS_M,
    pixel_pitch_m=0.3 * (0.015 / 2.8) * _DFD_V / DFD_INDOOR_BLUR_GAIN_PX_M,
    sigma_per_coc=0.3,
    coc_model="thin_lens",
    name="dfd_indoor",
)


@dataclass(frozen=True)
class SyndofSampler:
    """SYNDOF's random camera (Lee et al., CVPR 2019, ``blur_by_depth.m``).

    Per scene: focal length drawn from ``focal_lengths_m``; focus distance drawn from the
    scene's own depth values; f-number solved so that the largest CoC in the scene is
    ``max_coc_px`` pixels on a ``sensor_width_m`` wide sensor spanning the image width.
    SYNDOF uses sigma = CoC / 4 (its code: (CoC - 1) / 4 on CoC rounded to 0.1 px; we keep the
    paper's eq. 9, CoC / 4). Seeded: the same ``seed`` gives the same camera.
    """

    focal_lengths_m: tuple[float, ...] = (0.050, 0.070, 0.085)
    max_coc_px: float = 29.0
    sensor_width_m: float = 0.036
    sigma_per_coc: float = 0.25
    name: str = "syndof"

    def sample(self, depth_m: torch.Tensor, image_width_px: int, seed: int | None = None) -> Camera:
        """Draw a camera for one scene; ``depth_m`` any shape, metres (valid pixels only used)."""
        rng = np.random.default_rng(seed)
        d = depth_m.detach().flatten().double().cpu().numpy()
        d = d[np.isfinite(d) & (d > 0)]
        if d.size == 0:
            raise InputError("syndof preset: depth has no valid pixel to pick a focus plane from")
        f = float(rng.choice(self.focal_lengths_m))
        focus = float(rng.choice(d))
        focus = max(focus, f * 1.05)
        pitch = Camera.pitch_from_sensor(self.sensor_width_m, image_width_px)
        spread = float(np.max(np.abs(1.0 / focus - 1.0 / d)))
        # CoC_px(x) = (f/N) * v * |1/S - 1/x| / pitch; solve N so that max CoC_px = max_coc_px.
        v = f * focus / (focus - f)
        if spread <= 0:
            n = 1e3  # flat scene: any aperture, keep it nearly pinhole
        else:
            n = f * v * spread / (self.max_coc_px * pitch)
        return Camera(
            focal_length_m=f,
            f_number=n,
            focus_m=focus,
            pixel_pitch_m=pitch,
            sigma_per_coc=self.sigma_per_coc,
            name=self.name,
        )


@dataclass(frozen=True)
class Preset:
    """A named rendering setting: a camera (fixed or sampled per scene) and a default mode.

    ``sensor_width_m``: if set, the camera's pixel pitch is ``sensor_width_m / image width``
    for every image (the sensor spans the frame whatever its resolution, as in SYNDOF), so the
    blur in pixels scales with the image width: rendering a 256-px frame gives the blur that
    rendering at 640 px and resizing would. If None, the camera's pixel pitch is absolute.
    ``source`` / ``notes``: where the numbers come from, free text (camera files keep them).
    """

    name: str
    description: str
    default_mode: str
    camera: Camera | None = None
    sampler: SyndofSampler | None = field(default=None)
    sensor_width_m: float | None = None
    source: str = ""
    notes: str = ""

    @property
    def width_relative(self) -> bool:
        """True if the blur in pixels is defined relative to the image width."""
        return self.sensor_width_m is not None or self.sampler is not None

    def camera_for(self, depth_m: torch.Tensor, seed: int | None = None) -> Camera:
        """The camera for one scene (``depth_m`` (..., H, W) metres; its width sets the pitch)."""
        width = int(depth_m.shape[-1])
        if self.camera is not None:
            if self.sensor_width_m is None:
                return self.camera
            return self.camera.with_(pixel_pitch_m=self.sensor_width_m / width)
        assert self.sampler is not None
        return self.sampler.sample(depth_m, width, seed)


PRESETS: dict[str, Preset] = {
    "d3net_nyu": Preset(
        "d3net_nyu",
        "D3-Net NYUv2: f=15 mm, f/2.8, 5.6 um pixels, focus 2 m, sigma=0.3*CoC, 10/255 m layers",
        default_mode="d3net",
        camera=D3NET_NYU,
    ),
    "paper": Preset(
        "paper",
        "2HDED:NET paper: D=4.48 cm, f=0.07 m, sigma=CoC/4 (eq. 8-9); focus 2 m, 36 mm sensor across the image (our choice)",
        default_mode="default",
        camera=PAPER,
        sensor_width_m=PAPER_SENSOR_WIDTH_M,
    ),
    "dfd_indoor": Preset(
        "dfd_indoor",
        "DFD indoor DSLR fitted to its real f/2.8 photos (645x432): f=15 mm, f/2.8, focus 1.667 m, "
        "6.852 um effective pixel, sigma=0.3*CoC (K=3.55 px m); scripts/fit_dfd_camera.py",
        default_mode="default",
        camera=DFD_INDOOR,
    ),
    "syndof": Preset(
        "syndof",
        "SYNDOF random camera: f in {50,70,85} mm, focus on a scene depth, N so that max CoC = 29 px",
        default_mode="default",
        sampler=SyndofSampler(),
    ),
}


def list_presets() -> list[str]:
    """Built-in names accepted by :func:`get_preset` and by ``render_defocus`` (a camera file
    path, ``*.yaml``, is accepted too)."""
    return list(PRESETS)


def get_preset(name) -> Preset:
    """A built-in preset by name, or a camera file (a path ending in ``.yaml`` / ``.yml`` or
    containing a ``/``; see :mod:`twohded.camera_file`). :class:`InputError` otherwise, listing
    the valid names."""
    from .camera_file import is_camera_file

    if is_camera_file(name):
        return _load_cached(os.fspath(name))
    try:
        return PRESETS[name]
    except (KeyError, TypeError):
        raise InputError(
            f"unknown preset {name!r}; choose one of {', '.join(PRESETS)} or give a camera file (mycam.yaml)"
        ) from None


_FILE_CACHE: dict[tuple, Preset] = {}


def _load_cached(path: str) -> Preset:
    """A camera file, read again only when its size or modification time changes."""
    from .camera_file import load_camera_file

    try:
        st = os.stat(path)
        key = (os.path.abspath(path), st.st_mtime_ns, st.st_size)
    except OSError:
        return load_camera_file(path)  # raises the one-line "not found" error
    if key not in _FILE_CACHE:
        _FILE_CACHE[key] = load_camera_file(path)
    return _FILE_CACHE[key]

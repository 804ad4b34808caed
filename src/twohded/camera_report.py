"""What a camera setting can measure: blur against depth, depth of field, near/far ambiguity.

For a thin-lens camera with a Gaussian PSF the blur is ``sigma_px(x) = K |1/S - 1/x|``
(:meth:`~twohded.optics.Camera.blur_gain_px_m`; ``x`` depth in metres, ``S`` focus distance).
Three consequences decide whether depth from defocus can work in a depth range:

* **depth of field**: depths whose blur is below ``threshold_px`` (default
  :data:`DOF_THRESHOLD_PX`, 0.5 px sigma: blur that small is hard to tell from sharpness, noise
  and JPEG in a real photo) are ``[1 / (1/S + t/K), 1 / (1/S - t/K)]`` (the far limit is
  infinite once ``t/K >= 1/S``). Inside it, defocus says nothing about depth.
* **ambiguity**: a depth ``x`` in front of the focus plane and the depth
  ``x' = 1 / (2/S - 1/x)`` behind it have the same blur (inverse depth mirrored about
  ``1/S``). Inside a depth range ``[d_min, d_max]`` the near depths whose mirror is also in
  the range pair up with far ones (:func:`ambiguous_ranges`); a network must tell them apart
  from other cues (context, chromatic aberration), or the range must lie on one side of ``S``.
* **resolution**: the depth step that changes sigma by ``step_px`` is ``x^2 step_px / K``:
  it grows with the square of the depth, and the blur never exceeds ``K / S`` far away.

:func:`describe_camera` computes these, :meth:`CameraReport.markdown` writes the table,
:func:`blur_figure` the figure and :func:`write_description` all three files with the camera file.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from .camera_file import write_camera_file
from .errors import InputError
from .io import atomic_write
from .optics import Preset

__all__ = ["DOF_THRESHOLD_PX", "CameraReport", "dof_limits", "mirror_depth", "ambiguous_ranges",
           "describe_camera", "blur_figure", "write_description"]

#: blur (Gaussian sigma, pixels) below which a depth counts as in focus
DOF_THRESHOLD_PX = 0.5
#: blur change (pixels of sigma) used for the depth resolution column
RESOLUTION_STEP_PX = 0.25


def dof_limits(gain_px_m: float, focus_m: float, threshold_px: float = DOF_THRESHOLD_PX) -> tuple[float, float]:
    """Near and far depth (metres) where ``K |1/S - 1/x|`` reaches ``threshold_px`` (far: inf if never)."""
    t = threshold_px / gain_px_m
    far_inv = 1.0 / focus_m - t
    return 1.0 / (1.0 / focus_m + t), (1.0 / far_inv if far_inv > 0 else math.inf)


def mirror_depth(depth_m: float, focus_m: float) -> float:
    """The depth on the other side of the focus plane with the same blur (inf if none)."""
    inv = 2.0 / focus_m - 1.0 / depth_m
    return 1.0 / inv if inv > 0 else math.inf


def ambiguous_ranges(focus_m: float, depth_range_m: tuple[float, float]):
    """``((near_lo, near_hi), (far_lo, far_hi))`` metres: the parts of ``depth_range_m`` in front
    of and behind the focus plane whose blur the other side repeats; None if there is none."""
    d_min, d_max = depth_range_m
    s = 1.0 / focus_m
    if not d_min < focus_m < d_max:
        return None
    near_inv = min(1.0 / d_min, 2 * s - 1.0 / d_max)  # near depths: inverse depth in (s, near_inv]
    far_inv = max(1.0 / d_max, 2 * s - 1.0 / d_min)  # far depths: inverse depth in [far_inv, s)
    return (1.0 / near_inv, focus_m), (focus_m, 1.0 / far_inv)


@dataclass
class CameraReport:
    """The numbers of :func:`describe_camera` (depths in metres, blur in pixels of sigma)."""

    name: str
    describe: str
    gain_px_m: float
    focus_m: float
    depth_range_m: tuple[float, float]
    threshold_px: float
    dof_m: tuple[float, float]
    far_limit_px: float
    ambiguity: tuple | None
    rows: list[dict] = field(default_factory=list)  # depth_m, sigma_px, mirror_m, resolution_m
    image_width_px: int | None = None

    def verdict(self) -> str:
        """One sentence: can this setting measure depth in the range?"""
        lo, hi = self.depth_range_m
        inside = max(0.0, min(hi, self.dof_m[1]) - max(lo, self.dof_m[0]))
        parts = []
        if inside >= hi - lo:
            return f"the whole range {lo:g}-{hi:g} m is inside the depth of field: defocus carries no depth here"
        if self.ambiguity is not None:
            (a, b), (c, d) = self.ambiguity
            parts.append(f"every depth in {a:.3g}-{b:.3g} m has a twin in {c:.3g}-{min(d, hi):.3g} m with the same blur "
                         "(near/far ambiguity: keep the scene on one side of the focus plane, or rely on context)")
        else:
            parts.append("the range lies on one side of the focus plane: no near/far ambiguity")
        if inside > 0:
            parts.append(f"{inside:.3g} m of it is inside the depth of field (blur < {self.threshold_px:g} px)")
        parts.append(f"far away the blur tends to {self.far_limit_px:.3g} px")
        return "; ".join(parts)

    def markdown(self) -> str:
        """A short markdown report: settings, DoF, ambiguity, blur table."""
        near, far = self.dof_m
        lines = [
            f"# Camera `{self.name}`", "",
            f"{self.describe}  ",
            f"Blur: sigma_px(x) = {self.gain_px_m:.4g} |1/{self.focus_m:.4g} - 1/x| px"
            + (f" (images {self.image_width_px} px wide)" if self.image_width_px else "") + ".  ",
            f"Depth of field (sigma < {self.threshold_px:g} px): {near:.3f} - "
            + ("infinity" if math.isinf(far) else f"{far:.3f}") + " m.  ",
        ]
        if self.ambiguity is None:
            lines.append(f"Near/far ambiguity in {self.depth_range_m[0]:g}-{self.depth_range_m[1]:g} m: none.  ")
        else:
            (a, b), (c, d) = self.ambiguity
            lines.append(f"Near/far ambiguity in {self.depth_range_m[0]:g}-{self.depth_range_m[1]:g} m: "
                         f"each depth in {a:.3f}-{b:.3f} m (in front) has the blur of one in {c:.3f}-"
                         + ("infinity" if math.isinf(d) else f"{d:.3f}") + " m (behind): x' = 1 / (2/S - 1/x).  ")
        lines += [f"Verdict: {self.verdict()}.", "",
                  f"| depth (m) | sigma (px) | same blur at (m) | depth step for {RESOLUTION_STEP_PX:g} px (m) |",
                  "|---|---|---|---|"]
        for r in self.rows:
            m = r["mirror_m"]
            mirror = "-" if m is None else ("infinity" if math.isinf(m) else f"{m:.3f}")
            lines.append(f"| {r['depth_m']:.3g} | {r['sigma_px']:.3f} | {mirror} | {r['resolution_m']:.3g} |")
        return "\n".join(lines) + "\n"


def describe_camera(preset: Preset, depth_range_m: tuple[float, float] = (0.5, 10.0),
                    threshold_px: float = DOF_THRESHOLD_PX, depths_m: Sequence[float] | None = None,
                    image_width_px: int | None = None) -> CameraReport:
    """Blur, depth of field, ambiguity and depth resolution of a fixed-camera preset.

    Args:
        preset: a :class:`Preset` with a fixed camera (a width-relative one is taken at
            ``image_width_px``, default its stored camera's width).
        depth_range_m: ``(min, max)`` depths of interest, metres.
        threshold_px: depth-of-field threshold (sigma, pixels).
        depths_m: depths of the table (default: 8 log-spaced depths over the range and the focus).
    """
    lo, hi = float(depth_range_m[0]), float(depth_range_m[1])
    if not (0 < lo < hi and math.isfinite(hi)):
        raise InputError(f"depth range must be 0 < min < max metres, got {lo:g} - {hi:g}")
    if not threshold_px > 0:
        raise InputError(f"threshold must be > 0 px, got {threshold_px:g}")
    if preset.camera is None:
        raise InputError(f"preset {preset.name!r} draws a random camera per image: describe a fixed camera")
    cam = preset.camera
    if preset.sensor_width_m is not None and image_width_px:
        cam = cam.with_(pixel_pitch_m=preset.sensor_width_m / image_width_px)
    k, s = cam.blur_gain_px_m(), cam.focus_m
    if depths_m is None:
        depths_m = sorted({*np.geomspace(lo, hi, 8).round(3).tolist(), s})
    rows = []
    for x in depths_m:
        rows.append({"depth_m": float(x), "sigma_px": float(cam.sigma_px(float(x))),
                     "mirror_m": None if abs(x - s) <= 1e-6 * s else mirror_depth(float(x), s),
                     "resolution_m": float(x) ** 2 * RESOLUTION_STEP_PX / k})
    width = image_width_px or (round(preset.sensor_width_m / cam.pixel_pitch_m) if preset.sensor_width_m else None)
    return CameraReport(preset.name, cam.describe(), k, s, (lo, hi), threshold_px, dof_limits(k, s, threshold_px),
                        k / s, ambiguous_ranges(s, (lo, hi)), rows, width)


def blur_figure(report: CameraReport, path: str | os.PathLike) -> Path:
    """PNG of sigma (px) against depth (log axis) over the report's range, DoF and ambiguity shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    lo, hi = report.depth_range_m
    x = np.geomspace(lo, hi, 600)
    sigma = report.gain_px_m * np.abs(1.0 / report.focus_m - 1.0 / x)
    fig, ax = plt.subplots(figsize=(7, 4))
    near, far = report.dof_m
    ax.axvspan(max(near, lo), min(far, hi), color="tab:green", alpha=0.2,
               label=f"depth of field (sigma < {report.threshold_px:g} px)")
    if report.ambiguity is not None:
        for i, (a, b) in enumerate(report.ambiguity):
            ax.axvspan(max(a, lo), min(b, hi), color="tab:orange", alpha=0.15, hatch="//",
                       label="near/far ambiguity (same blur on both sides)" if i == 0 else None)
    ax.plot(x, sigma, color="tab:blue", lw=2, label="blur sigma")
    ax.axhline(report.threshold_px, color="tab:green", ls=":", lw=1)
    ax.axvline(report.focus_m, color="k", ls="--", lw=1, label=f"focus {report.focus_m:.3g} m")
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}" if f"{v:.0e}"[0] in "25" else ""))
    ax.set_xlabel("depth (m)")
    ax.set_ylabel("blur sigma (px)")
    ax.set_title(f"{report.name}: blur against depth")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper center")
    fig.tight_layout()
    path = Path(path)
    with atomic_write(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
    return path


def write_description(preset: Preset, out_dir: str | os.PathLike, **kwargs) -> tuple[CameraReport, dict[str, Path]]:
    """Write ``camera.yaml``, ``blur.png`` and ``describe.md`` into ``out_dir``; ``kwargs`` go to
    :func:`describe_camera`. Returns the report and the paths written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = describe_camera(preset, **kwargs)
    paths = {"camera": write_camera_file(out / "camera.yaml", preset), "figure": blur_figure(report, out / "blur.png"),
             "table": out / "describe.md"}
    with atomic_write(paths["table"]) as tmp:
        tmp.write_text(report.markdown() + "\n![blur against depth](blur.png)\n")
    return report, paths

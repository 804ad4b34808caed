"""The render specification: how a dataset's defocus is rendered, stated once.

A :class:`RenderSpec` holds what is the same for every item of a dataset:

- ``camera``: a fixed :class:`~twohded.optics.Camera`, or a :class:`~twohded.optics.Preset`
  (a fixed camera, a camera whose pixel pitch follows the image width, or a sampler that
  draws one camera per scene, e.g. ``syndof``);
- ``mode``: the renderer (:class:`~twohded.render.D3NetMode` or
  :class:`~twohded.render.DefaultMode`), the preset's own unless one is asked for;
- ``blur_at``: ``"source"`` (the camera's pixel pitch refers to the dataset's source frame)
  or ``"output"`` (to the output grid), see :mod:`twohded.data.defocus`.

It is resolved and validated once, where the user states it (:meth:`RenderSpec.resolve`: the
dataset constructor's ``preset`` / ``render_mode`` / ``blur_at``, the CLI's ``--preset`` /
``--mode`` / camera options through :func:`twohded.cli.render.camera_from_args`), and a
dataset exposes it as ``dataset.render_spec``. Items carry only what differs per item
(``render_seed``, ``pixel_scale``, ``render_depth``); :meth:`RenderSpec.render` turns them
into images.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import torch

from .errors import InputError
from .optics import Camera, Preset, get_preset
from .render import D3NetMode, DefaultMode, Mode, render_defocus, resolve_mode

BLUR_AT = ("source", "output")


@dataclass(frozen=True)
class RenderSpec:
    """A resolved, validated rendering setting (see module docstring). Build with :meth:`resolve`."""

    camera: Camera | Preset
    mode: Mode
    blur_at: str = "source"

    def __post_init__(self) -> None:
        if not isinstance(self.camera, (Camera, Preset)):
            raise InputError(f"RenderSpec.camera must be a Camera or a Preset, got {self.camera!r}")
        if not isinstance(self.mode, (D3NetMode, DefaultMode)):
            raise InputError(f"RenderSpec.mode must be a render mode, got {self.mode!r}")
        if self.blur_at not in BLUR_AT:
            raise InputError(f"blur_at={self.blur_at!r}: choose one of {', '.join(BLUR_AT)}")

    @classmethod
    def resolve(cls, preset, mode=None, blur_at: str | None = None) -> "RenderSpec":
        """The spec of what the user stated.

        Args:
            preset: a preset name or camera file (``"d3net_nyu"``, ``"mycam.yaml"``), a
                :class:`~twohded.optics.Preset`, a :class:`~twohded.optics.Camera` or a
                RenderSpec (whose mode / blur_at the other arguments override when given).
            mode: ``"d3net"``, ``"default"``, a mode dataclass or None (the preset's own;
                ``"default"`` for a bare Camera).
            blur_at: ``"source"`` or ``"output"``; None: ``"source"`` (or the given spec's).

        Raises:
            InputError: no preset, an unknown preset, mode or blur_at.
        """
        if isinstance(preset, RenderSpec):
            changes = {k: v for k, v in (("blur_at", blur_at),) if v is not None}
            if mode is not None:
                changes["mode"] = resolve_mode(mode, None)
            return replace(preset, **changes) if changes else preset
        if preset is None:
            raise InputError("rendering defocus needs a camera preset (e.g. preset='d3net_nyu')")
        camera = preset if isinstance(preset, (Camera, Preset)) else get_preset(str(preset))
        render_mode = resolve_mode(mode, camera if isinstance(camera, Preset) else None)
        return cls(camera, render_mode, "source" if blur_at is None else blur_at)

    @property
    def name(self) -> str:
        """The camera's or preset's name (for logs and reports)."""
        return self.camera.name

    def describe(self) -> str:
        return f"{self.name} ({self.mode.name} renderer, blur at {self.blur_at})"

    def cameras(self, depth_m: torch.Tensor, seeds: Sequence[int], pixel_scales: Sequence[float]) -> list[Camera]:
        """One :class:`~twohded.optics.Camera` per image.

        Args:
            depth_m: ``(B, 1, H, W)`` metres, valid everywhere (random presets pick a focus from it).
            seeds: per-image seeds (random presets such as ``syndof`` draw their camera from them).
            pixel_scales: output pixels per source pixel, per image. With ``blur_at="source"``
                the pixel pitch is scaled by ``1 / pixel_scale``, except for a width-relative
                preset (``paper``, ``syndof``: the sensor spans the frame), which already gives
                the output image the blur of the source image resized.
        """
        spec = self.camera
        width_relative = isinstance(spec, Preset) and spec.width_relative
        cams = []
        for b in range(depth_m.shape[0]):
            cam = spec if isinstance(spec, Camera) else spec.camera_for(depth_m[b], int(seeds[b]))
            scale = float(pixel_scales[b])
            if self.blur_at == "source" and scale != 1.0 and not width_relative:
                cam = cam.with_(pixel_pitch_m=cam.pixel_pitch_m / scale)
            cams.append(cam)
        return cams

    def render(self, aif: torch.Tensor, depth_m: torch.Tensor, seeds: Sequence[int],
               pixel_scales: Sequence[float]) -> tuple[torch.Tensor, list[Camera]]:
        """``(B, 3, H, W)`` aif in [0, 1] and ``(B, 1, H, W)`` valid depth, metres ->
        (defocused ``(B, 3, H, W)`` in [0, 1], the B cameras used)."""
        cams = self.cameras(depth_m, seeds, pixel_scales)
        return render_defocus(aif, depth_m, cams, mode=self.mode).clamp_(0.0, 1.0), cams


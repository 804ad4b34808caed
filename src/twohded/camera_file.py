"""Cameras as files: a :class:`~twohded.optics.Preset` written as, and read from, a small YAML file.

A camera file is accepted wherever a preset name is (``--preset mycam.yaml``, ``data.preset:
mycam.yaml`` in configs, ``twohded.get_preset("mycam.yaml")``). It is read with
``yaml.safe_load`` only. Example (every key is described below)::

    # twohded camera file
    version: 1
    name: mycam
    focal_length_mm: 50.0
    f_number: 1.8              # or aperture_mm: 27.8 (aperture diameter)
    focus_m: 2.0               # focus distance, object side; must exceed the focal length
    pixel_pitch_um: 6.0        # or sensor_width_mm: 36.0 with image_width_px: 6000
    psf:
      model: gaussian          # the only model: a Gaussian of sigma = sigma_per_coc * CoC diameter
      sigma_per_coc: 0.25      # k: 0.25 in the 2HDED:NET paper and SYNDOF, 0.3 in D3-Net's code
    coc_model: thin_lens       # or paper_eq8 (docs/physics.md)
    render_mode: default       # renderer used when none is asked for: default | d3net
    description: "..."         # optional, one line for logs
    source: "..."              # optional: where the numbers come from (datasheet, calibration)
    notes: "..."               # optional free text

Sensor size: ``pixel_pitch_um`` is absolute, the pitch of the pixels of the images the camera
is used on. ``sensor_width_mm`` with ``image_width_px`` instead says that the sensor spans the
image width, whatever it is: an image ``W`` px wide gets the pitch ``sensor_width / W`` (the
blur in pixels scales with the image, as the ``paper`` preset does); ``image_width_px`` is the
width of the reference camera stored in the preset.

Bad files raise :class:`~twohded.errors.InputError` with one line naming the file and the
problem (missing or unknown key, a value of the wrong type, impossible optics).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace
from pathlib import Path

import yaml

from .errors import InputError
from .io import atomic_write
from .optics import Camera, Preset

__all__ = ["CAMERA_FILE_SUFFIXES", "is_camera_file", "load_camera_file", "parse_camera", "dump_camera", "write_camera_file",
           "camera_from_specs"]

CAMERA_FILE_SUFFIXES = (".yaml", ".yml")
FORMAT_VERSION = 1
PSF_MODELS = ("gaussian",)
RENDER_MODES = ("default", "d3net")

REQUIRED = ("focal_length_mm", "focus_m", "psf")
OPTIONAL = (
    "version", "name", "f_number", "aperture_mm", "pixel_pitch_um", "sensor_width_mm", "image_width_px",
    "coc_model", "render_mode", "description", "source", "notes",
)
PSF_KEYS = ("model", "sigma_per_coc")


def is_camera_file(spec) -> bool:
    """True if ``spec`` (a preset argument) names a camera file rather than a built-in preset."""
    if isinstance(spec, os.PathLike):
        return True
    return isinstance(spec, str) and (spec.lower().endswith(CAMERA_FILE_SUFFIXES) or os.sep in spec or "/" in spec)


def load_camera_file(path: str | os.PathLike) -> Preset:
    """Read a camera file (see module docstring) into a :class:`Preset`."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: camera file not found")
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read camera file ({exc})") from None
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    return parse_camera(data, where=str(path), default_name=path.stem)


@dataclass(frozen=True)
class _Reader:
    """Typed access to one camera mapping; every error names ``where``."""

    data: dict
    where: str

    def fail(self, msg: str) -> InputError:
        return InputError(f"{self.where}: {msg}")

    def number(self, key: str, positive: bool = True) -> float:
        value = self.data[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise self.fail(f"{key} must be a number, got {value!r}")
        if positive and value <= 0:
            raise self.fail(f"{key} must be > 0, got {value!r}")
        return float(value)

    def text(self, key: str, default: str = "") -> str:
        value = self.data.get(key, default)
        if value is None:
            return default
        if not isinstance(value, str):
            raise self.fail(f"{key} must be text, got {value!r}")
        return value

    def one_of(self, *keys: str) -> str:
        present = [k for k in keys if k in self.data]
        if len(present) != 1:
            what = "both " + " and ".join(present) if present else "missing key " + " or ".join(keys)
            raise self.fail(f"{what} (give exactly one of {', '.join(keys)})")
        return present[0]


def parse_camera(data, where: str = "camera", default_name: str = "custom") -> Preset:
    """A camera mapping (as loaded from YAML) -> :class:`Preset`; ``where`` names it in errors."""
    if not isinstance(data, dict):
        raise InputError(f"{where}: a camera file must be a mapping of keys (focal_length_mm, f_number, ...), got {type(data).__name__}")
    r = _Reader(data, where)
    unknown = sorted(str(k) for k in data if k not in REQUIRED + OPTIONAL)
    if unknown:
        raise r.fail(f"unknown key {unknown[0]!r} (known: {', '.join(REQUIRED + OPTIONAL)})")
    missing = [k for k in REQUIRED if k not in data]
    if missing:
        raise r.fail(f"missing key {missing[0]!r}")
    if data.get("version", FORMAT_VERSION) != FORMAT_VERSION:
        raise r.fail(f"version {data['version']!r} is not supported (this twohded reads version {FORMAT_VERSION})")
    sigma_per_coc = _parse_psf(data["psf"], where)
    focal_m = _si(r.number("focal_length_mm"), 1e3)
    if r.one_of("f_number", "aperture_mm") == "f_number":
        f_number = r.number("f_number")
    else:
        f_number = focal_m / _si(r.number("aperture_mm"), 1e3)
    sensor_m = None
    if r.one_of("pixel_pitch_um", "sensor_width_mm") == "pixel_pitch_um":
        if "image_width_px" in data:
            raise r.fail("image_width_px goes with sensor_width_mm, not with pixel_pitch_um")
        pitch_m = _si(r.number("pixel_pitch_um"), 1e6)
    else:
        if "image_width_px" not in data:
            raise r.fail("missing key 'image_width_px' (sensor_width_mm needs the image width it spans)")
        width = data["image_width_px"]
        if isinstance(width, bool) or not isinstance(width, int) or width <= 0:
            raise r.fail(f"image_width_px must be a whole number > 0, got {width!r}")
        sensor_m = _si(r.number("sensor_width_mm"), 1e3)
        pitch_m = sensor_m / width
    focus_m = r.number("focus_m")
    if focus_m <= focal_m:
        raise r.fail(f"impossible optics: focus_m {focus_m:g} m is not beyond the focal length {focal_m:g} m")
    coc_model, mode = r.text("coc_model", "thin_lens"), r.text("render_mode", "default")
    if mode not in RENDER_MODES:
        raise r.fail(f"render_mode {mode!r} is unknown (choose one of {', '.join(RENDER_MODES)})")
    name = r.text("name", default_name) or default_name
    try:
        camera = Camera(focal_m, f_number, focus_m, pitch_m, sigma_per_coc, coc_model, name)  # type: ignore[arg-type]
    except InputError as exc:
        raise r.fail(str(exc)) from None
    return Preset(
        name=name,
        description=r.text("description") or camera.describe(),
        default_mode=mode,
        camera=camera,
        sensor_width_m=sensor_m,
        source=r.text("source"),
        notes=r.text("notes"),
    )


def _parse_psf(psf, where: str) -> float:
    """``psf: {model: gaussian, sigma_per_coc: k}`` -> k."""
    if not isinstance(psf, dict):
        raise InputError(f"{where}: psf must be a mapping such as {{model: gaussian, sigma_per_coc: 0.25}}, got {psf!r}")
    unknown = sorted(str(k) for k in psf if k not in PSF_KEYS)
    if unknown:
        raise InputError(f"{where}: unknown key 'psf.{unknown[0]}' (known: {', '.join(PSF_KEYS)})")
    for key in PSF_KEYS:
        if key not in psf:
            raise InputError(f"{where}: missing key 'psf.{key}'")
    if psf["model"] not in PSF_MODELS:
        raise InputError(f"{where}: psf.model {psf['model']!r} is not supported (choose one of {', '.join(PSF_MODELS)})")
    return _Reader(psf, where + " psf").number("sigma_per_coc")


def _si(value: float, per_unit: float) -> float:
    """A value in mm (``per_unit`` 1e3) or um (1e6) in metres."""
    return value / per_unit


def _unit(value_m: float, per_unit: float) -> str:
    """The shortest decimal text of ``value_m * per_unit`` that reads back to exactly ``value_m``."""
    x = value_m * per_unit
    for _ in range(8):
        if _si(float(repr(x)), per_unit) == value_m:
            return repr(x)
        x = math.nextafter(x, math.inf if _si(x, per_unit) < value_m else -math.inf)
    raise InputError(f"cannot write {value_m!r} exactly in units of 1/{per_unit:g}")  # pragma: no cover


def _quote(text: str) -> str:
    return yaml.safe_dump(text, default_style='"', width=10**6).strip()


def dump_camera(spec: Camera | Preset) -> str:
    """The camera file text (YAML with comments) of a Camera or a fixed-camera Preset.

    ``parse_camera(yaml.safe_load(dump_camera(p)))`` gives back ``p`` (a Camera becomes the
    Preset ``Preset(name, camera.describe(), "default", camera)``; the file has one ``name``,
    which the camera and the preset share).
    """
    preset = spec if isinstance(spec, Preset) else Preset(spec.name, spec.describe(), "default", camera=spec)
    cam = preset.camera
    if cam is None:
        raise InputError(f"preset {preset.name!r} draws a random camera per image: it cannot be written as a camera file")
    lines = [
        "# twohded camera file (docs/physics.md; read with yaml.safe_load)",
        f"version: {FORMAT_VERSION}",
        f"name: {_quote(preset.name)}",
        f"focal_length_mm: {_unit(cam.focal_length_m, 1e3)}",
        f"f_number: {cam.f_number!r}  # aperture diameter {cam.aperture_m * 1e3:.4g} mm",
        f"focus_m: {cam.focus_m!r}  # focus distance (object side)",
    ]
    if preset.sensor_width_m is not None:
        width = round(preset.sensor_width_m / cam.pixel_pitch_m)
        lines += [f"sensor_width_mm: {_unit(preset.sensor_width_m, 1e3)}  # spans the image width",
                  f"image_width_px: {width}  # the stored camera's width; blur in pixels scales with the image"]
    else:
        lines.append(f"pixel_pitch_um: {_unit(cam.pixel_pitch_m, 1e6)}  # pixel size in the images used")
    lines += [
        "psf:",
        "  model: gaussian  # sigma = sigma_per_coc * circle-of-confusion diameter",
        f"  sigma_per_coc: {cam.sigma_per_coc!r}",
        f"coc_model: {cam.coc_model}",
        f"render_mode: {preset.default_mode}",
        f"description: {_quote(preset.description)}",
        f"# blur: sigma_px(x) = {cam.blur_gain_px_m():.4g} * |1/{cam.focus_m:.4g} - 1/x| px, x in metres",
    ]
    for key in ("source", "notes"):
        if getattr(preset, key):
            lines.append(f"{key}: {_quote(getattr(preset, key))}")
    return "\n".join(lines) + "\n"


def write_camera_file(path: str | os.PathLike, spec: Camera | Preset) -> Path:
    """Write ``spec`` as a camera file at ``path`` (atomically) and check that it reads back equal."""
    text = dump_camera(spec)
    path = Path(path)
    if isinstance(spec, Preset):  # one name in the file: the camera takes the preset's
        expected = replace(spec, camera=spec.camera.with_(name=spec.name))
    else:
        expected = Preset(spec.name, spec.describe(), "default", camera=spec)
    if parse_camera(yaml.safe_load(text), where=str(path), default_name=path.stem) != expected:
        raise InputError(f"{path}: the camera does not survive writing (please report this)")  # pragma: no cover
    with atomic_write(path) as tmp:
        tmp.write_text(text)
    return path


#: keys given together that replace each other: a new f-number replaces an aperture and so on
_EXCLUSIVE = (("f_number", "aperture_mm"), ("pixel_pitch_um", "sensor_width_mm"))


def camera_from_specs(base: Preset | None = None, where: str = "camera options", **specs) -> Preset:
    """A preset from lens specs given as camera-file keys (``focal_length_mm=50, f_number=1.8,
    focus_m=2, pixel_pitch_um=6, sigma_per_coc=0.25`` ...; None values are ignored), on top of
    ``base`` (a fixed-camera preset) if given. ``sigma_per_coc`` defaults to 0.25 (the paper's)
    when there is no base; ``where`` names the source in errors."""
    specs = {k: v for k, v in specs.items() if v is not None}
    data: dict = {}
    if base is not None:
        data = yaml.safe_load(dump_camera(base))
        for pair in _EXCLUSIVE:
            if any(k in specs for k in pair):
                for k in pair:
                    data.pop(k, None)
        if "pixel_pitch_um" in specs:
            data.pop("image_width_px", None)  # it went with the sensor width
        if specs and "description" not in specs:
            data.pop("description", None)  # the old one would describe the old camera
    data.setdefault("psf", {"model": "gaussian", "sigma_per_coc": 0.25})
    if "sigma_per_coc" in specs:
        data["psf"] = {**data["psf"], "sigma_per_coc": specs.pop("sigma_per_coc")}
    data.update(specs)
    return parse_camera(data, where=where, default_name=str(data.get("name", "custom")))

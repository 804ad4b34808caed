"""Camera files: round trip, one-line errors naming the file, accepted wherever a preset name is."""

from __future__ import annotations

import pytest
import torch
import yaml

import twohded
from twohded.camera_file import dump_camera, load_camera_file, parse_camera, write_camera_file
from twohded.errors import InputError
from twohded.optics import D3NET_NYU, Camera, Preset, get_preset

GOOD = {
    "name": "mycam",
    "focal_length_mm": 50.0,
    "f_number": 1.8,
    "focus_m": 2.0,
    "pixel_pitch_um": 6.0,
    "psf": {"model": "gaussian", "sigma_per_coc": 0.25},
}


@pytest.mark.parametrize("name", ["d3net_nyu", "paper", "dfd_indoor"])
def test_builtin_presets_round_trip(tmp_path, name):
    preset = get_preset(name)
    path = write_camera_file(tmp_path / f"{name}.yaml", preset)
    back = get_preset(str(path))
    assert back == preset  # exact: every float, the mode, the sensor width
    assert back.camera.blur_gain_px_m() == preset.camera.blur_gain_px_m()


def test_camera_round_trips_and_odd_floats_stay_exact(tmp_path):
    cam = Camera(focal_length_m=0.0123456789, f_number=1.0 / 3.0, focus_m=1.0 / 0.6, pixel_pitch_m=3.3e-6 / 7,
                 sigma_per_coc=0.3, name="odd")
    back = load_camera_file(write_camera_file(tmp_path / "odd.yaml", cam))
    assert back.camera == cam and back.default_mode == "default"


def test_file_values_and_alternatives():
    p = parse_camera(dict(GOOD))
    assert p.camera.focal_length_m == pytest.approx(0.05) and p.camera.pixel_pitch_m == pytest.approx(6e-6)
    alt = {k: v for k, v in GOOD.items() if k not in ("f_number", "pixel_pitch_um")}
    alt.update(aperture_mm=25.0, sensor_width_mm=36.0, image_width_px=6000, render_mode="d3net",
               source="datasheet", notes="test")
    q = parse_camera(alt)
    assert q.camera.f_number == pytest.approx(2.0)
    assert q.sensor_width_m == pytest.approx(0.036) and q.width_relative
    assert q.default_mode == "d3net" and q.source == "datasheet"
    # width relative: an image 600 px wide gets a 10x larger pitch than the 6000 px reference
    assert q.camera_for(torch.ones(10, 600)).pixel_pitch_m == pytest.approx(6e-5)
    assert parse_camera(yaml.safe_load(dump_camera(q))) == q


@pytest.mark.parametrize(
    "change, message",
    [
        ({"focus_m": 0.04}, "focus_m 0.04 m is not beyond the focal length"),
        ({"focus_m": -1.0}, "focus_m must be > 0"),
        ({"f_number": -2.0}, "f_number must be > 0"),
        ({"f_number": "wide"}, "f_number must be a number"),
        ({"psf": {"model": "disc", "sigma_per_coc": 0.3}}, "psf.model 'disc' is not supported"),
        ({"psf": {"model": "gaussian"}}, "missing key 'psf.sigma_per_coc'"),
        ({"lens": "x"}, "unknown key 'lens'"),
        ({"aperture_mm": 10.0}, "both f_number and aperture_mm"),
        ({"render_mode": "fast"}, "render_mode 'fast' is unknown"),
        ({"image_width_px": 100}, "image_width_px goes with sensor_width_mm"),
        ({"version": 2}, "version 2 is not supported"),
    ],
)
def test_bad_files_get_one_line_errors_naming_the_file(tmp_path, change, message):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({**GOOD, **change}))
    with pytest.raises(InputError) as exc:
        get_preset(str(path))
    text = str(exc.value)
    assert text.startswith(str(path)) and message in text and "\n" not in text


@pytest.mark.parametrize("drop", ["focal_length_mm", "focus_m", "psf", "f_number", "pixel_pitch_um"])
def test_missing_keys_are_named(tmp_path, drop):
    path = tmp_path / "missing.yaml"
    path.write_text(yaml.safe_dump({k: v for k, v in GOOD.items() if k != drop}))
    with pytest.raises(InputError, match=f"missing key '?{drop}"):
        load_camera_file(path)


def test_not_a_mapping_not_yaml_and_absent(tmp_path):
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    (tmp_path / "broken.yaml").write_text("focal_length_mm: [1,\n")
    (tmp_path / "code.yaml").write_text("!!python/object/apply:os.system ['true']\n")
    with pytest.raises(InputError, match="must be a mapping"):
        get_preset(str(tmp_path / "list.yaml"))
    with pytest.raises(InputError, match="not valid YAML"):
        get_preset(str(tmp_path / "broken.yaml"))
    with pytest.raises(InputError, match="not valid YAML"):  # safe_load: no code runs
        get_preset(str(tmp_path / "code.yaml"))
    with pytest.raises(InputError, match="camera file not found"):
        get_preset(str(tmp_path / "nope.yaml"))
    with pytest.raises(InputError, match="or give a camera file"):
        get_preset("nope")


def test_sampled_preset_cannot_be_written():
    with pytest.raises(InputError, match="random camera"):
        dump_camera(get_preset("syndof"))


def test_file_renders_like_its_camera_and_reloads_when_changed(tmp_path):
    path = write_camera_file(tmp_path / "cam.yaml", Preset("cam", "d", "default", camera=D3NET_NYU))
    img = torch.rand(3, 24, 32)
    depth = torch.linspace(0.8, 5.0, 32).expand(24, 32).contiguous()
    out = twohded.render_defocus(img, depth, str(path))
    assert torch.allclose(out, twohded.render_defocus(img, depth, D3NET_NYU, mode="default"))
    path.write_text(path.read_text().replace("focus_m: 2.0", "focus_m: 3.0"))
    assert get_preset(str(path)).camera.focus_m == 3.0


def test_config_accepts_a_camera_file(tmp_path):
    from twohded.config import load_config

    from .helpers import REPO_ROOT

    path = write_camera_file(tmp_path / "cam.yaml", D3NET_NYU)
    cfg = load_config(REPO_ROOT / "configs" / "synthetic_quick.yaml", [f"data.preset={path}"])
    assert cfg.data.preset == str(path)
    with pytest.raises(InputError, match="data.preset.*absent.yaml: camera file not found"):
        load_config(REPO_ROOT / "configs" / "synthetic_quick.yaml", [f"data.preset={tmp_path / 'absent.yaml'}"])

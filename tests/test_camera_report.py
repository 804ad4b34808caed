"""camera describe: depth of field, near/far ambiguity, table and figure; the CLI writes the files."""

from __future__ import annotations

import math

import pytest
import yaml
from PIL import Image

from twohded.camera_file import load_camera_file
from twohded.camera_report import ambiguous_ranges, describe_camera, dof_limits, mirror_depth, write_description
from twohded.cli import main
from twohded.errors import InputError
from twohded.optics import get_preset


def test_dof_limits_are_where_blur_reaches_the_threshold():
    cam = get_preset("dfd_indoor").camera
    near, far = dof_limits(cam.blur_gain_px_m(), cam.focus_m, 0.5)
    assert float(cam.sigma_px(near)) == pytest.approx(0.5, rel=1e-9)
    assert float(cam.sigma_px(far)) == pytest.approx(0.5, rel=1e-9)
    assert near < cam.focus_m < far
    # blur that never reaches the threshold behind the focus plane: the far limit is infinite
    assert math.isinf(dof_limits(1.0, 2.0, 0.6)[1])


def test_mirror_depth_has_the_same_blur_and_ranges_pair_up():
    cam = get_preset("d3net_nyu").camera  # focus 2 m
    for x in (1.2, 1.5, 1.9):
        twin = mirror_depth(x, cam.focus_m)
        assert twin > cam.focus_m and float(cam.sigma_px(twin)) == pytest.approx(float(cam.sigma_px(x)), rel=1e-9)
    assert math.isinf(mirror_depth(0.9, 2.0))  # nearer than S/2: no twin behind
    (a, b), (c, d) = ambiguous_ranges(2.0, (0.5, 10.0))
    assert (b, c) == (2.0, 2.0)
    assert a == pytest.approx(mirror_depth(10.0, 2.0)) and d == 10.0  # the far end's twin bounds the near side
    (a, b), (c, d) = ambiguous_ranges(2.0, (1.5, 10.0))
    assert a == 1.5 and d == pytest.approx(mirror_depth(1.5, 2.0))
    assert ambiguous_ranges(2.0, (2.5, 10.0)) is None  # all behind the focus plane


def test_report_table_and_verdict():
    report = describe_camera(get_preset("d3net_nyu"), depth_range_m=(0.7, 10.0), depths_m=[1.0, 2.0, 4.0])
    assert [r["depth_m"] for r in report.rows] == [1.0, 2.0, 4.0]
    assert report.rows[0]["sigma_px"] == pytest.approx(float(get_preset("d3net_nyu").camera.sigma_px(1.0)))
    assert report.rows[1]["mirror_m"] is None and report.rows[2]["mirror_m"] == pytest.approx(4.0 / 3.0)
    text = report.markdown()
    assert "| 1 | 2.169 |" in text and "Depth of field" in text and "twin" in text
    far_only = describe_camera(get_preset("d3net_nyu"), depth_range_m=(3.0, 10.0))
    assert far_only.ambiguity is None and "no near/far ambiguity" in far_only.verdict()
    with pytest.raises(InputError, match="depth range"):
        describe_camera(get_preset("d3net_nyu"), depth_range_m=(5.0, 1.0))
    with pytest.raises(InputError, match="random camera"):
        describe_camera(get_preset("syndof"))


def test_write_description_files(tmp_path):
    report, paths = write_description(get_preset("paper"), tmp_path / "out", depth_range_m=(0.7, 10.0))
    assert load_camera_file(paths["camera"]) == get_preset("paper")
    with Image.open(paths["figure"]) as im:
        assert im.format == "PNG" and im.size[0] > 300
    assert paths["table"].read_text().startswith("# Camera `paper`")


def test_cli_describe_from_specs(tmp_path, capsys):
    out = tmp_path / "cam"
    rc = main(["camera", "describe", "--focal-length-mm", "50", "--f-number", "2", "--focus-m", "3",
               "--pixel-pitch-um", "5", "--name", "mine", "--out", str(out)])
    assert rc == 0
    data = yaml.safe_load((out / "camera.yaml").read_text())
    assert data["focal_length_mm"] == 50.0 and data["psf"]["sigma_per_coc"] == 0.25 and data["name"] == "mine"
    assert (out / "blur.png").stat().st_size > 0 and "| depth (m) |" in capsys.readouterr().out
    # the written file describes the same camera; an override on a preset replaces its value
    rc = main(["camera", "describe", "--preset", str(out / "camera.yaml"), "--aperture-mm", "10", "--out", str(tmp_path / "b")])
    assert rc == 0 and load_camera_file(tmp_path / "b" / "camera.yaml").camera.f_number == pytest.approx(5.0)


def test_cli_describe_bad_specs_exit_2(tmp_path, capsys):
    rc = main(["camera", "describe", "--focal-length-mm", "50", "--f-number", "2", "--pixel-pitch-um", "5",
               "--out", str(tmp_path)])
    assert rc == 2 and "missing --focus-m" in capsys.readouterr().err
    rc = main(["camera", "describe", "--focal-length-mm", "50", "--f-number", "2", "--focus-m", "0.03",
               "--pixel-pitch-um", "5", "--out", str(tmp_path)])
    assert rc == 2 and "impossible optics" in capsys.readouterr().err

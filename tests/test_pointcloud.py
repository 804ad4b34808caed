"""Point clouds: pinhole intrinsics, back-projection and binary PLY files read back with NumPy."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from twohded.errors import InputError
from twohded.pointcloud import Intrinsics, camera_intrinsics, depth_to_points, exif_focal_35mm, save_point_cloud
from twohded.predict import Prediction


def read_ply(path):
    """Parse a binary little-endian PLY (header, then the body) independently of twohded."""
    data = path.read_bytes()
    end = data.index(b"end_header\n") + len(b"end_header\n")
    header = data[:end].decode("ascii").splitlines()
    assert header[0] == "ply" and header[1] == "format binary_little_endian 1.0"
    n = next(int(line.split()[2]) for line in header if line.startswith("element vertex"))
    props = [line.split()[1:] for line in header if line.startswith("property")]
    types = {"float": "<f4", "uchar": "u1"}
    dtype = np.dtype([(name, types[t]) for t, name in props])
    assert len(data) - end == n * dtype.itemsize  # nothing missing, nothing extra
    body = np.frombuffer(data[end:], dtype=dtype)
    xyz = np.stack([body["x"], body["y"], body["z"]], axis=1)
    rgb = np.stack([body["red"], body["green"], body["blue"]], axis=1)
    return header, xyz, rgb


def test_plane_at_known_depth_read_back(tmp_path):
    h, w, z0 = 40, 60, 2.5
    depth = np.full((h, w), z0, np.float32)
    depth[0, 0] = 0.0  # no depth: left out
    depth[1, 1] = np.nan
    rgb = np.zeros((h, w, 3), np.float32)
    rgb[..., 0] = np.linspace(0, 1, w)[None, :]  # red grows to the right
    rgb[..., 1] = np.linspace(0, 1, h)[:, None]  # green grows downwards
    intr = camera_intrinsics(w, h, focal_mm=50.0, pixel_pitch_um=10.0)  # 5000 px
    assert intr.fx_px == pytest.approx(5000.0) and (intr.cx_px, intr.cy_px) == (29.5, 19.5)
    n = save_point_cloud(tmp_path / "p.ply", depth, rgb, intr)
    header, xyz, col = read_ply(tmp_path / "p.ply")
    assert n == len(xyz) == h * w - 2
    assert [line for line in header if line.startswith("property")] == [
        "property float x", "property float y", "property float z",
        "property uchar red", "property uchar green", "property uchar blue"]
    assert any("x right, y down, z forward" in line and "metres" in line for line in header)
    np.testing.assert_allclose(xyz[:, 2], z0)
    v, u = np.divmod(np.delete(np.arange(h * w), [0, w + 1]), w)
    np.testing.assert_allclose(xyz[:, 0], (u - 29.5) * z0 / 5000.0, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(xyz[:, 1], (v - 19.5) * z0 / 5000.0, rtol=1e-6, atol=1e-9)
    # x right and y down: the right edge has x > 0 and the most red; the bottom has y > 0 and the most green
    assert xyz[col[:, 0].argmax(), 0] > 0 and xyz[col[:, 1].argmax(), 1] > 0
    np.testing.assert_array_equal(col[:, 0], np.round(rgb[..., 0].reshape(-1)[np.delete(np.arange(h * w), [0, w + 1])] * 255))
    # the plane spans the field of view: width at the plane = W * z / f
    assert xyz[:, 0].max() - xyz[:, 0].min() == pytest.approx((w - 1) * z0 / 5000.0, rel=1e-5)


def test_intrinsics_sources():
    fov = camera_intrinsics(640, 480, fov_deg=90.0)
    assert fov.fx_px == pytest.approx(320.0) and fov.fov_deg == pytest.approx(90.0)
    paper = camera_intrinsics(640, 480, preset="paper")  # 70 mm, 36 mm sensor across the width
    assert paper.fx_px == pytest.approx(0.07 / (0.036 / 640))
    d3 = camera_intrinsics(640, 480, preset="d3net_nyu")  # 15 mm, 5.6 um
    assert d3.fx_px == pytest.approx(0.015 / 5.6e-6)
    assert camera_intrinsics(640, 480, preset="d3net_nyu", focal_mm=30.0).fx_px == pytest.approx(2 * d3.fx_px)
    exif = camera_intrinsics(600, 400, focal_35mm=36.0)  # 3:2 frame: 36 mm equivalent = 53.1 deg across
    assert exif.fov_deg == pytest.approx(math.degrees(2 * math.atan(18 / 36)), rel=1e-3)
    with pytest.raises(InputError, match="needs the camera's intrinsics"):
        camera_intrinsics(640, 480)
    with pytest.raises(InputError, match="--pixel-pitch-um is needed"):
        camera_intrinsics(640, 480, focal_mm=50.0)
    with pytest.raises(InputError, match="not both"):
        camera_intrinsics(640, 480, fov_deg=60.0, focal_mm=50.0)
    with pytest.raises(InputError, match="between 0 and 180"):
        camera_intrinsics(640, 480, fov_deg=180.0)
    with pytest.raises(InputError, match="random camera"):
        camera_intrinsics(640, 480, preset="syndof")
    with pytest.raises(InputError, match="unknown preset"):
        camera_intrinsics(640, 480, preset="nope")


def test_exif_focal_35mm(tmp_path):
    img = Image.new("RGB", (64, 48))
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0xA405] = 28
    img.save(tmp_path / "e.jpg", exif=exif)
    img.save(tmp_path / "plain.jpg")
    assert exif_focal_35mm(tmp_path / "e.jpg") == 28.0
    assert exif_focal_35mm(tmp_path / "plain.jpg") is None


def test_step_and_prediction_save_ply(tmp_path):
    depth = np.linspace(1.0, 2.0, 48 * 64, dtype=np.float32).reshape(48, 64)
    intr = Intrinsics.centred(100.0, 64, 48)
    pts, mask = depth_to_points(depth, intr, step=4)
    assert mask.sum() == 12 * 16 == len(pts)
    with pytest.raises(InputError, match="intrinsics are for"):
        depth_to_points(depth.T, intr)
    pred = Prediction(depth=depth, aif=np.ones((48, 64, 3), np.float32))
    assert pred.save_ply(tmp_path / "a.ply", intr) == 48 * 64
    _, xyz, col = read_ply(tmp_path / "a.ply")
    assert (col == 255).all()  # coloured by the AiF image
    np.testing.assert_allclose(xyz[:, 2], depth.reshape(-1))
    with pytest.raises(InputError, match="no depth"):
        Prediction(depth=None, aif=np.ones((48, 64, 3), np.float32)).save_ply(tmp_path / "b.ply", intr)

"""Prediction: inputs of every kind, tiling, the Python API and ``twohded predict``."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from twohded.cli import main
from twohded.errors import InputError
from twohded.models import DefocusModel, ModelOutput
from twohded.predict import MIN_SIDE, Prediction, Predictor, load_model, tile_grid, to_image_tensor


@pytest.fixture(scope="module")
def predictor(ckpt):
    return load_model(ckpt, device="cpu")


class Pointwise(DefocusModel):
    """A stand-in whose output at a pixel depends on that pixel only: tiling must be exact."""

    outputs = ("depth", "aif")

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.tensor(2.0))

    def forward(self, x):
        return ModelOutput(depth=1.0 + self.w * x.mean(1, keepdim=True), aif=x.flip(1))


def _images(tmp_path):
    rng = np.random.default_rng(0)
    paths = {}
    paths["rgb"] = tmp_path / "rgb.jpg"
    Image.fromarray((rng.random((70, 90, 3)) * 255).astype(np.uint8)).save(paths["rgb"])
    paths["gray16"] = tmp_path / "gray16.png"
    Image.fromarray((rng.random((64, 64)) * 65535).astype(np.uint16)).save(paths["gray16"])
    paths["rgba"] = tmp_path / "rgba.png"
    Image.fromarray((rng.random((64, 80, 4)) * 255).astype(np.uint8), "RGBA").save(paths["rgba"])
    return paths


# --- Python API ------------------------------------------------------------------------


def test_predict_any_input_kind(predictor):
    assert predictor.outputs == ("depth", "aif")
    rng = np.random.default_rng(1)
    arr = (rng.random((40, 56, 3)) * 255).astype(np.uint8)
    r_np = predictor.predict(arr)
    assert r_np.depth.shape == (40, 56) and r_np.depth.dtype == np.float32
    assert r_np.aif.shape == (40, 56, 3) and 0.0 <= r_np.aif.min() and r_np.aif.max() <= 1.0
    assert (r_np.depth >= 0).all()
    r_pil = predictor.predict(Image.fromarray(arr))
    r_t = predictor.predict(torch.from_numpy(arr).permute(2, 0, 1))  # uint8 (3, H, W)
    r_f = predictor(torch.from_numpy(arr).permute(2, 0, 1)[None].float() / 255)  # (1, 3, H, W) float
    for r in (r_pil, r_t, r_f):
        np.testing.assert_allclose(r.depth, r_np.depth, atol=1e-5)
        np.testing.assert_allclose(r.aif, r_np.aif, atol=1e-5)
    d, a = r_np.as_tensors()
    assert d.shape == (1, 40, 56) and a.shape == (3, 40, 56)
    # gray (H, W), (H, W, 1), RGBA and uint16 arrays
    assert predictor.predict(arr[..., 0]).size == (40, 56)
    assert predictor.predict(arr[..., :1]).size == (40, 56)
    rgba = np.concatenate([arr, np.full_like(arr[..., :1], 7)], axis=2)
    np.testing.assert_allclose(predictor.predict(rgba).depth, r_np.depth, atol=1e-5)
    np.testing.assert_allclose(predictor.predict(arr.astype(np.uint16) * 257).depth, r_np.depth, atol=1e-4)


def test_minimum_size_and_bad_inputs(predictor):
    with pytest.raises(InputError, match=f"at least {MIN_SIDE}x{MIN_SIDE}"):
        predictor.predict(np.zeros((31, 100, 3), np.uint8))
    with pytest.raises(InputError, match="NaN"):
        predictor.predict(torch.full((3, 40, 40), float("nan")))
    with pytest.raises(InputError, match="tensors must be"):
        to_image_tensor(torch.zeros(2, 3, 40, 40))
    with pytest.raises(InputError, match="expected a file path"):
        to_image_tensor([1, 2, 3])


def test_exif_rotation_is_applied(tmp_path, predictor):
    img = Image.fromarray((np.random.default_rng(2).random((40, 72, 3)) * 255).astype(np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    path = tmp_path / "rot.jpg"
    img.save(path, exif=exif)
    assert predictor.predict(path).size == (72, 40)


def test_tile_grid_covers_with_overlap():
    th, tw, corners = tile_grid(300, 1000, max_side=256, overlap=64)
    assert (th, tw) == (256, 256)
    lefts = sorted({l for _, l in corners})
    assert lefts[0] == 0 and lefts[-1] == 1000 - 256
    assert all(b - a <= 256 - 64 for a, b in zip(lefts, lefts[1:]))  # overlap >= 64
    assert tile_grid(100, 200, max_side=256, overlap=64) == (100, 200, [(0, 0)])


def test_tiled_prediction_blends_exactly():
    """With a pixel-wise model, tiled and untiled results agree: weights are normalised, no seams."""
    x = torch.rand(3, 150, 333)
    whole = Predictor(Pointwise(), device="cpu", max_side=1024).predict(x)
    tiled = Predictor(Pointwise(), device="cpu", max_side=96, overlap=32, batch_size=3).predict(x)
    assert whole.tiles == 1 and tiled.tiles > 4
    np.testing.assert_allclose(tiled.depth, whole.depth, atol=1e-5)
    np.testing.assert_allclose(tiled.aif, whole.aif, atol=1e-5)


def test_tiled_real_model_is_smooth(predictor):
    p = Predictor(predictor.model, device="cpu", max_side=64, overlap=32)
    x = torch.rand(3, 80, 150)
    r = p.predict(x)
    assert r.tiles > 1 and r.depth.shape == (80, 150) and np.isfinite(r.depth).all()


def test_prediction_save(tmp_path):
    depth = np.linspace(0.5, 4.0, 48 * 64, dtype=np.float32).reshape(48, 64)
    aif = np.random.default_rng(0).random((48, 64, 3)).astype(np.float32)
    pred = Prediction(depth=depth, aif=aif)
    written = pred.save(tmp_path, "x")
    assert [p.name for p in written] == ["x_depth.npy", "x_depth.png", "x_depth_color.png", "x_aif.png"]
    np.testing.assert_array_equal(np.load(tmp_path / "x_depth.npy"), depth)
    mm = np.asarray(Image.open(tmp_path / "x_depth.png"))
    assert mm.dtype == np.uint16 and mm.shape == (48, 64)
    np.testing.assert_array_equal(mm, np.round(depth * 1000).astype(np.uint16))
    color = Image.open(tmp_path / "x_depth_color.png")
    assert color.height >= 256 and color.width > color.height  # upscaled, with the scale bar on the right
    assert Image.open(tmp_path / "x_aif.png").size == (64, 48)
    with pytest.raises(InputError, match="already exists"):
        pred.save(tmp_path, "x")
    Prediction(depth=depth, aif=None).save(tmp_path, "x", overwrite=True, depth_range=(0.0, 5.0))


# --- command line ----------------------------------------------------------------------


def _one_error_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("twohded: error: "), err
    assert "Traceback" not in err[0]
    return err[0]


def test_cli_predict_folder(tmp_path, ckpt, capsys):
    src = tmp_path / "in"
    src.mkdir()
    paths = _images(src)
    out = tmp_path / "out"
    assert main(["predict", str(src), "--checkpoint", str(ckpt), "--out", str(out), "--no-progress",
                 "--batch-size", "2"]) == 0
    for stem, p in paths.items():
        w, h = Image.open(p).size
        for suffix in ("_depth.npy", "_depth.png", "_depth_color.png", "_aif.png"):
            assert (out / f"{stem}{suffix}").is_file()
        depth = np.load(out / f"{stem}_depth.npy")
        assert depth.shape == (h, w) and depth.dtype == np.float32
        assert Image.open(out / f"{stem}_aif.png").size == (w, h)
    # again with the same settings: the finished image is skipped, nothing touched
    before = {p: p.stat().st_mtime_ns for p in out.iterdir()}
    capsys.readouterr()
    assert main(["predict", str(paths["rgb"]), "--checkpoint", str(ckpt), "--out", str(out), "--no-progress"]) == 0
    assert "skipped 1 image(s)" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in out.iterdir()} == before
    # with other settings: refused, nothing touched
    assert main(["predict", str(paths["rgb"]), "--checkpoint", str(ckpt), "--out", str(out), "--no-progress",
                 "--depth-range", "0", "9"]) == 2
    line = _one_error_line(capsys)
    assert "--overwrite" in line and "depth_range" in line
    assert {p: p.stat().st_mtime_ns for p in out.iterdir()} == before
    assert main(["predict", str(paths["rgb"]), "--checkpoint", str(ckpt), "--out", str(out), "--no-progress",
                 "--overwrite"]) == 0


def test_cli_predict_bad_inputs(tmp_path, ckpt, capsys):
    small = tmp_path / "small.png"
    Image.fromarray(np.zeros((20, 50, 3), np.uint8)).save(small)
    good = tmp_path / "good.png"
    Image.fromarray(np.zeros((40, 50, 3), np.uint8)).save(good)
    bad_ckpt = tmp_path / "bad.pt"
    bad_ckpt.write_bytes(b"not a checkpoint")
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    out = tmp_path / "out"
    cases = [
        ([str(tmp_path / "missing.png"), "--checkpoint", str(ckpt), "--out", str(out)], "does not exist"),
        ([str(good), str(small), "--checkpoint", str(ckpt), "--out", str(out)], "at least 32x32"),
        ([str(good), "--checkpoint", str(bad_ckpt), "--out", str(out)], "not a readable checkpoint"),
        ([str(good), "--checkpoint", str(ckpt), "--out", str(out), "--model", "2hded-depth"], "not '2hded-depth'"),
        ([str(good), "--checkpoint", str(ckpt), "--out", str(blocker / "sub")], str(blocker)),
        ([str(good), "--checkpoint", str(ckpt), "--out", str(blocker)], "not a folder"),
    ]
    for argv, message in cases:
        assert main(["predict", *argv, "--no-progress"]) == 2, argv
        assert message in _one_error_line(capsys)
    assert not out.exists()  # nothing half-written

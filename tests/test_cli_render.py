"""The render and scenes commands, end to end, including bad input (one line, exit 2)."""

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from twohded.cli import main
from twohded.io import read_depth, read_image


@pytest.fixture()
def pair(tmp_path):
    rng = np.random.default_rng(0)
    rgb = (rng.random((40, 56, 3)) * 255).astype(np.uint8)
    depth_mm = np.full((40, 56), 1000, np.uint16)
    depth_mm[:, 28:] = 4000
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    Image.fromarray(depth_mm).save(tmp_path / "depth.png")
    return tmp_path / "rgb.png", tmp_path / "depth.png"


def run_cli(capsys, *args):
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_render_png_and_npy_match_the_api(pair, tmp_path, capsys):
    import twohded

    rgb, depth = pair
    code, _, err = run_cli(capsys, "render", "--image", rgb, "--depth", depth, "--preset", "d3net_nyu", "--out", tmp_path / "o.npy")
    assert code == 0, err
    out = np.load(tmp_path / "o.npy")
    assert out.shape == (40, 56, 3) and out.dtype == np.float32
    expected = twohded.render_defocus(read_image(rgb), read_depth(depth), "d3net_nyu")
    np.testing.assert_allclose(out, expected.permute(1, 2, 0).numpy(), atol=1e-6)
    code, _, _ = run_cli(capsys, "render", "--image", rgb, "--depth", depth, "--out", tmp_path / "o.png", "--focus-m", "1.0")
    assert code == 0 and Image.open(tmp_path / "o.png").size == (56, 40)


def _truncated_png(path, src):
    data = src.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


@pytest.mark.parametrize(
    "case, words",
    [
        ("missing_image", "does not exist"),
        ("truncated_image", "cannot read image"),
        ("not_an_image", "not an image"),
        ("wrong_size_depth", "must match"),
        ("zero_depth", "zero or negative"),
        ("nan_depth", "NaN"),
        ("unknown_preset", "unknown preset"),
        ("impossible_camera", "impossible camera"),
        ("bad_suffix", "must end in"),
    ],
)
def test_render_bad_input_is_one_clear_line(pair, tmp_path, capsys, case, words):
    rgb, depth = pair
    out = tmp_path / "out.png"
    extra = []
    if case == "missing_image":
        rgb = tmp_path / "nope.png"
    elif case == "truncated_image":
        rgb = _truncated_png(tmp_path / "trunc.png", rgb)
    elif case == "not_an_image":
        rgb = tmp_path / "text.png"
        rgb.write_text("hello")
    elif case == "wrong_size_depth":
        Image.fromarray(np.full((20, 20), 1000, np.uint16)).save(tmp_path / "small.png")
        depth = tmp_path / "small.png"
    elif case == "zero_depth":
        Image.fromarray(np.zeros((40, 56), np.uint16)).save(tmp_path / "zero.png")
        depth = tmp_path / "zero.png"
    elif case == "nan_depth":
        d = np.ones((40, 56), np.float32)
        d[3, 4] = np.nan
        np.save(tmp_path / "nan.npy", d)
        depth = tmp_path / "nan.npy"
    elif case == "unknown_preset":
        extra = ["--preset", "nope"]
    elif case == "impossible_camera":
        extra = ["--f-number", "0"]
    elif case == "bad_suffix":
        out = tmp_path / "out.txt"
    code, _, err = run_cli(capsys, "render", "--image", rgb, "--depth", depth, "--out", out, *extra)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("twohded: error:") and words in lines[0], err
    assert "Traceback" not in err
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temporary file left behind"


def test_fill_invalid_depth_renders(pair, tmp_path, capsys):
    rgb, _ = pair
    d = np.full((40, 56), 2000, np.uint16)
    d[10:20, 10:20] = 0  # no measurement
    Image.fromarray(d).save(tmp_path / "holes.png")
    code, _, err = run_cli(capsys, "render", "--image", rgb, "--depth", tmp_path / "holes.png", "--out", tmp_path / "o.npy", "--fill-invalid")
    assert code == 0, err
    assert np.isfinite(np.load(tmp_path / "o.npy")).all()


def test_existing_output_needs_overwrite(pair, tmp_path, capsys):
    rgb, depth = pair
    out = tmp_path / "o.png"
    out.write_bytes(b"keep")
    code, _, err = run_cli(capsys, "render", "--image", rgb, "--depth", depth, "--out", out)
    assert code == 2 and "--overwrite" in err and out.read_bytes() == b"keep"
    code, _, _ = run_cli(capsys, "render", "--image", rgb, "--depth", depth, "--out", out, "--overwrite")
    assert code == 0 and out.read_bytes() != b"keep"


def test_scenes_writes_rgbd_folder_and_resumes(tmp_path, capsys):
    out = tmp_path / "scenes"
    args = ["scenes", "--n", "3", "--seed", "5", "--height", "48", "--width", "64", "--out", out]
    code, stdout, err = run_cli(capsys, *args)
    assert code == 0, err
    names = sorted(p.name for p in (out / "rgb").iterdir())
    assert names == ["scene_000005.png", "scene_000006.png", "scene_000007.png"]
    for sub in ("depth", "defocused"):
        assert sorted(p.name for p in (out / sub).iterdir()) == names
    assert (out / "scenes.png").stat().st_size > 1000
    depth = np.asarray(Image.open(out / "depth" / names[0]))
    assert depth.dtype == np.uint16 and 700 <= depth.min() and depth.max() <= 10000
    code, stdout, _ = run_cli(capsys, *args)
    assert code == 0 and "0 scenes written, 3 already complete" in stdout


def test_scenes_rejects_camera_options_with_random_preset(tmp_path, capsys):
    code, _, err = run_cli(capsys, "scenes", "--n", "1", "--out", tmp_path, "--preset", "syndof", "--focus-m", "2")
    assert code == 2 and "random camera" in err


def test_every_command_has_help_with_units():
    for cmd in ("render", "scenes"):
        res = subprocess.run([sys.executable, "-m", "twohded", cmd, "--help"], capture_output=True, text=True)
        assert res.returncode == 0
        assert "metres" in res.stdout or "millimetres" in res.stdout
    res = subprocess.run([sys.executable, "-m", "twohded", "--help"], capture_output=True, text=True)
    assert res.returncode == 0 and "render" in res.stdout and "scenes" in res.stdout

"""The web demo: prediction files without Gradio, and the real app served on 127.0.0.1 over HTTP."""

from __future__ import annotations

import math
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from twohded.app import DEFAULT_FOV_DEG, KEEP_RESULTS, AppState, load_app_model, predict_files
from twohded.errors import InputError
from twohded.predict import load_model
from tests.test_pointcloud import read_ply

SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.fixture(scope="module")
def predictor(ckpt):
    return load_model(ckpt, device="cpu")


def _photo(path, h=48, w=64):
    Image.fromarray((np.random.default_rng(0).random((h, w, 3)) * 255).astype(np.uint8)).save(path)
    return path


def test_predict_files_and_pruning(tmp_path, predictor):
    photo = _photo(tmp_path / "my photo.png")
    state = AppState(root=tmp_path / "results")
    state.root.mkdir()
    r = predict_files(predictor, state, photo)
    assert {p.name for p in (r["color"], r["aif"], r["depth_png"], r["depth_npy"], r["ply"])} == {
        "my_photo_depth_color.png", "my_photo_aif.png", "my_photo_depth.png", "my_photo_depth.npy", "my_photo_points.ply"}
    np.testing.assert_allclose(np.load(r["depth_npy"]), predictor.predict(photo).depth, atol=1e-6)
    assert f"assumed horizontal field of view of {DEFAULT_FOV_DEG:g} deg" in r["info"] and "64x48 px" in r["info"]
    assert "from horizontal field of view 30 deg" in predict_files(predictor, state, photo, 30.0)["info"]
    state.camera = {"focal_mm": 10.0, "pixel_pitch_um": 100.0, "fov_deg": None, "preset": None}
    assert "focal length 100.0 px" in predict_files(predictor, state, photo)["info"]
    for _ in range(KEEP_RESULTS):
        predict_files(predictor, state, photo)
    assert len(list(state.root.iterdir())) == KEEP_RESULTS  # older results removed
    with pytest.raises(InputError, match="upload"):
        predict_files(predictor, state, None)


def test_no_shipped_model_asks_for_checkpoint(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError, match="--checkpoint"):
        load_app_model(None)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_until_served(url: str, proc: subprocess.Popen, timeout_s: float = 180.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"twohded app exited {proc.returncode}: {proc.stderr.read().decode()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"{url} not served within {timeout_s} s")


def test_app_over_http(tmp_path, ckpt, predictor):
    pytest.importorskip("gradio", reason="twohded app needs Gradio (pip install -e '.[test]' or '.[app]')")
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    port = _free_port()
    url = f"http://127.0.0.1:{port}/"
    (tmp_path / "tmp").mkdir()
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "TMPDIR": str(tmp_path / "tmp"),
           "GRADIO_TEMP_DIR": str(tmp_path / "gradio"),
           "PYTHONPATH": os.pathsep.join([str(SRC), *filter(None, [os.environ.get("PYTHONPATH")])])}
    proc = subprocess.Popen(
        [sys.executable, "-m", "twohded", "app", "--checkpoint", str(ckpt), "--host", "127.0.0.1",
         "--port", str(port), "--device", "cpu", "--fov-deg", "50"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_until_served(url, proc)
        client = Client(url, download_files=str(tmp_path / "dl"), verbose=False)
        photo = _photo(tmp_path / "photo.png")
        color, aif, depth_png, depth_npy, ply, info = client.predict(handle_file(str(photo)), None, api_name="/predict")
        expected = predictor.predict(photo).depth
        depth = np.load(depth_npy)
        np.testing.assert_allclose(depth, expected, atol=1e-5)
        mm = np.asarray(Image.open(depth_png))
        assert mm.dtype == np.uint16 and mm.shape == (48, 64)
        np.testing.assert_array_equal(mm, np.round(np.clip(depth, 0, None) * 1000).astype(np.uint16))
        assert Image.open(color).height == 256 and Image.open(color).width > 256 * 64 // 48
        assert Image.open(aif).size == (64, 48)
        _, xyz, _ = read_ply(Path(ply))
        valid = depth > 0
        assert len(xyz) == int(valid.sum()) and f"{int(valid.sum())} points" in info
        v, u = np.nonzero(valid)
        f_px = 32 / math.tan(math.radians(25))  # --fov-deg 50 of the app's command line
        np.testing.assert_allclose(xyz[:, 0], (u - 31.5) * depth[valid] / f_px, rtol=1e-4, atol=1e-7)
        # a photo below the network's minimum size: a clear message, not a crash
        with pytest.raises(AppError, match="at least 32x32"):
            client.predict(handle_file(str(_photo(tmp_path / "small.png", 20, 20))), None, api_name="/predict")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)
    assert not list((tmp_path / "tmp").glob("twohded-app-*"))  # its results removed on exit

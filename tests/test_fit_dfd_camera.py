"""scripts/fit_dfd_camera.py: the camera fit recovers a known camera on synthetic scenes; its
helpers (registration, SSIM) agree with the references."""

from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest
import torch
from scipy import ndimage as ndi

import twohded
from twohded.data.synthetic import SceneConfig, make_scene
from twohded.metrics import ssim

from .helpers import REPO_ROOT


@pytest.fixture(scope="module")
def fit():
    path = REPO_ROOT / "scripts" / "fit_dfd_camera.py"
    spec = importlib.util.spec_from_file_location("fit_dfd_camera", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["fit_dfd_camera"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_recovers_a_known_camera_on_synthetic_scenes(fit):
    true_focus, true_gain = 1.6, 3.5
    camera = fit.camera_from_fit(true_focus, true_gain)
    assert camera.blur_gain_px_m() == pytest.approx(true_gain, rel=1e-9)
    config = SceneConfig(height=96, width=128, depth_range_m=(0.7, 8.0))
    scenes = []
    for seed in range(3):
        s = make_scene(seed, config)
        blurred = twohded.render_defocus(s.aif, s.depth, camera, mode="default").double().numpy()
        # another exposure and some vignetting: the photometric fit must absorb them
        r2 = fit.Scene("x", blurred, blurred, s.depth[0].double().numpy(), border=4).r2
        real = (0.85 - 0.05 * r2) * blurred + 0.03
        scenes.append(fit.Scene(f"s{seed}", s.aif.double().numpy(), real, s.depth[0].double().numpy(), border=4))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small tensors: one thread is as fast, and much faster on a busy CPU
    try:
        result = fit.fit_camera(scenes, fit_s0=False, log=lambda *a: None)
    finally:
        torch.set_num_threads(threads)
    assert result["focus_m"] == pytest.approx(true_focus, rel=0.08)
    assert result["gain_px_m"] == pytest.approx(true_gain, rel=0.08)
    assert result["renderer_psnr"] > 45.0  # the true camera reproduces the target almost exactly


def test_separable_ssim_equals_the_metric(fit):
    rng = np.random.default_rng(1)
    a = rng.random((3, 40, 50))
    b = np.clip(a + 0.1 * rng.standard_normal(a.shape), 0, 1)
    assert fit.ssim_separable(a, b) == pytest.approx(ssim(torch.from_numpy(a), torch.from_numpy(b)), abs=1e-12)


def test_gaussian_blur_matches_the_renderer(fit):
    # a constant depth plane at sigma s renders exactly one Gaussian blur
    rng = np.random.default_rng(2)
    img = rng.random((3, 40, 48))
    camera = fit.camera_from_fit(2.0, 3.0)
    depth = torch.full((40, 48), 1.0, dtype=torch.float64)
    sigma = float(camera.sigma_px(1.0))
    out = twohded.render_defocus(torch.from_numpy(img).float(), depth.float(), camera, mode="default").double().numpy()
    assert np.abs(out - fit.gaussian_blur(img, sigma)).max() < 1e-5

import math

import numpy as np
import pytest
import torch

from twohded.errors import InputError
from twohded.optics import D3NET_NYU, PAPER, Camera, get_preset, list_presets


def test_d3net_blur_gain_matches_reference_code():
    # refoc_image: sigma = Phi*rho*det*|1/focus - 1/d|/px = 4.337377 * |0.5 - 1/d| px
    assert D3NET_NYU.blur_gain_px_m() == pytest.approx(4.337377, rel=1e-6)
    assert D3NET_NYU.aperture_m == pytest.approx(0.015 / 2.8)
    assert D3NET_NYU.image_distance_m == pytest.approx(0.015113350125944584, rel=1e-12)


def test_thin_lens_coc_by_hand():
    cam = Camera(focal_length_m=0.05, f_number=2.0, focus_m=2.0, pixel_pitch_m=1e-5)
    x = 4.0
    a, f, s = 0.025, 0.05, 2.0
    expected = a * f / (s - f) * abs(x - s) / x  # textbook thin-lens CoC, metres
    assert cam.coc_m(x) == pytest.approx(expected, rel=1e-12)
    assert cam.coc_px(x) == pytest.approx(expected / 1e-5, rel=1e-12)
    assert cam.sigma_px(x) == pytest.approx(0.25 * expected / 1e-5, rel=1e-12)


def test_paper_eq8_relates_to_thin_lens_by_s_minus_f_over_s():
    exact = PAPER.with_(coc_model="thin_lens")
    for x in (0.7, 1.5, 10.0):
        ratio = PAPER.coc_m(x) / exact.coc_m(x)
        assert ratio == pytest.approx((2.0 - 0.07) / 2.0, rel=1e-12)


def test_paper_preset_numbers_and_blur_budget():
    assert PAPER.aperture_m == pytest.approx(0.0448)
    assert PAPER.focal_length_m == 0.07
    assert PAPER.sigma_per_coc == 0.25
    # the documented choice: SYNDOF's 36 mm sensor over NYU's 640 px, focus 2 m
    assert PAPER.pixel_pitch_m == pytest.approx(56.25e-6, rel=1e-12)
    assert PAPER.focus_m == 2.0
    gain = 0.25 * 0.0448 * 0.07 / 56.25e-6  # eq. 8 with the focal length, sigma = CoC / 4
    assert PAPER.sigma_px(0.7) == pytest.approx(gain * (1 / 0.7 - 0.5), rel=1e-9)
    assert 12.5 < PAPER.sigma_px(0.7) < 13.5 and 5.0 < PAPER.sigma_px(10.0) < 6.0


def test_blur_zero_at_focus_and_monotonic_both_sides():
    for cam in (D3NET_NYU, PAPER):
        assert cam.sigma_px(cam.focus_m) == 0
        near = cam.sigma_px(np.linspace(0.3, cam.focus_m, 50))
        far = cam.sigma_px(np.linspace(cam.focus_m, 50.0, 50))
        assert np.all(np.diff(near) < 0) and np.all(np.diff(far) > 0)


def test_tensor_and_array_inputs():
    d = torch.tensor([0.7, 2.0, 10.0], dtype=torch.float64)
    assert torch.allclose(D3NET_NYU.sigma_px(d), torch.from_numpy(D3NET_NYU.sigma_px(d.numpy())))


def test_syndof_sampler_max_coc_and_seeded():
    preset = get_preset("syndof")
    depth = torch.linspace(0.7, 8.0, 128).repeat(96, 1)
    cam1 = preset.camera_for(depth, seed=3)
    cam2 = preset.camera_for(depth, seed=3)
    assert cam1 == cam2
    assert cam1.focal_length_m in (0.05, 0.07, 0.085)
    assert float(depth.min()) <= cam1.focus_m <= float(depth.max())
    assert float(cam1.coc_px(depth.double()).max()) == pytest.approx(29.0, rel=1e-6)
    assert cam1.pixel_pitch_m == pytest.approx(0.036 / 128)
    assert len({preset.camera_for(depth, seed=s) for s in range(8)}) > 1


@pytest.mark.parametrize(
    "kwargs, words",
    [
        (dict(focus_m=0.01), "focus distance"),
        (dict(f_number=0.0), "f_number"),
        (dict(f_number=-2.0), "f_number"),
        (dict(pixel_pitch_m=float("nan")), "pixel_pitch_m"),
    ],
)
def test_impossible_camera_is_rejected(kwargs, words):
    base = dict(focal_length_m=0.015, f_number=2.8, focus_m=2.0, pixel_pitch_m=5.6e-6)
    base.update(kwargs)
    with pytest.raises(InputError, match=words):
        Camera(**base)


def test_unknown_preset_lists_names():
    with pytest.raises(InputError, match="d3net_nyu"):
        get_preset("nope")
    assert set(list_presets()) == {"d3net_nyu", "paper", "dfd_indoor", "syndof"}


def test_from_aperture():
    cam = Camera.from_aperture(0.07, 0.0448, focus_m=2.0, pixel_pitch_m=1e-5)
    assert cam.f_number == pytest.approx(0.07 / 0.0448)
    assert math.isclose(cam.aperture_m, 0.0448)


def test_paper_preset_pixel_pitch_follows_the_image_width():
    preset = get_preset("paper")
    assert preset.width_relative and not get_preset("d3net_nyu").width_relative
    cam640 = preset.camera_for(torch.ones(480, 640))
    cam256 = preset.camera_for(torch.ones(256, 256))
    assert cam640 == PAPER
    assert cam256.pixel_pitch_m == pytest.approx(0.036 / 256)
    assert cam256.sigma_px(0.7) == pytest.approx(cam640.sigma_px(0.7) * 256 / 640)
    # D3-Net's pixel is absolute: its blur in pixels does not depend on the image width
    assert get_preset("d3net_nyu").camera_for(torch.ones(96, 128)) == D3NET_NYU


def test_dfd_indoor_preset_gives_the_documented_blur():
    # fitted by scripts/fit_dfd_camera.py (docs/physics.md, "The DFD indoor camera")
    preset = get_preset("dfd_indoor")
    cam = preset.camera
    assert preset.default_mode == "default" and not preset.width_relative
    assert preset.camera_for(torch.ones(96, 128)) == cam  # absolute pitch, for 645x432 frames
    # D3-Net's lens; focus and effective pixel pitch fitted
    assert (cam.focal_length_m, cam.f_number, cam.sigma_per_coc, cam.coc_model) == (0.015, 2.8, 0.3, "thin_lens")
    assert cam.focus_m == pytest.approx(1.0 / 0.6, rel=1e-12)
    assert cam.blur_gain_px_m() == pytest.approx(3.55, rel=1e-9)
    assert cam.pixel_pitch_m == pytest.approx(6.852e-6, rel=1e-3)
    assert cam.sigma_px(cam.focus_m) == 0
    for depth, sigma in ((0.5, 4.97), (1.0, 1.42), (3.0, 0.947), (10.0, 1.775)):
        assert cam.sigma_px(depth) == pytest.approx(sigma, abs=1e-3)
    # the existing presets are unchanged
    assert get_preset("d3net_nyu").camera == D3NET_NYU and get_preset("paper").camera == PAPER

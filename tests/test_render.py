import json
import math

import numpy as np
import pytest
import torch

import twohded
from twohded.errors import InputError
from twohded.optics import D3NET_NYU, PAPER, Camera
from twohded.render import (
    D3NetMode,
    DefaultMode,
    d3net_layers,
    dilate_octagon,
    gaussian_taps,
    separable_blur,
)

from .helpers import shared_path

REF_CASES = [
    "A_synth_plane_1m",
    "A_synth_step_1m_4m",
    "A_synth_ramp_0p7_8m",
    "A_dfd_train_00",
    "A_dfd_train_01",
    "A_dfd_train_02",
    "A_dfd_train_03",
]


def _texture(h=48, w=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(1, 3, h, w, generator=g)
    return separable_blur(x, gaussian_taps(torch.full((3,), 1.0), 3).float(), "reflect")[0]


@pytest.mark.parametrize("case", REF_CASES)
def test_d3net_mode_reproduces_octave_refoc_image(case):
    ref_dir = shared_path("reference", "d3net_refoc")
    data = np.load(ref_dir / f"{case}.npz")
    image = torch.from_numpy(data["aif"].astype(np.float32)).permute(2, 0, 1)  # 0..255 scale
    depth = torch.from_numpy(data["depth_m"])
    _, edges, sigmas = d3net_layers(depth[None], D3NET_NYU, D3NetMode())
    np.testing.assert_allclose(edges.numpy(), data["layer_edges_m"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(sigmas.numpy(), data["layer_sigma_px"], rtol=1e-10, atol=1e-10)
    out = twohded.render_defocus(image, depth, "d3net_nyu")
    ref = torch.from_numpy(data["blurred"]).permute(2, 0, 1)
    err = (out - ref).abs().max().item()
    assert err <= 0.1, f"{case}: max |error| {err} > 0.1 grey levels"


def test_octagon_is_matlab_strel_disk4():
    ref = json.loads((shared_path("reference", "d3net_refoc") / "A_synth_plane_1m.json").read_text())
    nhood = torch.tensor(ref["source_code"]["strel_nhood_7x7"], dtype=torch.bool)
    point = torch.zeros(1, 1, 15, 15, dtype=torch.bool)
    point[0, 0, 7, 7] = True
    assert torch.equal(dilate_octagon(point)[0, 0, 4:11, 4:11], nhood)
    assert int(dilate_octagon(point).sum()) == 37


@pytest.mark.parametrize("preset", ["d3net_nyu", "paper"])
@pytest.mark.parametrize("mode", ["d3net", "default"])
def test_no_blur_at_focus_distance(preset, mode):
    img = _texture()
    out = twohded.render_defocus(img, torch.full(img.shape[-2:], 2.0), preset, mode=mode)
    assert (out - img).abs().max() < 1e-4  # D3-Net's sigma + 1e-4 px kernel is a delta to 1e-30


@pytest.mark.parametrize("mode", ["d3net", "default"])
def test_blur_grows_monotonically_away_from_focus(mode):
    img = _texture(64, 64)
    inner = (slice(None), slice(16, 48), slice(16, 48))  # away from the (darkened) borders

    def change(d):
        out = twohded.render_defocus(img, torch.full((64, 64), d), "d3net_nyu", mode=mode)
        return (out - img)[inner].abs().mean().item()

    near = [change(d) for d in (2.0, 1.5, 1.0, 0.7, 0.5)]
    far = [change(d) for d in (2.0, 3.0, 5.0, 10.0)]
    assert all(b > a for a, b in zip(near, near[1:])), near
    assert all(b > a for a, b in zip(far, far[1:])), far


def test_constant_image_stays_constant_in_default_mode():
    depth = 0.7 + 9.3 * torch.rand(40, 56, generator=torch.Generator().manual_seed(1))
    out = twohded.render_defocus(torch.full((3, 40, 56), 0.37), depth, "paper")
    assert (out - 0.37).abs().max() < 1e-5


def test_d3net_mode_darkens_borders_like_the_reference():
    out = twohded.render_defocus(torch.full((3, 40, 56), 100.0), torch.full((40, 56), 1.0), "d3net_nyu")
    assert out[:, 0, 0].max() < 60 and (out[:, 20, 28] - 100).abs().max() < 1e-3


@pytest.mark.parametrize("preset", ["d3net_nyu", "paper"])
def test_fronto_parallel_plane_is_one_gaussian_blur(preset):
    img = _texture()
    depth = torch.full(img.shape[-2:], 1.0)
    cam = twohded.get_preset(preset).camera_for(depth)
    sigma = float(cam.sigma_px(torch.tensor(1.0, dtype=torch.float64)))
    out = twohded.render_defocus(img, depth, preset, mode="default")
    taps = gaussian_taps(torch.full((3,), sigma), math.ceil(3 * sigma)).float()
    ref = separable_blur(img[None], taps, "reflect")[0]
    assert taps.shape[-1] > 1
    assert (out - ref).abs().max() < 1e-5


@pytest.mark.parametrize("mode", ["d3net", "default"])
@pytest.mark.parametrize("depth", [2.0, 0.01, 1e4])
def test_extreme_depths_give_finite_output(mode, depth):
    img = _texture(40, 48)
    out = twohded.render_defocus(img, torch.full((40, 48), depth), "d3net_nyu", mode=mode)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("mode", ["d3net", "default"])
def test_in_focus_foreground_edge_stays_sharp_and_hides_background(mode):
    h, w = 48, 64
    img = torch.zeros(3, h, w)
    img[:, :, : w // 2] = 1.0  # bright foreground on the left
    img[:, :, w // 2 :] = torch.rand(3, h, w // 2, generator=torch.Generator().manual_seed(0))
    depth = torch.full((h, w), 8.0)
    depth[:, : w // 2] = 2.0  # foreground in focus
    out = twohded.render_defocus(img, depth, "d3net_nyu", mode=mode)
    fg = out[:, 8:-8, 8 : w // 2]
    # in-focus foreground pixels keep their value: no background smear, no leak through it
    assert (fg - 1.0).abs().max() < 1e-4
    # the background next to the edge is blurred
    bg = out[:, 8:-8, w // 2 + 12 : w - 12]
    assert (bg - img[:, 8:-8, w // 2 + 12 : w - 12]).abs().mean() > 0.02


def test_linear_in_image_and_keeps_value_range():
    img = _texture()
    depth = 0.7 + 9.3 * torch.rand(img.shape[-2:], generator=torch.Generator().manual_seed(2))
    a = twohded.render_defocus(img, depth, "paper")
    b = twohded.render_defocus(255.0 * img, depth, "paper")
    assert torch.allclose(b, 255.0 * a, atol=1e-3)
    c = twohded.render_defocus(img - 0.5, depth, "paper")
    assert torch.allclose(c, a - 0.5, atol=1e-5)


def test_batched_equals_per_image_and_is_deterministic():
    imgs = torch.stack([_texture(seed=s) for s in range(3)])
    g = torch.Generator().manual_seed(5)
    blocks = 0.5 + 6.0 * torch.rand(3, 1, 6, 8, generator=g)  # piecewise-constant depth
    depths = torch.nn.functional.interpolate(blocks, size=imgs.shape[-2:], mode="nearest")
    for preset in ("d3net_nyu", "paper"):
        batch = twohded.render_defocus(imgs, depths, preset)
        single = torch.stack([twohded.render_defocus(imgs[i], depths[i, 0], preset) for i in range(3)])
        assert torch.allclose(batch, single, atol=1e-5)
        assert torch.equal(batch, twohded.render_defocus(imgs, depths, preset))


def test_chunk_size_does_not_change_the_result():
    img = _texture()
    depth = torch.linspace(0.7, 8.0, img.shape[-1]).repeat(img.shape[-2], 1)
    for preset in ("d3net_nyu", "paper"):
        a = twohded.render_defocus(img, depth, preset, chunk=1)
        b = twohded.render_defocus(img, depth, preset, chunk=64)
        assert torch.allclose(a, b, atol=1e-5)


def test_syndof_preset_is_seeded_and_per_image():
    imgs = torch.stack([_texture(seed=s) for s in range(2)])
    depth = torch.linspace(0.7, 8.0, imgs.shape[-1]).repeat(2, 1, imgs.shape[-2], 1)
    a = twohded.render_defocus(imgs, depth, "syndof", seed=7)
    b = twohded.render_defocus(imgs, depth, "syndof", seed=7)
    c = twohded.render_defocus(imgs, depth, "syndof", seed=8)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_camera_and_mode_objects_accepted():
    img = _texture()
    cam = Camera(focal_length_m=0.05, f_number=4.0, focus_m=1.0, pixel_pitch_m=1e-5)
    depth = torch.full(img.shape[-2:], 3.0)
    out = twohded.render_defocus(img, depth, cam, mode=DefaultMode(sigma_step_px=0.5))
    assert out.shape == img.shape and torch.isfinite(out).all()
    out = twohded.render_defocus(img, depth, PAPER, mode=D3NetMode(kernel_size=11))
    assert out.shape == img.shape


@pytest.mark.parametrize(
    "depth, words",
    [
        (torch.full((48, 64), float("nan")), "NaN"),
        (torch.zeros(48, 64), "zero or negative"),
        (-torch.ones(48, 64), "zero or negative"),
        (torch.full((48, 64), float("inf")), "infinite"),
        (torch.ones(40, 64), "does not match"),
    ],
)
def test_bad_depth_is_rejected_with_a_message(depth, words):
    with pytest.raises(InputError, match=words):
        twohded.render_defocus(_texture(), depth, "paper")


def test_bad_arguments_are_rejected():
    with pytest.raises(InputError, match="unknown preset"):
        twohded.render_defocus(_texture(), torch.ones(48, 64), "nope")
    with pytest.raises(InputError, match="unknown render mode"):
        twohded.render_defocus(_texture(), torch.ones(48, 64), "paper", mode="fast")
    with pytest.raises(InputError, match="image must be"):
        twohded.render_defocus(torch.ones(48, 64), torch.ones(48, 64), "paper")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")
def test_gpu_matches_cpu():
    img = _texture()
    depth = torch.linspace(0.7, 8.0, img.shape[-1]).repeat(img.shape[-2], 1)
    for preset in ("d3net_nyu", "paper"):
        cpu = twohded.render_defocus(img, depth, preset)
        gpu = twohded.render_defocus(img.cuda(), depth.cuda(), preset).cpu()
        assert torch.allclose(cpu, gpu, atol=1e-4)

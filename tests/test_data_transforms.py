"""Joint resize / crop / flip policies (twohded.data.transforms) and render_batch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from twohded.data.transforms import Geometry, apply_geometry, parse_size, resize_nearest
from twohded.errors import InputError


def _sample(h=40, w=60, real=False):
    aif = torch.rand(3, h, w)
    depth = torch.ones(1, h, w)
    depth[:, :, : w // 2] = 1.0
    depth[:, :, w // 2 :] = 5.0  # a sharp occlusion edge
    depth[:, 0, 0] = 0.0  # one invalid pixel
    s = {"aif": aif, "depth": depth, "mask": depth > 0, "pixel_scale": 1.0}
    if real:
        s["defocused"] = aif.clone()
    return s


def test_parse_size():
    assert parse_size("256") == (256, 256)
    assert parse_size("640x480") == (480, 640)  # WIDTHxHEIGHT -> (H, W)
    assert parse_size((10, 20)) == (10, 20)
    assert parse_size(None) is None
    with pytest.raises(InputError, match="WIDTHxHEIGHT"):
        parse_size("big")


def test_resize_depth_is_nearest_never_averaged():
    s = apply_geometry(_sample(), Geometry(size=(17, 23), resize="resize"))
    values = set(torch.unique(s["depth"]).tolist())
    assert values <= {0.0, 1.0, 5.0}  # no value between the two sides of the edge
    assert torch.equal(s["mask"], s["depth"] > 0)
    assert s["aif"].shape == (3, 17, 23) and s["depth"].shape == (1, 17, 23)
    assert s["pixel_scale"] == pytest.approx(23 / 60)


def test_nearest_upsampling_replicates_cells():
    grid = torch.arange(6.0).reshape(1, 2, 3)
    up = resize_nearest(grid, (4, 6))
    assert up[0, :2, :2].unique().tolist() == [0.0]
    assert up[0, 2:, 4:].unique().tolist() == [5.0]


def test_crop_is_joint_and_centred_without_rng():
    s = _sample()
    s["aif"] = torch.arange(40 * 60, dtype=torch.float32).reshape(1, 40, 60).expand(3, -1, -1) / 2400
    out = apply_geometry(s, Geometry(size=(20, 30), resize="crop"))
    assert out["aif"][0, 0, 0] * 2400 == pytest.approx(10 * 60 + 15)
    assert out["pixel_scale"] == 1.0


def test_flip_is_joint_and_seeded():
    s = _sample()
    flips = []
    for seed in range(8):
        out = apply_geometry(s, Geometry(flip=True), np.random.default_rng(seed))
        flipped = bool(out["depth"][0, 5, 0] == 5.0)
        flips.append(flipped)
        if flipped:
            assert torch.equal(out["aif"], torch.flip(s["aif"], [-1]))
    assert any(flips) and not all(flips)
    a = apply_geometry(s, Geometry(size=(20, 20), resize="crop"), np.random.default_rng(3))
    b = apply_geometry(s, Geometry(size=(20, 20), resize="crop"), np.random.default_rng(3))
    assert torch.equal(a["aif"], b["aif"])


def test_fit_keeps_aspect_then_crops():
    out = apply_geometry(_sample(40, 80), Geometry(size=(20, 20), resize="fit"))
    assert out["aif"].shape == (3, 20, 20)
    assert out["pixel_scale"] == pytest.approx(0.5)


def test_real_defocus_is_never_resized_silently():
    with pytest.raises(InputError, match="blur in pixels"):
        apply_geometry(_sample(real=True), Geometry(size=(20, 30), resize="resize"), source="x.jpg")
    out = apply_geometry(_sample(real=True), Geometry(size=(20, 30), resize="crop"))
    assert out["defocused"].shape == (3, 20, 30)


def test_crop_larger_than_frame_is_an_error():
    with pytest.raises(InputError, match="smaller than the crop"):
        apply_geometry(_sample(), Geometry(size=(50, 50), resize="crop"), source="f.png")


def test_render_batch_matches_render_mode_and_moves_device():
    from torch.utils.data import DataLoader

    from twohded.data import SyntheticScenes, render_batch

    opts = dict(n=3, height=48, width=64, preset="syndof", seed=5)
    eager = SyntheticScenes(None, "val", defocus="render", **opts)
    lazy = SyntheticScenes(None, "val", defocus="deferred", **opts)
    batch = next(iter(DataLoader(lazy, batch_size=3)))
    assert torch.equal(batch["image"], batch["aif"])  # not rendered yet
    out = render_batch(batch, lazy.render_spec, "cpu")
    for i in range(3):
        assert torch.allclose(out["image"][i], eager[i]["image"], atol=1e-6)
    assert not torch.equal(out["image"], out["aif"])

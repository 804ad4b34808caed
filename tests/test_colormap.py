"""Colour-mapped depth images drawn with a look-up table and PIL (twohded.colormap)."""

from __future__ import annotations

import matplotlib
import numpy as np
import pytest
from PIL import Image

from twohded.colormap import (
    SHIPPED, apply_colormap, colormap_lut, nice_ticks, render_depth_colormap, save_depth_colormap,
)
from twohded.errors import InputError


@pytest.mark.parametrize("name", [*SHIPPED, *(f"{n}_r" for n in SHIPPED), "magma"])
def test_lut_is_matplotlibs_table(name):
    ours = colormap_lut(name)
    theirs = matplotlib.colormaps[name](np.linspace(0, 1, 256), bytes=True)[:, :3]
    assert ours.shape == (256, 3) and ours.dtype == np.uint8
    np.testing.assert_array_equal(ours, theirs)
    with pytest.raises(ValueError):
        ours[0, 0] = 1  # cached tables are read-only


def test_apply_colormap_maps_values_as_matplotlib_does():
    rng = np.random.default_rng(0)
    values = rng.uniform(-0.5, 5.5, (40, 50))
    values[3, 4] = np.nan
    ours = apply_colormap(values, 0.5, 4.0, "turbo_r")
    cmap = matplotlib.colormaps["turbo_r"]
    theirs = cmap(matplotlib.colors.Normalize(0.5, 4.0)(values), bytes=True)[..., :3]
    ok = np.isfinite(values)
    np.testing.assert_array_equal(ours[ok], theirs[ok])
    assert tuple(ours[3, 4]) == (255, 255, 255)  # NaN drawn white
    with pytest.raises(InputError, match="unknown colour map"):
        apply_colormap(values, 0, 1, "no_such_map")


def test_nice_ticks():
    assert nice_ticks(0.5, 4.0) == ([0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0], 1)
    ticks, dec = nice_ticks(1.234, 1.236)
    assert len(ticks) >= 2 and all(1.234 <= t <= 1.236 for t in ticks) and dec == 4
    assert nice_ticks(0.0, 10.0)[0] == [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]
    ticks, _ = nice_ticks(2.01, 2.011)
    assert 2 <= len(ticks) <= 8 and all(2.01 <= t <= 2.011 for t in ticks)


def test_render_body_bar_and_size(tmp_path):
    depth = np.tile(np.linspace(1.0, 3.0, 48, dtype=np.float32)[:, None], (1, 64))  # rows: 1 m .. 3 m
    img = render_depth_colormap(depth)
    arr = np.asarray(img)
    assert img.mode == "RGB" and img.height == 256 and img.width > 256 * 64 // 48  # scale bar on the right
    body_w = round(64 * 256 / 48)
    # the map: each depth row repeated (nearest), coloured by the LUT (vmin/vmax = min/max)
    rows = (np.arange(256) * 48) // 256
    np.testing.assert_array_equal(arr[:, :body_w], apply_colormap(depth[rows][:, (np.arange(body_w) * 64) // body_w], 1.0, 3.0))
    # the bar: far (3 m, the LUT's last entry) at its top, near (1 m) at its bottom
    lut = colormap_lut()
    bar_x = body_w + round(0.02 * 256) + 5
    assert tuple(arr[round(0.04 * 256) + 1, bar_x]) in {tuple(c) for c in lut[-2:]}
    assert tuple(arr[round(0.96 * 256) - 2, bar_x]) in {tuple(c) for c in lut[:2]}
    # labels and title are drawn (dark pixels right of the bar)
    assert (arr[:, bar_x + 20 :].min(axis=2) < 100).sum() > 100
    big = render_depth_colormap(np.ones((3000, 100), np.float32), 0.0, 2.0)
    assert big.height == 2048
    path = save_depth_colormap(tmp_path / "d.png", depth[None])  # (1, H, W) too
    np.testing.assert_array_equal(np.asarray(Image.open(path)), arr)

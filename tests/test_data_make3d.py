"""Make3D reader on fixture files in the real formats (portrait JPEGs, Position3DGrid .mat)."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

from twohded.data import Make3D
from twohded.data.make3d import c1_mask, c2_mask, load_depth_grid
from twohded.errors import InputError

W, H = 120, 160  # portrait, the 1704 x 2272 aspect ratio at 1/14 scale


def _photo(path):
    img = np.full((H, W, 3), 60, np.uint8)
    img[: H // 2, : W // 2] = (250, 10, 10)  # red top-left quadrant
    Image.fromarray(img).save(path, quality=95)


def _grid(path, key="Position3DGrid", near=5.0):
    grid = np.zeros((55, 305, 4))
    depth = np.full((55, 305), 20.0)
    depth[:27] = near  # top rows near
    depth[:, 250:] = 81.92  # no laser return on the right (sky)
    depth[40:, :40] = 75.0  # between C1 and C2, bottom left
    grid[..., 3] = depth
    grid[..., 2] = depth * 0.9  # projective depth: must not be used
    scipy.io.savemat(path, {key: grid})


@pytest.fixture(scope="module")
def make3d(tmp_path_factory):
    root = tmp_path_factory.mktemp("make3d")
    for split, img_dir, depth_dir, stems in (
        ("train", "Train400Img", "Train400Depth", ["combined1-p-108t0", "op2-p-139t000"]),
        ("test", "Test134", "Gridlaserdata", ["img-manmade1-p-282t0"]),
    ):
        (root / img_dir).mkdir()
        (root / depth_dir).mkdir()
        for i, stem in enumerate(stems):
            _photo(root / img_dir / f"img-{stem}.jpg")
            _grid(root / depth_dir / f"depth_sph_corr-{stem}.mat", near=5.0 + i)
    _photo(root / "Train400Img" / "img-lonely.jpg")  # no depth: reported and skipped
    return root


def test_pairing_and_unmatched_report(make3d, caplog):
    with caplog.at_level(logging.WARNING, logger="twohded.data"):
        ds = Make3D(make3d, "train", base_size=None, preset="paper")
    assert ds.names == ["combined1-p-108t0", "op2-p-139t000"]
    assert "img-lonely.jpg" in caplog.text and caplog.text.count("img-lonely.jpg") == 1
    assert Make3D(make3d, "test", preset="paper").names == ["img-manmade1-p-282t0"]


def test_grid_orientation_values_and_masks(make3d):
    ds = Make3D(make3d, "train", base_size=None, defocus="deferred", preset="paper", augment=False)
    item = ds[1]
    aif, depth, mask = item["aif"], item["depth"], item["mask"]
    assert aif.shape == (3, H, W) and depth.shape == (1, H, W)
    assert aif[0, 10, 10] > 0.9 and aif[1, 10, 10] < 0.2  # red stays top-left
    assert aif[0, 10, W - 10] < 0.5 and aif[0, H - 10, 10] < 0.5
    # grid axis 0 runs down the image rows, axis 1 across the columns, channel 4 is used
    assert depth[0, 5, 50] == pytest.approx(6.0) and depth[0, H - 5, 50] == pytest.approx(20.0)
    assert depth[0, 50, W - 3] == pytest.approx(81.92)  # grid column 250+ -> right edge
    assert torch.unique(depth).tolist() == pytest.approx([6.0, 20.0, 75.0, 81.92])  # nearest only
    assert not mask[0, 50, W - 3] and mask[0, 5, 50]  # beyond 80 m masked
    assert mask[0, H - 5, 5] and not c1_mask(depth)[0, H - 5, 5] and c2_mask(depth)[0, H - 5, 5]
    assert (item["render_depth"][0, 50, W - 3]).item() == pytest.approx(81.92)  # kept for rendering
    grid = ds.depth_grid(1)
    assert grid.shape == (1, 55, 305) and grid[0, 0, 0] == pytest.approx(6.0)


def test_base_size_and_godard_crop(make3d):
    ds = Make3D(make3d, "train", crop_ratio=2.0, preset="paper", defocus="deferred")
    item = ds[0]
    assert item["aif"].shape == (3, 173, 345)  # 460 x 345 working size, central 2:1 band
    assert ds.depth_grid(0).shape == (1, 21, 305)  # Godard's rows 17:38
    full = Make3D(make3d, "train", preset="paper", size=(64, 48))[0]  # rendered at the end
    assert full["image"].shape == (3, 64, 48) and full["depth"].shape == (1, 64, 48)


def test_bad_inputs(make3d, tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        Make3D(tmp_path / "nope", preset="paper")
    with pytest.raises(InputError, match="no Make3D train images"):
        Make3D(tmp_path, "train", preset="paper")
    (tmp_path / "Test134").mkdir()
    (tmp_path / "Gridlaserdata").mkdir()
    _photo(tmp_path / "Test134" / "img-a.jpg")
    _grid(tmp_path / "Gridlaserdata" / "depth_sph_corr-a.mat", key="Grid")
    ds = Make3D(tmp_path, "test", preset="paper", base_size=None)
    with pytest.raises(InputError, match=r"depth_sph_corr-a\.mat: no 'Position3DGrid'.*Grid"):
        ds[0]
    _grid(tmp_path / "Gridlaserdata" / "depth_sph_corr-a.mat")
    data = (tmp_path / "Test134" / "img-a.jpg").read_bytes()
    (tmp_path / "Test134" / "img-a.jpg").write_bytes(data[:-300])  # cut inside the scan data
    with pytest.raises(InputError, match=r"img-a\.jpg: cannot read image: image file is truncated.*allow_truncated"):
        ds[0]
    assert Make3D(tmp_path, "test", preset="paper", allow_truncated=True, base_size=None,
                  defocus="deferred")[0]["aif"].shape == (3, H, W)
    with pytest.raises(InputError, match="Make3D split"):
        Make3D(make3d, "val", preset="paper")
    with pytest.raises(InputError, match="does not exist"):
        load_depth_grid(tmp_path / "missing.mat")

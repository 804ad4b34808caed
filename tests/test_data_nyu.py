"""NYU Depth v2 labeled reader on a fixture laid out like the official MATLAB v7.3 file."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import scipy.io
import torch

from twohded.data import NYUv2
from twohded.data.nyu import EIGEN_CROP, PROJECTION_CROP, eigen_crop_mask, official_split
from twohded.errors import InputError

N = 5
H, W = 480, 640


def _frames():
    """(N, H, W, 3) uint8 images and (N, H, W) float32 metres, with an asymmetric pattern."""
    img = np.full((N, H, W, 3), 40, np.uint8)
    img[:, 60:160, 60:260, 0] = 255  # red block in the top-left quadrant
    img[:, :, :8] = 255  # white registration border on the left
    depth = np.tile(np.linspace(1.0, 8.0, W, dtype=np.float32), (N, H, 1))  # far on the right
    depth[:, 300:, :] += 0.5  # lower half a bit farther
    for n in range(N):
        img[n, 400:420, 500:520, 2] = 10 * n  # frame id in blue
        depth[n, 0, 0] = 1.0 + n
    return img, depth


def write_v73(path, images, depths, keys=("images", "depths")):
    """Write an HDF5 file exactly as MATLAB -v7.3 lays out nyu_depth_v2_labeled.mat."""
    with h5py.File(path, "w", userblock_size=512) as f:
        if "images" in keys:
            d = f.create_dataset("images", data=images.transpose(0, 3, 2, 1))  # MATLAB HxWx3xN
            d.attrs["MATLAB_class"] = np.bytes_("uint8")
        if "depths" in keys:
            d = f.create_dataset("depths", data=depths.transpose(0, 2, 1))  # MATLAB HxWxN single
            d.attrs["MATLAB_class"] = np.bytes_("single")
        raw = depths.copy()
        raw[:, 200:220, 300:320] = 0.0  # Kinect holes
        f.create_dataset("rawDepths", data=raw.transpose(0, 2, 1))
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 ."
    with open(path, "r+b") as fh:
        fh.write(header.ljust(116) + b"\x00" * 8 + b"\x00\x02IM")


@pytest.fixture(scope="module")
def nyu(tmp_path_factory):
    d = tmp_path_factory.mktemp("nyu")
    images, depths = _frames()
    write_v73(d / "nyu_depth_v2_labeled.mat", images, depths)
    scipy.io.savemat(d / "splits.mat", {"trainNdxs": np.array([[1], [3], [4]], np.uint16),
                                        "testNdxs": np.array([[2], [5]], np.uint16)})
    return d


def test_fixture_has_the_official_layout(nyu):
    with h5py.File(nyu / "nyu_depth_v2_labeled.mat", "r") as f:
        assert f["images"].shape == (N, 3, 640, 480) and f["images"].dtype == np.uint8
        assert f["depths"].shape == (N, 640, 480) and f["depths"].dtype == np.float32
    assert (nyu / "nyu_depth_v2_labeled.mat").read_bytes()[:10] == b"MATLAB 7.3"


def test_official_split_is_shipped_and_1_based():
    split = official_split()
    assert len(split["train"]) == 795 and len(split["test"]) == 654
    both = np.concatenate([split["train"], split["test"]])
    assert sorted(both.tolist()) == list(range(1449))  # 0-based, disjoint, complete
    assert split["test"][0] == 0 and split["train"][0] == 2  # testNdxs starts at 1, trainNdxs at 3


def test_orientation_values_and_units(nyu):
    ds = NYUv2(nyu, "train", border="none", splits_file=nyu / "splits.mat", preset="d3net_nyu")
    assert ds.names == ["0001", "0003", "0004"]
    aif, depth = ds.read_frame(0)
    assert aif.shape == (3, 480, 640) and depth.shape == (1, 480, 640)
    assert aif[0, 100, 100] == 1.0 and aif[1, 100, 100] == pytest.approx(40 / 255)  # red top-left
    assert aif[0, 100, 400] == pytest.approx(40 / 255)  # not mirrored
    assert aif[0, 350, 100] == pytest.approx(40 / 255)  # not upside down
    assert depth[0, 100, 10] < depth[0, 100, 600]  # far on the right
    assert depth[0, 400, 320] == pytest.approx(depth[0, 100, 320] + 0.5)  # lower half farther
    assert depth[0, 0, 0] == pytest.approx(1.0)
    _, d3 = ds.read_frame(3)
    assert d3[0, 0, 0] == pytest.approx(4.0)  # frame 4 (1-based) is index 3


def test_border_crop_mask_and_items(nyu):
    item = NYUv2(nyu, "test", splits_file=nyu / "splits.mat", preset="d3net_nyu", defocus="deferred")[0]
    top, bottom, left, right = PROJECTION_CROP
    assert item["image"].shape == (3, bottom - top, right - left) == (3, 427, 561)
    assert item["aif"][0, 0].min() < 1.0  # the white left border is gone
    assert item["name"] == "0002" and item["mask"].all()
    assert item["depth"].dtype == torch.float32 and 1.0 <= float(item["depth"].min())
    masked = NYUv2(nyu, "test", border="mask", splits_file=nyu / "splits.mat", preset="paper",
                   size=(60, 80))[1]
    assert masked["mask"].shape == (1, 60, 80) and masked["image"].shape == (3, 60, 80)
    assert not masked["mask"][0, :, 0].any() and masked["mask"][0, 30, 40]
    assert masked["name"] == "0005"


def test_raw_depth_holes_are_masked(nyu):
    ds = NYUv2(nyu, "all", border="none", depth_key="rawDepths", defocus="deferred", preset="paper")
    item = ds[0]
    assert not item["mask"][0, 210, 310] and item["depth"][0, 210, 310] == 0
    assert (item["render_depth"] > 0).all()  # filled for the renderer


def test_eigen_crop_mask():
    m = eigen_crop_mask()
    top, bottom, left, right = EIGEN_CROP
    assert m.sum() == (bottom - top) * (right - left) == 426 * 560
    small = eigen_crop_mask(240, 320)
    assert not small[0, 21, 20] and not small[0, 22, 19] and small[0, 22, 20]  # pixel centres inside
    assert small[0, 234, 299] and not small[0, 235, 299] and not small[0, 234, 300]
    inner = eigen_crop_mask(427, 561, frame="projection")
    assert inner.sum() == 426 * 560 and not inner[0, 0].any()


def test_dataloader_workers_are_deterministic(nyu):
    from torch.utils.data import DataLoader

    ds = NYUv2(nyu, "all", splits_file=nyu / "splits.mat", preset="d3net_nyu", defocus="deferred",
               size=(48, 64), augment=True, seed=7)
    a = [b["aif"] for b in DataLoader(ds, batch_size=2, num_workers=2)]
    b = [b["aif"] for b in DataLoader(ds, batch_size=2, num_workers=0)]
    assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_bad_inputs(nyu, tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        NYUv2(tmp_path / "nope.mat", preset="d3net_nyu")
    with pytest.raises(InputError, match="no nyu_depth_v2_labeled.mat"):
        NYUv2(tmp_path, preset="d3net_nyu")
    images, depths = _frames()
    write_v73(tmp_path / "nodepth.mat", images, depths, keys=("images",))
    with pytest.raises(InputError, match=r"nodepth\.mat.*no 'depths'"):
        NYUv2(tmp_path / "nodepth.mat", preset="d3net_nyu")
    (tmp_path / "trunc.mat").write_bytes((nyu / "nyu_depth_v2_labeled.mat").read_bytes()[:4000])
    with pytest.raises(InputError, match=r"trunc\.mat: cannot open as HDF5"):
        NYUv2(tmp_path / "trunc.mat", preset="d3net_nyu")
    scipy.io.savemat(tmp_path / "badsplit.mat", {"train": np.array([[1]])})
    with pytest.raises(InputError, match=r"badsplit\.mat.*trainNdxs"):
        NYUv2(nyu, "train", splits_file=tmp_path / "badsplit.mat", preset="d3net_nyu")
    with pytest.raises(InputError, match="beyond the 5 frames"):
        NYUv2(nyu, "train", preset="d3net_nyu")  # the official split needs 1449 frames
    zero = depths.copy()
    zero[1] = 0.0
    write_v73(tmp_path / "nyu_depth_v2_labeled.mat", images, zero)
    with pytest.raises(InputError, match=r"nyu_depth_v2_labeled\.mat frame 2: depth has no valid pixel"):
        NYUv2(tmp_path, "all", preset="d3net_nyu")[1]

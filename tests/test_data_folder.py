"""RGB-D folder reader and the synthetic-scenes dataset."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from PIL import Image

from twohded.data import RGBDFolder, SyntheticScenes, build_dataset
from twohded.errors import InputError


def _rgb(path, value=100):
    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.full((20, 30, 3), value, np.uint8)
    img[:5, :5] = (255, 0, 0)  # top-left marker
    Image.fromarray(img).save(path)


def _depth_png(path, mm=1500):
    path.parent.mkdir(parents=True, exist_ok=True)
    d = np.full((20, 30), mm, np.uint16)
    d[:, 20:] = 2 * mm
    Image.fromarray(d).save(path)


@pytest.fixture
def folder(tmp_path):
    for stem in ("a", "b"):
        _rgb(tmp_path / "rgb" / f"{stem}.png")
        _depth_png(tmp_path / "depth" / f"{stem}.png")
    _rgb(tmp_path / "rgb" / "c.jpg")
    np.save(tmp_path / "depth" / "c.npy", np.full((20, 30), 2.5, np.float32))
    _rgb(tmp_path / "rgb" / "lonely.png")
    return tmp_path


def test_rendered_folder_matches_by_stem(folder, caplog):
    with caplog.at_level(logging.WARNING, logger="twohded.data"):
        ds = RGBDFolder(folder, preset="d3net_nyu")  # absolute pixel: visible blur at 30 px
    assert ds.defocus == "render" and ds.names == ["a", "b", "c"]
    assert caplog.text.count("rgb/lonely.png") == 1
    a = ds[0]
    assert a["depth"][0, 0, 0] == pytest.approx(1.5) and a["depth"][0, 0, 25] == pytest.approx(3.0)
    assert a["aif"][0, 1, 1] == 1.0 and a["aif"][0, 1, 25] < 0.5
    assert a["image"].shape == (3, 20, 30) and not torch.equal(a["image"], a["aif"])
    assert ds[2]["depth"].unique().tolist() == [2.5]  # .npy in metres
    scaled = RGBDFolder(folder, preset="paper", depth_scale=1e-4, npy_scale=2.0)
    assert scaled[0]["depth"][0, 0, 0] == pytest.approx(0.15) and scaled[2]["depth"][0, 0, 0] == 5.0


def test_real_defocus_folder(folder):
    for stem in ("a", "b"):
        _rgb(folder / "defocused" / f"{stem}.png", value=30)
    ds = RGBDFolder(folder)
    assert ds.defocus == "real" and ds.names == ["a", "b"]
    item = ds[1]
    assert item["image"][1, 10, 10] == pytest.approx(30 / 255) and item["aif"][1, 10, 10] == pytest.approx(100 / 255)


def test_split_subfolders_and_build_dataset(tmp_path):
    _rgb(tmp_path / "val" / "rgb" / "x.png")
    _depth_png(tmp_path / "val" / "depth" / "x.png")
    ds = build_dataset("folder", tmp_path, "val", preset="paper", size="16", resize="crop")
    assert ds[0]["image"].shape == (3, 16, 16)
    with pytest.raises(InputError, match="split 'train' missing"):
        RGBDFolder(tmp_path, "train", preset="paper")
    # the D3-Net / 2HDED:NET layout: rgb/<split>/, aif/<split>/, depth/<split>/
    _rgb(tmp_path / "d3" / "rgb" / "test" / "y.png", value=20)
    _rgb(tmp_path / "d3" / "aif" / "test" / "y.png", value=200)
    _depth_png(tmp_path / "d3" / "depth" / "test" / "y.png")
    d3 = RGBDFolder(tmp_path / "d3", "test")
    assert d3.defocus == "real" and d3[0]["image"][1, 10, 10] == pytest.approx(20 / 255)
    assert d3[0]["aif"][1, 10, 10] == pytest.approx(200 / 255)


def test_bad_inputs(folder, tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        RGBDFolder(tmp_path / "nope")
    empty = tmp_path / "empty"
    (empty / "rgb").mkdir(parents=True)
    with pytest.raises(InputError, match=r"empty: no depth/ folder"):
        RGBDFolder(empty)
    (empty / "depth").mkdir()
    (empty / "depth" / "a.exr").write_bytes(b"v/1\x01")
    with pytest.raises(InputError, match=r"\.exr depth is not supported"):
        RGBDFolder(empty)
    _depth_png(folder / "depth" / "a.png", mm=0)
    ds = RGBDFolder(folder, preset="paper")
    with pytest.raises(InputError, match=r"depth[/\\]a\.png\).*no valid pixel"):
        ds[0]
    data = (folder / "rgb" / "b.png").read_bytes()
    (folder / "rgb" / "b.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=r"rgb[/\\]b\.png: cannot read image"):
        ds[1]
    with pytest.raises(InputError, match="unknown dataset"):
        build_dataset("kitti", folder)


def test_synthetic_splits_are_disjoint_and_deterministic():
    opts = dict(n=2, height=32, width=40, defocus="deferred", preset="paper")
    train, val, test = (SyntheticScenes(None, s, **opts) for s in ("train", "val", "test"))
    assert not set(train.names) & set(val.names) and not set(val.names) & set(test.names)
    a, b = SyntheticScenes(None, "val", **opts)[1], val[1]
    assert torch.equal(a["aif"], b["aif"]) and torch.equal(a["depth"], b["depth"])
    assert a["depth"].shape == (1, 32, 40) and a["mask"].all()
    flips = SyntheticScenes(None, "train", augment=True, **opts)
    flips.set_epoch(3)
    assert flips[0]["aif"].shape == (3, 32, 40)

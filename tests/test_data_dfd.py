"""DFD indoor reader: on ../shared/data/dfd_indoor and on a fixture with shifted timestamps."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from PIL import Image

from twohded.data import DFDIndoor
from twohded.data.dfd import VAL_SCENES, pair_by_time
from twohded.errors import InputError


# ---- real data ------------------------------------------------------------------------------


def test_real_dataset_pairs_every_scene(dfd_root, caplog):
    with caplog.at_level(logging.WARNING, logger="twohded.data"):
        full = DFDIndoor(dfd_root, "trainval")
    assert len(full) == 81 and not caplog.records  # nothing unmatched
    assert max(abs(t) for t in full.time_offsets) < 0.5
    # each photo is paired with the depth map captured just before it (a fraction of a second)
    for rgb, depth in zip(full.wide_paths, full.depth_paths):
        assert rgb.name[:16] == depth.name[:16]
    train, val = DFDIndoor(dfd_root, "train"), DFDIndoor(dfd_root, "val")
    assert len(train) == 70 and val.names == list(VAL_SCENES)
    assert not set(train.names) & set(val.names)


def test_real_item_values_and_units(dfd_root):
    ds = DFDIndoor(dfd_root, "val", size=(128, 160), resize="crop")
    item = ds[0]
    assert item["image"].shape == (3, 128, 160) and item["aif"].shape == (3, 128, 160)
    assert item["depth"].shape == (1, 128, 160) and item["mask"].all()
    assert 0.2 < float(item["depth"].min()) and float(item["depth"].max()) < 10.0  # metres
    assert 0.0 <= float(item["image"].min()) and float(item["image"].max()) <= 1.0
    assert item["name"] == VAL_SCENES[0]
    # f/8 is sharper than f/2.8: more high-frequency energy
    def hf(x):
        return float((x[:, :, 1:] - x[:, :, :-1]).abs().mean())
    assert hf(item["aif"]) > hf(item["image"])


def test_real_render_mode_and_no_silent_resize(dfd_root):
    with pytest.raises(InputError, match="real defocused"):
        DFDIndoor(dfd_root, "val", size=(64, 64), resize="resize")
    ds = DFDIndoor(dfd_root, "val", defocus="deferred", preset="paper", size=(72, 108))
    item = ds[1]
    assert item["image"].shape == (3, 72, 108) and torch.equal(item["image"], item["aif"])
    assert float(item["pixel_scale"]) == pytest.approx(108 / 645)


def test_real_no_defocus_mode_feeds_the_f8_photo(dfd_root):
    """defocus="none": the input is the f/8 photo itself (the "does defocus help?" control)."""
    sharp = DFDIndoor(dfd_root, "val", defocus="none", size=(64, 96))
    real = DFDIndoor(dfd_root, "val", size=(64, 96))
    a, b = sharp[0], real[0]
    assert torch.equal(a["image"], a["aif"]) and torch.equal(a["aif"], b["aif"])
    assert not torch.equal(a["image"], b["image"])


# ---- fixture: shifted timestamps, unmatched files, symlink stored as a text file -------------


def _jpg(path, value):
    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.full((24, 36, 3), value, np.uint8)
    img[:8, :8] = 255  # top-left marker
    Image.fromarray(img).save(path)


def _png_mm(path, mm):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((24, 36), mm, np.uint16)).save(path)


@pytest.fixture
def fake_dfd(tmp_path):
    root = tmp_path / "dfd_indoor"
    wide, narrow = root / "dfd_dataset_indoor_N2_8", root / "dfd_dataset_indoor_N8"
    scenes = {  # rgb name -> (depth name or None, depth in mm)
        "2018-04-26T10:00:00.900000": ("2018-04-26T10:00:00.400000", 1000),  # depth 0.5 s earlier
        "2018-04-26T10:00:01.100000": ("2018-04-26T10:00:01.150000", 2000),  # 0.05 s later
        "2018-04-26T10:00:30.000000": (None, 0),  # no depth: skipped
    }
    for i, (name, (dname, mm)) in enumerate(scenes.items()):
        _jpg(wide / "rgb" / "train" / f"{name}.JPG", 40 + i)
        _jpg(narrow / "rgb" / "train" / f"{name}.JPG", 140 + i)
        if dname:
            _png_mm(wide / "depth" / "train" / f"{dname}.png", mm)
    _png_mm(wide / "depth" / "train" / "2018-04-26T10:05:00.000000.png", 3000)  # depth alone
    _jpg(wide / "rgb" / "train" / "2018-04-26T10:09:00.000000.JPG", 10)  # no f/8 twin
    (narrow / "depth").mkdir(parents=True)
    (narrow / "depth" / "train").write_text("../../dfd_dataset_indoor_N2_8/depth/train")
    return root


def test_fixture_pairs_nearest_and_reports_unmatched(fake_dfd, caplog):
    with caplog.at_level(logging.WARNING, logger="twohded.data"):
        ds = DFDIndoor(fake_dfd, "trainval", tolerance_s=0.6, augment=False)
    assert ds.names == ["2018-04-26T10:00:00.900000", "2018-04-26T10:00:01.100000"]
    # the 0.9 s photo is 0.25 s from the 1.15 s depth but that one is 0.05 s from its own photo
    assert [p.name for p in ds.depth_paths] == ["2018-04-26T10:00:00.400000.png", "2018-04-26T10:00:01.150000.png"]
    text = caplog.text
    for lonely in ("10:00:30.000000.JPG", "10:05:00.000000.png", "10:09:00.000000.JPG"):
        assert text.count(lonely) == 1
    item = ds[0]
    assert float(item["depth"].mean()) == pytest.approx(1.0)  # 1000 mm -> 1 m
    assert item["image"][0, 20, 20] == pytest.approx(40 / 255, abs=2 / 255)  # f/2.8
    assert item["aif"][0, 20, 20] == pytest.approx(140 / 255, abs=2 / 255)  # f/8
    assert item["image"][0, 2, 2] > 0.9 and item["image"][0, 2, 30] < 0.5  # right way round


def test_fixture_tolerance_is_respected(fake_dfd):
    ds = DFDIndoor(fake_dfd, "trainval", tolerance_s=0.3)
    assert ds.names == ["2018-04-26T10:00:01.100000"]  # 0.5 s offset now too large


def test_pair_by_time_is_one_to_one():
    pairs, lone_l, lone_r = pair_by_time({"a": 0.0, "b": 0.2}, {"x": 0.15}, 0.5)
    assert pairs == {"b": "x"} and lone_l == ["a"] and lone_r == []


def test_bad_layouts(tmp_path, fake_dfd):
    with pytest.raises(InputError, match="does not exist"):
        DFDIndoor(tmp_path / "nope")
    with pytest.raises(InputError, match="published DFD layout"):
        DFDIndoor(tmp_path)
    with pytest.raises(InputError, match="no DFD val scene"):
        DFDIndoor(fake_dfd, "val")
    with pytest.raises(InputError, match="DFD split"):
        DFDIndoor(fake_dfd, "validation")
    depth = fake_dfd / "dfd_dataset_indoor_N2_8" / "depth" / "train" / "2018-04-26T10:00:00.400000.png"
    _png_mm(depth, 0)
    with pytest.raises(InputError, match=r"10:00:00\.900000\.JPG.*no valid pixel"):
        DFDIndoor(fake_dfd, "trainval", tolerance_s=0.6)[0]
    Image.fromarray(np.random.default_rng(0).integers(500, 5000, (24, 36)).astype(np.uint16)).save(depth)
    depth.write_bytes(depth.read_bytes()[:-400])
    with pytest.raises(InputError, match=r"10:00:00\.400000\.png: cannot read depth"):
        DFDIndoor(fake_dfd, "trainval", tolerance_s=0.6)[0]

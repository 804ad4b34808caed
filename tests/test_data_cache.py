"""``twohded prepare`` and the cache it writes (resumable, atomic, read back by PreparedDataset)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from twohded.cli import main
from twohded.data import PreparedDataset, RGBDFolder
from twohded.errors import InputError


@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(3):
        (tmp_path / "src" / "rgb").mkdir(parents=True, exist_ok=True)
        (tmp_path / "src" / "depth").mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)).save(tmp_path / "src" / "rgb" / f"f{i}.png")
        depth = np.full((24, 32), 800 + 500 * i, np.uint16)
        depth[:, 16:] = 4000
        Image.fromarray(depth).save(tmp_path / "src" / "depth" / f"f{i}.png")
    return tmp_path / "src"


def _prepare(src, out, *extra):
    return main(["prepare", "folder", "--root", str(src), "--out", str(out), "--preset", "paper",
                 "--size", "16", "--workers", "0", "--no-progress", *extra])


def test_prepare_writes_a_cache_that_loads(folder, tmp_path, capsys):
    out = tmp_path / "cache"
    assert _prepare(folder, out) == 0
    text = capsys.readouterr().out
    assert "all: 3 samples (3 new, 0 already done)" in text
    assert "depth: 0.800 to 4.000 m" in text and "blur (Gaussian sigma)" in text
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["summary"]["counts"] == {"all": 3}
    lo, hi = manifest["summary"]["blur_sigma_range_px"]
    assert 0 <= lo < hi
    ds = PreparedDataset(out, "all")
    assert len(ds) == 3 and ds.names == ["f0", "f1", "f2"]
    item = ds[1]
    ref = RGBDFolder(folder, preset="paper", size=(16, 16), augment=False)[1]
    assert item["image"].shape == (3, 16, 16) and item["name"] == "f1"
    assert torch.allclose(item["image"], ref["image"], atol=1 / 255 + 1e-6)  # uint8 storage
    assert torch.equal(item["depth"], ref["depth"]) and torch.equal(item["mask"], ref["mask"])
    crops = PreparedDataset(out, "all", size=(8, 8), augment=True, seed=1)
    assert crops[0]["image"].shape == (3, 8, 8)
    with pytest.raises(InputError, match="blur in pixels"):
        PreparedDataset(out, "all", size=(8, 8), resize="resize")


def test_prepare_resumes_and_refuses_other_settings(folder, tmp_path, capsys):
    out = tmp_path / "cache"
    assert _prepare(folder, out) == 0
    first = (out / "all" / "000000.npz").read_bytes()
    (out / "all" / "000002.npz").unlink()  # as if killed before the last sample
    (out / "manifest.json").unlink()
    (out / "all" / ".000002.abcd.tmp.npz").write_bytes(b"half")  # a killed write
    with pytest.raises(InputError, match="did not finish"):
        PreparedDataset(out, "all")
    capsys.readouterr()
    assert _prepare(folder, out) == 0
    assert "all: 3 samples (1 new, 2 already done)" in capsys.readouterr().out
    assert not list((out / "all").glob(".*tmp*"))
    assert (out / "all" / "000000.npz").read_bytes() == first  # untouched
    assert len(PreparedDataset(out, "all")) == 3
    assert _prepare(folder, out, "--seed", "4") == 2
    assert "other settings (seed differ)" in capsys.readouterr().err


def test_prepare_bad_arguments(tmp_path, capsys):
    assert main(["prepare", "nyu", "--out", str(tmp_path / "o")]) == 2
    assert "--root is required" in capsys.readouterr().err
    assert main(["prepare", "make3d", "--root", str(tmp_path / "none"), "--out", str(tmp_path / "o")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["prepare", "nyu", "--root", str(tmp_path), "--out", str(tmp_path / "o"), "--defocus", "real"]) == 2
    assert "no real defocused images" in capsys.readouterr().err
    with pytest.raises(InputError, match="not a twohded prepare cache"):
        PreparedDataset(tmp_path, "train")


def test_prepare_real_dfd(dfd_root, tmp_path, capsys):
    out = tmp_path / "dfd"
    assert main(["prepare", "dfd", "--root", str(dfd_root), "--out", str(out), "--split", "val",
                 "--limit", "2", "--size", "128", "--workers", "0", "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "val: 2 samples" in text and "real defocus" in text
    item = PreparedDataset(out, "val")[0]
    assert item["image"].shape == (3, 128, 128) and item["name"] == "2018-04-26T17:14:37.623943"

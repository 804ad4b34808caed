"""iDFD reader (twohded.data.IDFD) and ``twohded prepare idfd`` on a fixture in the published
layout, with its irregularities: .JPG and .jpg in one folder, non-padded indices, scene names
with underscores, unpaired files in Raw, two variants holding different frames."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from twohded.cli import main
from twohded.data import IDFD, build_dataset
from twohded.data.idfd import natural_key, scene_of, scene_split
from twohded.errors import InputError

# scene -> frame indices; with the default fractions Kitchen2 hashes to test, Hall1 to val, the rest to train
SCENES = {"Apartment1": (0, 1, 2, 10), "Bedroom_room2": (0, 3), "Corp_D1": (1, 2), "Kitchen2": (0, 1), "Hall1": (0,)}
SIZES = {"Processed": (24, 32), "Raw": (28, 28)}  # (H, W): 480x640 and 1050x1050 in miniature


def depth_mm(stem: str, hw) -> np.ndarray:
    """A depth map in millimetres that encodes the frame: 1000 + 100 * (position of stem)."""
    stems = sorted(all_stems(), key=natural_key)
    value = 1000 + 100 * (stems.index(stem) if stem in stems else 0)
    return np.full(hw, value, dtype=np.uint16)


def all_stems():
    return [f"{s}_{k}" for s, ks in SCENES.items() for k in ks]


def write_variant(folder, stems, hw, rng):
    for sub in ("All_In_Focus", "Out_Of_Focus", "Depth"):
        (folder / sub).mkdir(parents=True)
    for i, stem in enumerate(stems):
        ext = ".JPG" if i % 2 else ".jpg"  # mixed case in one folder
        sharp = rng.integers(0, 256, (*hw, 3), dtype=np.uint8)
        blurred = ((sharp.astype(np.uint16) + np.roll(sharp, 1, axis=1)) // 2).astype(np.uint8)
        Image.fromarray(sharp).save(folder / "All_In_Focus" / f"{stem}{ext}", quality=95)
        Image.fromarray(blurred).save(folder / "Out_Of_Focus" / f"{stem}{ext.lower() if i % 3 else ext}", quality=95)
        Image.fromarray(depth_mm(stem, hw)).save(folder / "Depth" / f"{stem}.png")


@pytest.fixture(scope="module")
def idfd_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("iDFD")
    rng = np.random.default_rng(0)
    stems = all_stems()
    for res, hw in SIZES.items():
        write_variant(root / "Data" / res / "inpainting", stems, hw, rng)
        write_variant(root / "Data" / res / "without_inpainting", stems[1:-2] + stems[-1:], hw, rng)  # another subset
    raw = root / "Data" / "Raw" / "inpainting"
    # Raw is not fully paired: an all-in-focus photo and a depth map without partners, a stray file
    Image.fromarray(rng.integers(0, 256, (28, 28, 3), dtype=np.uint8)).save(raw / "All_In_Focus" / "Corp_D1_7.JPG")
    Image.fromarray(np.full((28, 28), 900, np.uint16)).save(raw / "Depth" / "Apartment1_11.png")
    (raw / "Depth" / "notes.txt").write_text("not an image")
    return root


def test_scene_and_natural_order_helpers():
    assert [scene_of(s) for s in ("Apartment1_10", "Bedroom_room2_3", "Corp_D1_2", "Lonely")] == [
        "Apartment1", "Bedroom_room2", "Corp_D1", "Lonely"]
    assert sorted(["Apartment1_10", "Apartment1_2", "Apartment1_0", "Apartment10_0"], key=natural_key) == [
        "Apartment1_0", "Apartment1_2", "Apartment1_10", "Apartment10_0"]
    assert [scene_split(s) for s in ("Kitchen2", "Hall1", "Apartment1")] == ["test", "val", "train"]
    assert scene_split("Kitchen2", test_fraction=0.0) != "test"
    # fractions are honoured over many scenes
    counts = {k: 0 for k in ("train", "val", "test")}
    for i in range(4000):
        counts[scene_split(f"Room{i}")] += 1
    assert abs(counts["test"] / 4000 - 0.1) < 0.02 and abs(counts["val"] / 4000 - 0.1) < 0.02


def test_pairs_sorts_and_splits_by_scene(idfd_root, caplog):
    with caplog.at_level(logging.WARNING, logger="twohded.data"):
        full = IDFD(idfd_root, "all")
    assert not caplog.records  # Processed is fully paired
    assert full.names == sorted(all_stems(), key=natural_key)
    assert full.names[:4] == ["Apartment1_0", "Apartment1_1", "Apartment1_2", "Apartment1_10"]
    assert {p.suffix for p in full.aif_paths} == {".jpg", ".JPG"}
    splits = {s: IDFD(idfd_root, s) for s in ("train", "val", "test")}
    assert sorted(n for ds in splits.values() for n in ds.names) == sorted(full.names)
    scenes = {s: set(ds.scenes) for s, ds in splits.items()}
    assert scenes == {"train": {"Apartment1", "Bedroom_room2", "Corp_D1"}, "val": {"Hall1"}, "test": {"Kitchen2"}}
    assert splits["train"].augment and not splits["test"].augment


def test_item_is_real_defocus_in_metres(idfd_root):
    ds = IDFD(idfd_root, "all", augment=False)
    item = ds[ds.names.index("Apartment1_10")]
    assert item["image"].shape == (3, 24, 32) and item["aif"].shape == (3, 24, 32)
    assert item["name"] == "Apartment1_10" and item["mask"].all()
    assert float(item["depth"].mean()) == pytest.approx(depth_mm("Apartment1_10", (1, 1))[0, 0] / 1000.0)
    # input = Out_Of_Focus (blurred), target = All_In_Focus (sharp)
    def hf(x):
        return float((x[:, :, 1:] - x[:, :, :-1]).abs().mean())
    assert hf(item["aif"]) > 1.3 * hf(item["image"])
    crop = IDFD(idfd_root, "train", size=(16, 16))[0]
    assert crop["image"].shape == (3, 16, 16)
    with pytest.raises(InputError, match="resample the real defocused"):
        IDFD(idfd_root, "train", size=(16, 16), resize="resize")


def test_raw_resolution_reports_unpaired_files(idfd_root, caplog):
    with caplog.at_level(logging.WARNING, logger="twohded.data"):
        raw = IDFD(idfd_root, "all", resolution="raw")
    assert len(raw) == len(all_stems())
    assert raw[0]["image"].shape == (3, 28, 28)
    (msg,) = [r.getMessage() for r in caplog.records]
    assert "skipping 2 unmatched" in msg and "Corp_D1_7 (no Out_Of_Focus, Depth)" in msg
    assert "Apartment1_11 (no All_In_Focus, Out_Of_Focus)" in msg
    assert f"{len(all_stems()) + 1} All_In_Focus / {len(all_stems())} Out_Of_Focus / {len(all_stems()) + 1} Depth" in msg


def test_variants_are_different_subsets(idfd_root):
    a = IDFD(idfd_root, "all", variant="inpainting")
    b = IDFD(idfd_root, "all", variant="without_inpainting")
    assert len(b) == len(a) - 2 and set(b.names) < set(a.names)
    # the scene split does not depend on the variant: a scene is in one split everywhere
    for split in ("train", "val", "test"):
        assert set(IDFD(idfd_root, split, variant="without_inpainting").scenes) <= set(IDFD(idfd_root, split).scenes)
    # root may also be Data/ or the resolution folder
    assert IDFD(idfd_root / "Data", "all").names == a.names
    assert IDFD(idfd_root / "Data" / "Processed", "all").names == a.names


def test_refuses_bad_input(idfd_root, tmp_path):
    with pytest.raises(InputError, match="variant 'painted'"):
        IDFD(idfd_root, variant="painted")
    with pytest.raises(InputError, match="resolution"):
        IDFD(idfd_root, resolution="4k")
    with pytest.raises(InputError, match="split 'dev'"):
        IDFD(idfd_root, "dev")
    with pytest.raises(InputError, match="no iDFD Processed/inpainting"):
        IDFD(tmp_path)
    # an 8-bit depth PNG is a per-image normalisation, not metres: one clear line
    bad = tmp_path / "Data" / "Processed" / "inpainting"
    write_variant(bad, ["Room_0", "Room_1"], (8, 8), np.random.default_rng(1))
    Image.fromarray(np.full((8, 8), 200, np.uint8)).save(bad / "Depth" / "Room_0.png")
    with pytest.raises(InputError, match=r"Room_0\.png: iDFD depth PNG is 8-bit .*not metric") as err:
        IDFD(tmp_path, "all")
    assert "\n" not in str(err.value)
    assert main(["prepare", "idfd", "--root", str(tmp_path), "--out", str(tmp_path / "o"), "--no-progress"]) == 2
    # the same stem twice in one folder (a.JPG and a.jpg) is ambiguous
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(bad / "All_In_Focus" / "Room_0.JPG")
    with pytest.raises(InputError, match="ambiguous"):
        IDFD(tmp_path, "all")


def test_build_dataset_and_prepare_cli(idfd_root, tmp_path, capsys):
    assert len(build_dataset("idfd", idfd_root, "val", size="16")) == 1
    out = tmp_path / "cache"
    code = main(["prepare", "idfd", "--root", str(idfd_root), "--out", str(out), "--resolution", "raw",
                 "--size", "16", "--workers", "0", "--no-progress"])
    assert code == 0, capsys.readouterr().err
    manifest = json.loads((out / "manifest.json").read_text())
    assert {s: v["count"] for s, v in manifest["splits"].items()} == {"train": 8, "val": 1, "test": 2}
    assert manifest["settings"]["resolution"] == "raw" and manifest["settings"]["defocus"] == "real"
    assert manifest["splits"]["test"]["names"] == ["Kitchen2_0", "Kitchen2_1"]
    sample = build_dataset("cache", out, "val")[0]
    assert sample["image"].shape == (3, 16, 16) and sample["name"] == "Hall1_0"


def test_shipped_config_builds_its_datasets(idfd_root):
    from twohded.config import load_config
    from twohded.training.components import build_datasets

    cfg = load_config(Path(__file__).resolve().parents[1] / "configs" / "idfd.yaml", [f"data.root={idfd_root}", "data.size=16"])
    train, val = build_datasets(cfg)
    assert isinstance(train, IDFD) and train.defocus == "real" and train.render_spec is None
    assert train[0]["image"].shape == (3, 16, 16)
    assert val.names == ["Hall1_0"] and val[0]["image"].shape == (3, 24, 32)  # whole frames

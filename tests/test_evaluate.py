"""Evaluation: protocols (hand-checked with stand-in models), result files, ``twohded evaluate``."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import scipy.io
import torch
from torch import nn
from torch.utils.data import Dataset

from twohded.cli import main
from twohded.data import build_dataset
from twohded.errors import InputError
from twohded.evaluate import EvalResult, evaluate_model
from twohded.models import DefocusModel, ModelOutput, create_model


class Constant(DefocusModel):
    """Stand-in model: constant depth ``c`` metres, AiF = input + ``shift``."""

    outputs = ("depth", "aif")

    def __init__(self, c: float, shift: float = 0.0):
        super().__init__()
        self.c, self.shift = c, shift
        self.p = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return ModelOutput(depth=torch.full_like(x[:, :1], self.c) + self.p, aif=(x + self.shift).clamp(0, 1))


class Items(Dataset):
    def __init__(self, items):
        self.items = items

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def _item(depth, name, target_shift=0.1):
    h, w = depth.shape
    aif = torch.rand(3, h, w, generator=torch.Generator().manual_seed(len(name)))
    image = (aif * 0.8 + target_shift).clamp(0, 1)
    d = torch.as_tensor(depth, dtype=torch.float32)[None]
    return {"image": image, "depth": d, "aif": aif, "mask": d > 0, "name": name}


def _one_error_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("twohded: error: "), err
    return err[0]


# --- protocols, by hand ----------------------------------------------------------------


def test_generic_dataset_by_hand_and_result():
    depth = np.full((32, 40), 2.0, np.float32)
    depth[:, :20] = 4.0
    depth[0, 0] = 0.0  # invalid
    ds = Items([_item(depth, "a"), _item(depth * 2, "bb")])
    model = Constant(3.0).train()
    r = evaluate_model(model, ds, batch_size=2)
    assert model.training  # mode restored
    assert r.count == 2 and r.dataset is None and list(r.depth_regions) == ["valid"]
    rmse_a = 1.0  # |3 - 2| = |3 - 4| = 1 everywhere valid
    valid_b = depth * 2 > 0  # gt 8 and 4 m, one invalid pixel
    rmse_b = np.sqrt(((3.0 - (depth * 2)[valid_b]) ** 2).mean())
    assert r.depth["rmse"] == pytest.approx((rmse_a + rmse_b) / 2)  # per image, then averaged
    assert r.depth["pixels"] == 2 * (32 * 40 - 1)
    assert r.per_image[1]["depth"]["valid"]["rmse"] == pytest.approx(rmse_b)
    # input baseline vs output against the same target
    assert set(r.input) == set(r.aif) == {"psnr", "ssim"}
    assert r.gain["psnr"] == pytest.approx(r.aif["psnr"] - r.input["psnr"])
    flat = r.flat()
    assert {"depth/rmse", "aif/psnr", "input/ssim", "gain/psnr"} <= set(flat)
    d = r.to_dict()
    json.dumps(d, allow_nan=False)
    assert isinstance(EvalResult(**{k: d[k] for k in ("protocol", "dataset", "count")}), EvalResult)


def test_make3d_c1_c2_regions():
    depth = np.full((32, 32), 10.0, np.float32)
    depth[:, 16:] = 75.0  # beyond C1, inside C2
    depth[:4] = 85.0  # beyond both
    ds = Items([_item(depth, "m")])
    r = evaluate_model(Constant(100.0), ds, dataset_name="make3d")
    assert list(r.depth_regions) == ["c1", "c2"] and r.depth is r.depth_regions["c1"]
    c1, c2 = r.depth_regions["c1"], r.depth_regions["c2"]
    # C1: gt 10 m pixels only, prediction clamped to 70 m
    assert c1["pixels"] == 28 * 16 and c1["rmse"] == pytest.approx(60.0)
    # C2: gt 10 and 75 m, prediction clamped to 80 m
    assert c2["pixels"] == 28 * 32
    assert c2["rmse"] == pytest.approx(np.sqrt((70.0**2 + 5.0**2) / 2))


def test_depth_only_and_no_target():
    depth = np.full((32, 32), 2.0, np.float32)
    item = _item(depth, "x")
    item["aif"] = item["image"].clone()  # real defocus without a sharp target
    model = create_model("2hded-depth")
    r = evaluate_model(model, Items([item]))
    assert r.depth and not r.aif and not r.input


def _write_nyu(root, n=2):
    """A 640x480 NYU labeled file laid out as MATLAB v7.3 (axes reversed) and a split file."""
    rng = np.random.default_rng(0)
    images = (rng.random((n, 480, 640, 3)) * 255).astype(np.uint8)
    depth = np.tile(np.linspace(1.0, 8.0, 640, dtype=np.float32), (n, 480, 1))
    depth[:, 240:] += 0.5
    depth[1] *= 1.1
    with h5py.File(root / "nyu_depth_v2_labeled.mat", "w") as f:
        f.create_dataset("images", data=images.transpose(0, 3, 2, 1))
        f.create_dataset("depths", data=depth.transpose(0, 2, 1))
    scipy.io.savemat(root / "splits.mat", {"trainNdxs": np.array([[1]], np.uint16), "testNdxs": np.array([[1], [2]], np.uint16)})
    return depth


def test_nyu_standard_eigen_crop_at_native_resolution_and_paper(tmp_path):
    depth = _write_nyu(tmp_path)
    ds = build_dataset("nyu", tmp_path, "test", splits_file=tmp_path / "splits.mat", size="64x48",
                       defocus="deferred", preset="paper")
    c = 4.0
    r = evaluate_model(Constant(c), ds)
    assert r.dataset == "nyu" and r.settings["gt_resolution"] == "native" and list(r.depth_regions) == ["eigen"]
    eigen = depth[:, 45:471, 41:601]  # the Eigen crop of the 640x480 frame
    expect = np.mean([np.sqrt(((c - g) ** 2).mean()) for g in eigen])
    assert r.depth["rmse"] == pytest.approx(expect, rel=1e-6)
    assert r.depth["pixels"] == eigen.size
    assert r.depth["abs_rel"] == pytest.approx(np.mean([(np.abs(c - g) / g).mean() for g in eigen]), rel=1e-6)
    # paper protocol: the items' 48x64 resolution, whole frame, prediction truncated to mm
    rp = evaluate_model(Constant(c + 0.0007), ds, protocol="paper")
    assert rp.settings["gt_resolution"] == "input" and list(rp.depth_regions) == ["valid"]
    assert rp.depth["pixels"] == 2 * 48 * 64
    items = [ds[i] for i in range(2)]
    expect_p = np.mean([np.sqrt(((c - it["depth"].numpy()) ** 2).mean()) for it in items])
    assert rp.depth["rmse"] == pytest.approx(expect_p, rel=1e-5)
    assert rp.settings["ssim_window"] == "uniform" and rp.settings["depth_quantised_mm"]


# --- the command line ------------------------------------------------------------------


SYNTH = ["--data", "synthetic", "-O", "n=2", "-O", "height=64", "-O", "width=64", "--preset", "paper", "--no-progress"]


def test_cli_evaluate_writes_documented_files(tmp_path, ckpt, capsys):
    out = tmp_path / "ev"
    argv = ["evaluate", "--checkpoint", str(ckpt), *SYNTH, "--out", str(out), "--figures", "2", "--batch-size", "2"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "| defocused input |" in printed and "metrics.json" in printed
    data = json.loads((out / "metrics.json").read_text())
    assert data["format"] == "twohded-eval/1" and data["protocol"] == "standard" and data["count"] == 2
    assert set(data["depth"]) >= {"rmse", "abs_rel", "sq_rel", "rmse_log", "log10", "delta1", "delta2", "delta3"}
    assert set(data["aif"]) == set(data["input"]) == {"psnr", "ssim"}
    assert data["settings"]["model_name"] == "2hded" and data["settings"]["regions"]["valid"]["max_depth"] == 10.0
    assert [p["name"] for p in data["per_image"]] == ["scene_2000000", "scene_2000001"]
    md = (out / "metrics.md").read_text()
    assert "RMSE (m)" in md and "| all-in-focus output |" in md and "| gain |" in md
    figs = sorted((out / "figures").glob("*.png"))
    assert len(figs) == 2
    # an existing result is not replaced silently
    assert main(argv) == 2
    assert "--overwrite" in _one_error_line(capsys)
    assert main([*argv, "--overwrite", "--protocol", "paper", "--figures", "0"]) == 0
    assert json.loads((out / "metrics.json").read_text())["protocol"] == "paper"


def test_cli_evaluate_bad_inputs(tmp_path, ckpt, capsys):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x00garbage")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    out = tmp_path / "ev"
    base = ["evaluate", "--no-progress", "--out", str(out)]
    cases = [
        ([*base, "--checkpoint", str(bad), *SYNTH], "not a readable checkpoint"),
        ([*base, "--checkpoint", str(tmp_path / "none.pt"), *SYNTH], "does not exist"),
        ([*base, "--checkpoint", str(ckpt), "--model", "2hded-aif", *SYNTH], "not '2hded-aif'"),
        ([*base, "--checkpoint", str(ckpt), "--data", "nyu", "--root", str(tmp_path / "nowhere")], "does not exist"),
        ([*base, "--checkpoint", str(ckpt), "--data", "nyu"], "--root is required"),
        ([*base, "--checkpoint", str(ckpt), *SYNTH, "-O", "bogus=1"], "bogus"),
        (["evaluate", "--checkpoint", str(ckpt), *SYNTH, "--out", str(blocker / "sub")], str(blocker)),
        ([*base, "--checkpoint", str(ckpt), *SYNTH, "--device", "cuda:7" if torch.cuda.is_available() else "cuda"],
         "--device"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        assert message in _one_error_line(capsys), argv
    assert not out.exists()  # nothing half-written


def test_evaluate_model_argument_errors():
    ds = Items([_item(np.ones((32, 32), np.float32), "a")])
    with pytest.raises(InputError, match="protocol"):
        evaluate_model(Constant(1.0), ds, protocol="eigen")
    with pytest.raises(InputError, match="out_dir"):
        evaluate_model(Constant(1.0), ds, figures=1)
    with pytest.raises(InputError, match="empty"):
        evaluate_model(Constant(1.0), Items([]))

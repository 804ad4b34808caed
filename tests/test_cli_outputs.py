"""``-o`` for ``--out`` everywhere, ``predict --ply`` and the ``--json`` summaries of predict and evaluate."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
from PIL import Image

from twohded.cli import build_parser, main
from tests.test_pointcloud import read_ply


def _subparsers(parser):
    for action in parser._actions:  # argparse offers no public walk over subcommands
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield name, sub
                yield from ((f"{name} {n}", s) for n, s in _subparsers(sub))


def test_short_o_wherever_out_exists():
    seen = []
    for name, sub in _subparsers(build_parser()):
        opts = {s: a for a in sub._actions for s in a.option_strings}
        if "--out" in opts:
            assert opts.get("-o") is opts["--out"], name
            seen.append(name)
    assert {"predict", "evaluate", "train", "render", "scenes", "demo"} <= {n.split()[0] for n in seen}


def _photos(folder):
    folder.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((48, 64, 3)) * 255).astype(np.uint8)).save(folder / "a.png")
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0xA405] = 24  # 35 mm-equivalent focal length in the EXIF
    Image.fromarray((rng.random((40, 72, 3)) * 255).astype(np.uint8)).save(folder / "b.jpg", exif=exif)
    return folder


def test_predict_ply_and_json_to_stdout(tmp_path, ckpt, capsys):
    src = _photos(tmp_path / "in")
    out = tmp_path / "out"
    assert main(["predict", str(src), "--checkpoint", str(ckpt), "-o", str(out), "--no-progress",
                 "--ply", "--focal-mm", "20", "--pixel-pitch-um", "100", "--json"]) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)  # stdout holds the JSON only
    assert "wrote depth and aif and point clouds of 2 image(s)" in captured.err
    assert summary["format"] == "twohded-predict/1" and summary["count"] == 2 and summary["model_name"] == "2hded"
    by_input = {rec["input"]: rec for rec in summary["images"]}
    rec = by_input[str(src / "a.png")]
    assert (rec["width"], rec["height"], rec["tiles"]) == (64, 48, 1)
    assert set(rec["files"]) == {"depth_npy", "depth_png", "depth_color", "aif", "ply"}
    depth = np.load(rec["files"]["depth_npy"])
    assert rec["depth_m"]["min"] == pytest.approx(float(depth.min())) and rec["depth_m"]["max"] == pytest.approx(float(depth.max()))
    assert rec["intrinsics"]["fx_px"] == pytest.approx(200.0) and rec["intrinsics"]["cx_px"] == 31.5
    header, xyz, rgb = read_ply(out / "a_points.ply")
    valid = depth > 0
    assert rec["points"] == len(xyz) == int(valid.sum())
    v, u = np.nonzero(valid)
    np.testing.assert_allclose(xyz[:, 2], depth[valid], rtol=1e-6)
    np.testing.assert_allclose(xyz[:, 0], (u - 31.5) * depth[valid] / 200.0, rtol=1e-5, atol=1e-7)
    aif = np.asarray(Image.open(out / "a_aif.png"))
    np.testing.assert_array_equal(rgb, aif[valid])  # coloured by the all-in-focus image
    # overwriting is refused for the point cloud too; -o and --json FILE
    capsys.readouterr()
    (out / "a_aif.png").unlink()
    (out / "a_depth.npy").unlink(), (out / "a_depth.png").unlink(), (out / "a_depth_color.png").unlink()
    assert main(["predict", str(src / "a.png"), "--checkpoint", str(ckpt), "-o", str(out), "--no-progress",
                 "--ply", "--fov-deg", "60"]) == 2
    assert "a_points.ply: already exists" in capsys.readouterr().err


def test_predict_ply_intrinsics_from_exif_or_refused(tmp_path, ckpt, capsys):
    src = _photos(tmp_path / "in")
    out = tmp_path / "out"
    js = tmp_path / "summary.json"
    # a.png has no EXIF focal length: refused before any work, naming the file
    assert main(["predict", str(src), "--checkpoint", str(ckpt), "-o", str(out), "--no-progress", "--ply"]) == 2
    err = capsys.readouterr().err
    assert "a.png" in err and "--fov-deg" in err and not out.exists()
    assert main(["predict", str(src / "b.jpg"), "--checkpoint", str(ckpt), "-o", str(out), "--no-progress",
                 "--ply", "--json", str(js)]) == 0
    assert "wrote" in capsys.readouterr().out  # JSON in the file, the human line on stdout
    rec = json.loads(js.read_text())["images"][0]
    assert "EXIF" in rec["intrinsics"]["source"]
    assert rec["intrinsics"]["fx_px"] == pytest.approx(24 / 43.2666 * np.hypot(72, 40), rel=1e-4)
    # --json FILE is not replaced without --overwrite, and an image path is refused as a summary file
    for argv, message in [(["--json", str(js)], "already exists"), (["--json", str(src / "a.png")], "looks like an image")]:
        assert main(["predict", str(src / "b.jpg"), "--checkpoint", str(ckpt), "-o", str(tmp_path / "o2"),
                     "--no-progress", *argv]) == 2
        assert message in capsys.readouterr().err
    assert main(["predict", str(src / "b.jpg"), "--checkpoint", str(ckpt), "-o", str(tmp_path / "o3"), "--no-progress",
                 "--ply", "--preset", "syndof"]) == 2
    assert "random camera" in capsys.readouterr().err


def test_evaluate_json(tmp_path, ckpt, capsys):
    out = tmp_path / "ev"
    argv = ["evaluate", "--checkpoint", str(ckpt), "--data", "synthetic", "-O", "n=2", "-O", "height=64",
            "-O", "width=64", "--preset", "paper", "--no-progress", "-o", str(out), "--figures", "1", "--json"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert "| defocused input |" in captured.err  # the markdown goes to stderr
    assert summary["format"] == "twohded-evaluate/1"
    metrics = summary["metrics"]
    assert metrics == json.loads((out / "metrics.json").read_text())
    assert metrics["count"] == 2 and metrics["depth"]["rmse"] > 0 and len(metrics["per_image"]) == 2
    assert summary["files"]["metrics_json"] == str(out / "metrics.json")
    assert [p for p in summary["files"]["figures"]] == [str(p) for p in sorted((out / "figures").glob("*.png"))]
    js = tmp_path / "e.json"
    assert main([*argv[:-1], "--overwrite", "--figures", "0", "--json", str(js)]) == 0
    assert json.loads(js.read_text())["metrics"]["count"] == 2

"""Nothing a user opens runs code: a crafted pickle checkpoint through every entry point, and
the pickle-free ``.safetensors`` inference format (:mod:`twohded.weights`).

The crafted file is a real ``torch.save`` archive whose unpickling runs ``touch MARKER``
(checked: an unsafe ``torch.load`` does create the marker). Every entry point must refuse it
with one line and exit 2, and the marker must not exist afterwards.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from tests.fs_helpers import cli, malicious_checkpoint, one_line, pickle_is_live


@pytest.fixture
def armed(tmp_path):
    marker = tmp_path / "PWNED"
    path = malicious_checkpoint(tmp_path / "evil.pt", marker)
    assert pickle_is_live(path, marker)  # the payload really runs when unpickled unsafely
    return path, marker


@pytest.fixture
def photo(tmp_path):
    p = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(p)
    return p


def _tiny_config(tmp_path):
    from twohded.config import dump_config
    from tests.test_train import tiny

    path = tmp_path / "tiny.yaml"
    path.write_text(dump_config(tiny(tmp_path)))
    return path


def test_crafted_checkpoint_runs_nothing_anywhere(tmp_path, armed, photo):
    evil, marker = armed
    run = tmp_path / "run"
    run.mkdir()
    (run / "last.pt").write_bytes(evil.read_bytes())
    config = _tiny_config(tmp_path)
    commands = {
        "predict": ["predict", photo, "--checkpoint", evil, "-o", tmp_path / "p", "--no-progress"],
        "evaluate": ["evaluate", "--checkpoint", evil, "--data", "synthetic", "-O", "n=1", "--no-progress",
                     "-o", tmp_path / "ev"],
        "export onnx": ["export", "--checkpoint", evil, "--onnx", tmp_path / "m.onnx"],
        "export weights": ["export", "--checkpoint", evil, "--weights", tmp_path / "m.safetensors"],
        "train --resume": ["train", "--resume", run, "--no-progress"],
        "init_checkpoint": ["train", "--config", config, "--no-progress", "-o", tmp_path / "r2",
                            f"model.init_checkpoint={evil}"],
    }
    for what, argv in commands.items():
        res = cli(*argv)
        line = one_line(res)
        assert "refused" in line and ("evil.pt" in line or "last.pt" in line), (what, line)
        assert not marker.exists(), f"{what}: the checkpoint's code ran"
    assert not (tmp_path / "m.onnx").exists() and not (tmp_path / "m.safetensors").exists()


def test_load_model_refuses_a_crafted_checkpoint(armed):
    import twohded

    evil, marker = armed
    with pytest.raises(twohded.InputError, match="refused"):
        twohded.load_model(evil)
    assert not marker.exists()


def test_no_unsafe_load_in_the_code():
    """Every ``torch.load`` call in src, scripts, benchmarks and tests passes ``weights_only=True``."""
    import re

    from tests.fs_helpers import REPO_ROOT

    calls = 0
    for folder in ("src", "scripts", "benchmarks", "tests"):
        for path in (REPO_ROOT / folder).rglob("*.py"):
            text = path.read_text()
            for m in re.finditer(r"torch\.load\((?!\{)", text):  # (the f-string below is no call)
                call = text[m.end(): m.end() + 200].split(")")[0]
                assert "weights_only=True" in call, f"{path}: torch.load({call})"
                calls += 1
    assert calls >= 2


def test_export_weights_round_trip_float_and_int8(tmp_path, ckpt, photo, capsys):
    import twohded
    from twohded.cli import main
    from twohded.weights import FORMAT

    f32, q8 = tmp_path / "m.safetensors", tmp_path / "m8.safetensors"
    assert main(["export", "--checkpoint", str(ckpt), "--weights", str(f32)]) == 0
    assert main(["export", "--checkpoint", str(ckpt), "--weights", str(q8), "--int8"]) == 0
    assert f32.read_bytes()[8:9] == b"{"  # safetensors: a length, then the JSON header
    from safetensors import safe_open

    with safe_open(str(q8), "pt") as fh:
        meta = fh.metadata()
        dtypes = {fh.get_tensor(k).dtype for k in fh.keys()}
    assert meta["format"] == FORMAT and meta["model_name"] == "2hded" and json.loads(meta["model_options"]) == {}
    prov = json.loads(meta["provenance"])
    assert {"config_name", "step", "date", "training_data", "camera", "source"} <= set(prov) and prov["source"] == "2hded.pt"
    assert torch.int8 in dtypes and json.loads(meta["int8"])
    assert q8.stat().st_size < 0.3 * f32.stat().st_size

    x = twohded.predict.to_image_tensor(photo)
    ref = twohded.load_model(ckpt, device="cpu").predict(x)
    same = twohded.load_model(f32, device="cpu").predict(x)
    approx = twohded.load_model(q8, device="cpu").predict(x)
    np.testing.assert_array_equal(ref.depth, same.depth)
    np.testing.assert_array_equal(ref.aif, same.aif)
    assert np.abs(ref.depth - approx.depth).max() <= 0.05 * np.abs(ref.depth).max() + 1e-6
    assert not np.array_equal(ref.depth, approx.depth)  # really quantised

    # predict and evaluate read it; refusals are one line
    capsys.readouterr()
    assert main(["predict", str(photo), "--checkpoint", str(q8), "-o", str(tmp_path / "p"), "--no-progress"]) == 0
    assert np.allclose(np.load(tmp_path / "p" / "photo_depth.npy"), approx.depth)
    assert main(["evaluate", "--checkpoint", str(f32), "--data", "synthetic", "-O", "n=1", "-O", "height=64",
                 "-O", "width=64", "--no-progress", "-o", str(tmp_path / "ev")]) == 0
    assert main(["export", "--checkpoint", str(ckpt), "--weights", str(f32)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["export", "--checkpoint", str(ckpt), "--weights", str(tmp_path / "m.bin")]) == 2
    assert ".safetensors" in capsys.readouterr().err
    assert main(["train", "--resume", str(f32), "--no-progress"]) == 2
    assert "only a training run's last.pt" in capsys.readouterr().err


def test_broken_weight_files_are_one_line(tmp_path, ckpt, photo):
    from safetensors.torch import save_file

    from twohded.checkpoint import load_checkpoint
    from twohded.errors import InputError

    good = tmp_path / "m.safetensors"
    from twohded.weights import weights_from_checkpoint

    weights_from_checkpoint(load_checkpoint(ckpt), good)
    cases = {
        "truncated.safetensors": good.read_bytes()[: len(good.read_bytes()) // 2],
        "empty.pt": b"",
        "text.pt": b"hello, I am not a checkpoint\n",
        "truncated.pt": ckpt.read_bytes()[:5000],
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(InputError, match=name.replace(".", r"\.")):
            load_checkpoint(tmp_path / name)
    other = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2)}, str(other), metadata={"format": "someone-else"})
    with pytest.raises(InputError, match="not a twohded weights file"):
        load_checkpoint(other)


def test_non_finite_weights_are_refused_at_load(tmp_path, ckpt, photo):
    """A checkpoint with NaN weights used to predict all-NaN depth (an all-zero PNG) with exit 0."""
    from twohded.checkpoint import load_checkpoint, save_checkpoint
    from twohded.weights import weights_from_checkpoint

    state = load_checkpoint(ckpt)
    weights = dict(state["model_state"])
    key = next(k for k, v in weights.items() if v.is_floating_point() and v.ndim == 4)
    weights[key] = weights[key].clone()
    weights[key][0, 0, 0, 0] = float("nan")
    bad = save_checkpoint(tmp_path / "nan.pt", {"model_name": "2hded", "model_options": {}, "model_state": weights})
    line = one_line(cli("predict", photo, "--checkpoint", bad, "-o", tmp_path / "out", "--no-progress"))
    assert "nan.pt" in line and "NaN" in line and key in line
    assert not (tmp_path / "out").exists()
    bad_st = weights_from_checkpoint({**state, "model_state": weights}, tmp_path / "nan.safetensors")
    with pytest.raises(Exception, match="NaN"):
        load_checkpoint(bad_st)


def test_a_nan_depth_map_is_never_written_silently(tmp_path):
    from twohded.errors import InputError
    from twohded.predict import Prediction

    depth = np.ones((40, 40), np.float32)
    depth[3, 4] = np.nan
    with pytest.raises(InputError, match="1 NaN or infinite"):
        Prediction(depth=depth, aif=np.zeros((40, 40, 3), np.float32)).save(tmp_path, "x")
    assert list(tmp_path.iterdir()) == []


def test_old_pickled_rng_states_are_refused_clearly(tmp_path, ckpt):
    """A checkpoint holding a NumPy array (as older versions stored the NumPy RNG state) is
    refused with a line naming the offending type; new checkpoints hold tensors instead."""
    from twohded.checkpoint import FORMAT, load_checkpoint
    from twohded.errors import InputError

    state = torch.load(ckpt, weights_only=True)
    torch.save({**state, "rng_state": {"numpy": np.random.get_state()}}, tmp_path / "old.pt")
    assert state["format"] == FORMAT
    with pytest.raises(InputError, match=r"old\.pt: refused.*numpy"):
        load_checkpoint(tmp_path / "old.pt")

"""Optional dependencies: TensorBoard (extra ``train``) and h5py (extra ``data``) are imported
only where needed; without them, one line names the extra to install."""

from __future__ import annotations

import sys

import pytest

from twohded.cli import main
from twohded.extras import MissingExtraError, require


def test_require_imports_or_names_the_extra(monkeypatch):
    assert require("json", "x", "y").dumps([1]) == "[1]"
    monkeypatch.setitem(sys.modules, "h5py", None)  # as if it were not installed
    with pytest.raises(MissingExtraError, match=r"^reading it needs h5py, which is not installed: pip install 'twohded\[data\]'$"):
        require("h5py", "data", "reading it")


def test_nyu_without_h5py(monkeypatch, tmp_path, capsys):
    from twohded.data import NYUv2

    (tmp_path / "nyu_depth_v2_labeled.mat").write_bytes(b"\0" * 1024)
    monkeypatch.setitem(sys.modules, "h5py", None)
    with pytest.raises(MissingExtraError, match=r"NYU Depth v2 .* pip install 'twohded\[data\]'"):
        NYUv2(tmp_path, "test")
    assert main(["prepare", "nyu", "--root", str(tmp_path), "--out", str(tmp_path / "o"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "twohded[data]" in err


def test_training_without_tensorboard_stops_before_the_run_folder(monkeypatch, tmp_path):
    from tests.test_train import tiny
    from twohded.training import train

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(MissingExtraError, match=r"pip install 'twohded\[train\]'"):
        train(tiny(tmp_path), verbose=False)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_predicting_imports_neither(tmp_path):
    """A user who only predicts needs neither h5py nor TensorBoard."""
    import subprocess

    code = (
        "import sys, torch\n"
        "from twohded.models import create_model\n"
        "from twohded.predict import Predictor\n"
        "Predictor(create_model('2hded-depth').eval(), device='cpu').predict(torch.rand(3, 32, 32))\n"
        "import twohded.cli.predict, twohded.app, twohded.data\n"
        "bad = [m for m in ('h5py', 'tensorboard', 'torch.utils.tensorboard') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path)

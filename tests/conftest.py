"""Shared pytest fixtures (keep this file small)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    """``$TWOHDED_SHARED/data`` if the variable is set, else ``../shared/data`` beside the repo."""
    shared = os.environ.get("TWOHDED_SHARED")
    return Path(shared) / "data" if shared else REPO_ROOT.parent / "shared" / "data"


@pytest.fixture
def dfd_root() -> Path:
    """The real DFD indoor dataset, or skip with a message."""
    path = shared_data_dir() / "dfd_indoor"
    if not (path / "dfd_dataset_indoor_N2_8").is_dir():
        pytest.skip(f"../shared/data/dfd_indoor not found ({path}): the real DFD test needs the shared data")
    return path


@pytest.fixture(scope="session")
def ckpt(tmp_path_factory):
    """A randomly initialised ``2hded`` saved as a twohded checkpoint (evaluate / predict tests)."""
    import torch

    from twohded.checkpoint import save_checkpoint
    from twohded.models import create_model

    d = tmp_path_factory.mktemp("ckpt")
    torch.manual_seed(0)
    model = create_model("2hded")
    save_checkpoint(d / "2hded.pt", {"model_name": "2hded", "model_options": {}, "model_state": model.state_dict()})
    return d / "2hded.pt"

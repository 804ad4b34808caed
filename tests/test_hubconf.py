"""hubconf.py: torch.hub entry points, loaded as users load them (source="local")."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from twohded.errors import InputError
from twohded.models import TwoHDEDNet

REPO = str(Path(__file__).resolve().parents[1])


def test_hub_lists_and_builds_the_model():
    model = torch.hub.load(REPO, "twohded", source="local", pretrained=False)
    assert isinstance(model, TwoHDEDNet) and not model.training
    assert sum(p.numel() for p in model.parameters()) == 41_414_400  # the authors' network
    with torch.no_grad():
        out = model(torch.rand(1, 3, 64, 64))
    assert out.depth.shape == (1, 1, 64, 64) and out.aif.shape == (1, 3, 64, 64)
    depth_only = torch.hub.load(REPO, "twohded", source="local", name="2hded-depth")
    assert depth_only.outputs == ("depth",)
    untrained = torch.hub.load(REPO, "dfd_indoor", source="local", pretrained=False)
    assert isinstance(untrained, TwoHDEDNet)


def test_hub_pretrained_and_load_model(ckpt):
    with pytest.raises(InputError, match="no weights ship yet"):
        torch.hub.load(REPO, "dfd_indoor", source="local")
    predictor = torch.hub.load(REPO, "load_model", str(ckpt), source="local", device="cpu")
    result = predictor.predict(torch.rand(3, 40, 48))
    assert result.depth.shape == (40, 48)

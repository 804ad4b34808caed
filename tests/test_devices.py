"""twohded.devices: the one mapping of ``--device`` / ``train.device`` names."""

from __future__ import annotations

import pytest
import torch

from twohded.devices import device_type, resolve_device
from twohded.errors import InputError


def test_names_resolve():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    auto = resolve_device(None)
    assert auto.type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert device_type("cuda:3") == "cuda" and device_type("cpu") == "cpu"
    assert device_type("auto") == auto.type


def test_bad_names_are_one_line_errors_naming_the_option():
    with pytest.raises(InputError, match=r"^--device gpu0: not a device name"):
        resolve_device("gpu0")
    with pytest.raises(InputError, match=r"^train.device=nonsense: not a device name"):
        resolve_device("nonsense", option="train.device")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without a GPU")
def test_cuda_without_a_gpu():
    with pytest.raises(InputError, match=r"^--device cuda: no CUDA GPU is available here \(use --device cpu\)"):
        resolve_device("cuda")
    with pytest.raises(InputError, match=r"train.device=cuda:1: no CUDA GPU .*use train.device=cpu"):
        resolve_device("cuda:1", option="train.device", index=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_index_fills_an_unnumbered_cuda_device():
    assert resolve_device("cuda", index=0) == torch.device("cuda", 0)
    assert resolve_device("cuda") == torch.device("cuda")
    with pytest.raises(InputError, match="CUDA device"):
        resolve_device(f"cuda:{torch.cuda.device_count()}")

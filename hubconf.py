"""torch.hub entry points of twohded (2HDED:NET: depth and all-in-focus image from one defocused photo).

    import torch
    model = torch.hub.load("path/to/twohded", "twohded", source="local", pretrained=False)
    out = model(images)            # images (B, 3, H, W) in [0, 1] -> out.depth (B, 1, H, W) metres, out.aif
    predictor = torch.hub.load("path/to/twohded", "load_model", "runs/dfd_real/best.pt", source="local")

The library does the work (``twohded.create_model``, ``twohded.load_model``); this file only
composes it. Run from a clone without installing: ``src/`` is put on ``sys.path`` when
``twohded`` is not importable.
"""

from __future__ import annotations

import sys
from pathlib import Path

dependencies = ["torch", "numpy", "PIL", "scipy", "yaml"]

try:
    import twohded as _twohded  # noqa: F401
except ImportError:  # a plain clone: use its src/
    sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))


def twohded(pretrained: bool = False, name: str = "2hded", **options):
    """2HDED:NET as an ``nn.Module`` (eval mode): ``forward((B, 3, H, W) in [0, 1])`` -> ``.depth``
    ``(B, 1, H, W)`` metres and ``.aif`` ``(B, 3, H, W)``.

    Args:
        pretrained: load the shipped ``"dfd-indoor"`` weights (none ship yet: a clear error).
        name: ``"2hded"``, ``"2hded-depth"`` or ``"2hded-aif"`` (``twohded.list_models()``).
        **options: ``twohded.create_model`` options, e.g. ``encoder_weights="imagenet"``
            (downloads torchvision's DenseNet-121 on request, hash-checked).
    """
    if pretrained:
        return dfd_indoor(pretrained=True)
    from twohded.models import create_model

    return create_model(name, **options).eval()


def dfd_indoor(pretrained: bool = True):
    """2HDED:NET trained on DFD indoor (real f/2.8 defocus) as an ``nn.Module`` (eval mode).

    ``pretrained=False`` gives the same architecture untrained. No weights ship yet: with
    ``pretrained=True`` this raises ``twohded.InputError`` saying so.
    """
    if not pretrained:
        return twohded(pretrained=False)
    from twohded.checkpoint import load_checkpoint, model_from_checkpoint
    from twohded.pretrained import resolve_checkpoint

    return model_from_checkpoint(load_checkpoint(resolve_checkpoint("dfd-indoor"))).eval()


def load_model(checkpoint, **kwargs):
    """``twohded.load_model``: a checkpoint path, run folder, URL (hash-checked) or shipped name
    as a ``twohded.Predictor`` (``.predict(image)`` -> depth in metres and all-in-focus image)."""
    from twohded.predict import load_model as _load_model

    return _load_model(checkpoint, **kwargs)

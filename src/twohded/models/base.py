"""The base class of every twohded model, and its output type.

A :class:`DefocusModel` takes ``(B, 3, H, W)`` images in ``[0, 1]`` of any size and returns a
:class:`ModelOutput`. It declares, as class attributes (or properties, when they depend on
the instance, e.g. after :meth:`~twohded.models.twohded.TwoHDEDNet.drop_head`):

- ``outputs``: the fields of :class:`ModelOutput` it fills, e.g. ``("depth", "aif")``;
- ``needs_depth``: True when ``forward(image, depth=...)`` must be given the true
  ``(B, 1, H, W)`` depth in metres (an oracle baseline); the evaluation passes it;
- ``stride``: the total down-sampling factor: inputs are padded internally to a multiple of
  it (the exported ONNX graph needs ``H`` and ``W`` multiples of it); 1 for a network that
  keeps the resolution.

The training loop, the evaluation, the fast path, the predictor and the exporter read these
declarations; they accept only :class:`DefocusModel` instances (:func:`check_model`).
"""

from __future__ import annotations

from typing import NamedTuple, Optional

from torch import Tensor, nn

from twohded.errors import InputError

__all__ = ["DefocusModel", "ModelOutput", "check_model"]


class ModelOutput(NamedTuple):
    """Result of a forward pass; a field is ``None`` when the model has no such head.

    Attributes:
        depth: ``(B, 1, H, W)`` metres (linear, not clamped).
        aif: ``(B, 3, H, W)`` all-in-focus image, ``[0, 1]`` scale (clamped to ``[0, 1]`` in
            eval mode when ``clamp_aif``; unclamped in training mode so the loss sees it raw).
    """

    depth: Optional[Tensor] = None
    aif: Optional[Tensor] = None


class DefocusModel(nn.Module):
    """Base class: a single defocused image -> depth and/or all-in-focus image (see module docstring)."""

    #: fields of :class:`ModelOutput` this model fills
    outputs: tuple[str, ...] = ()
    #: ``forward(image, depth=...)`` needs the true depth (oracle baselines)
    needs_depth: bool = False
    #: total stride: inputs are padded internally to a multiple of it
    stride: int = 1


def check_model(model, purpose: str = "this") -> DefocusModel:
    """``model`` itself if it is a :class:`DefocusModel`, else :class:`InputError`."""
    if not isinstance(model, DefocusModel):
        raise InputError(
            f"{purpose} needs a twohded model (a twohded.models.DefocusModel declaring outputs, needs_depth "
            f"and stride), got {type(model).__name__}"
        )
    return model

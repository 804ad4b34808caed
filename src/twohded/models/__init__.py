"""2HDED:NET models: ``create_model(name, **options)``, ``list_models()``, ``register_model``.

Names: ``2hded`` (both heads, default), ``2hded-depth`` (depth head only, D3-Net-like),
``2hded-aif`` (all-in-focus head only); baselines ``dncnn`` and ``ircnn`` (all-in-focus only,
docs/baselines.md). ``model(image)`` takes ``(B, 3, H, W)`` in ``[0, 1]``
and returns :class:`ModelOutput` (``depth`` ``(B, 1, H, W)`` metres, ``aif`` ``(B, 3, H, W)``).
Every model subclasses :class:`DefocusModel` (:mod:`twohded.models.base`), which declares
``outputs``, ``needs_depth`` and ``stride``.
"""

from __future__ import annotations

from twohded.models.base import DefocusModel, check_model
from twohded.models.registry import DEFAULT_MODEL, ModelInfo, create_model, list_models, model_info, register_model
from twohded.models.encoder import DenseNetEncoder, load_encoder_weights
from twohded.models.decoder import DecoderBlock, UNetDecoder
from twohded.models.twohded import HEADS, ModelOutput, TwoHDEDNet, count_parameters, init_weights
from twohded.models.dncnn import ResidualCNN  # registers "dncnn"
from twohded.models import ircnn as _ircnn  # noqa: F401  registers "ircnn"

__all__ = [
    "DEFAULT_MODEL",
    "HEADS",
    "DecoderBlock",
    "DefocusModel",
    "DenseNetEncoder",
    "ModelInfo",
    "ModelOutput",
    "ResidualCNN",
    "TwoHDEDNet",
    "UNetDecoder",
    "check_model",
    "count_parameters",
    "create_model",
    "init_weights",
    "list_models",
    "load_encoder_weights",
    "model_info",
    "register_model",
]

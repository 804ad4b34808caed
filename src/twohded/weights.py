"""The inference format for sharing a trained model: one ``.safetensors`` file, no pickle.

A weights file holds the model's state dict (the EMA weights if the checkpoint had them) as
safetensors tensors and, in the safetensors metadata (strings only)::

    format           "twohded-weights/1"
    model_name       registry name, e.g. "2hded"
    model_options    JSON object passed to create_model (besides the name)
    provenance       JSON object: config_name, step, epoch, date (UTC, ISO 8601, of the export),
                     training_data (dataset name and root), camera (renderer preset), source
                     (the checkpoint's file name), ema (whether the EMA weights were taken)
    int8             JSON list of the tensor names stored as int8 ("[]" for a float file)

With ``int8=True`` the weights are quantised by :mod:`twohded.quantize`: every floating tensor
with two or more dimensions (convolution / linear weights) symmetrically per slice along dim 0,
``q = round(w / s)`` in [-127, 127] with ``s = max|w_slice| / 127``; ``q`` is stored under the
tensor's name as int8 and ``s`` under ``<name>.int8_scale`` as float32. :func:`load_weights`
dequantises (``w = q * s``), so the model runs in float32 as usual. Everything else (biases,
BatchNorm) stays float32. See docs/formats.md for sizes and errors.

Reading a file never runs code: safetensors is a JSON header plus raw tensor bytes.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from pathlib import Path
from typing import Any

import torch

from .errors import InputError
from .io import atomic_write
from .quantize import SCALE_SUFFIX, dequantize_int8, quantize_int8

FORMAT = "twohded-weights/1"

__all__ = ["FORMAT", "save_weights", "load_weights", "weights_from_checkpoint", "provenance"]


def provenance(state: dict[str, Any], use_ema: bool) -> dict[str, Any]:
    """Where a checkpoint's weights came from (see the module docstring), plain JSON types."""
    config = state.get("config") or {}
    data = config.get("data") or {}
    return {
        "config_name": config.get("name"),
        "step": state.get("step"),
        "epoch": state.get("epoch"),
        "date": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
        "training_data": {"name": data.get("name"), "root": data.get("root")} if data else None,
        "camera": data.get("preset"),
        "source": Path(str(state.get("path", ""))).name or None,
        "ema": bool(use_ema and state.get("ema_state")),
    }


def save_weights(
    path: str | os.PathLike,
    weights: dict[str, torch.Tensor],
    model_name: str,
    model_options: dict[str, Any],
    provenance: dict[str, Any] | None = None,
    int8: bool = False,
) -> Path:
    """Write a weights file (see the module docstring) atomically; returns its path."""
    from safetensors.torch import save_file

    path = Path(path)
    weights = {name: value.detach().cpu().contiguous() for name, value in weights.items()}
    tensors = quantize_int8(weights) if int8 else weights
    quantized = sorted(k[: -len(SCALE_SUFFIX)] for k in tensors if k.endswith(SCALE_SUFFIX))
    metadata = {
        "format": FORMAT,
        "model_name": str(model_name),
        "model_options": json.dumps(model_options, sort_keys=True),
        "provenance": json.dumps(provenance or {}, sort_keys=True),
        "int8": json.dumps(quantized),
    }
    from safetensors import SafetensorError

    from .io import free_space

    try:
        with atomic_write(path) as tmp:
            save_file(tensors, str(tmp), metadata=metadata)
    except SafetensorError as exc:  # I/O errors (a full disk) come wrapped
        raise InputError(f"{path}: cannot write: {exc} ({free_space(path.parent)}; nothing written)") from None
    return path


def weights_from_checkpoint(state: dict[str, Any], out: str | os.PathLike, use_ema: bool = True,
                            int8: bool = False) -> Path:
    """Write the weights file of a loaded checkpoint dict (:func:`twohded.checkpoint.load_checkpoint`)."""
    weights = state.get("ema_state") if use_ema and state.get("ema_state") else state["model_state"]
    return save_weights(out, weights, state["model_name"], dict(state["model_options"]),
                        provenance(state, use_ema), int8=int8)


def _read(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as fh:
            metadata = dict(fh.metadata() or {})
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        first = (str(exc).strip().splitlines() or [""])[0]
        raise InputError(f"{path}: not a readable .safetensors file ({first})") from None
    return tensors, metadata


def load_weights(path: str | os.PathLike) -> dict[str, Any]:
    """Read a weights file into the dict layout of :func:`twohded.checkpoint.load_checkpoint`.

    Keys: ``format`` (the checkpoint format), ``model_name``, ``model_options``,
    ``model_state`` (float32, int8 tensors dequantised), ``provenance``, ``step``, ``path``.
    Raises :class:`InputError` (one line naming the file) for a file that is not a twohded
    weights file, lacks metadata, or holds NaN / infinite weights.
    """
    from .checkpoint import FORMAT as CHECKPOINT_FORMAT, check_finite_weights

    path = Path(path)
    tensors, meta = _read(path)
    if meta.get("format") != FORMAT:
        raise InputError(f"{path}: not a twohded weights file (metadata format is {meta.get('format')!r}, "
                         f"expected {FORMAT!r})")
    try:
        options = json.loads(meta["model_options"])
        prov = json.loads(meta.get("provenance") or "{}")
        quantized = json.loads(meta.get("int8") or "[]")
        name = meta["model_name"]
    except (KeyError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: broken twohded weights metadata ({type(exc).__name__}: {exc})") from None
    if not isinstance(options, dict) or not isinstance(quantized, list):
        raise InputError(f"{path}: broken twohded weights metadata (model_options or int8 of the wrong type)")
    for key in quantized:
        q, scale = tensors.get(key), tensors.get(f"{key}{SCALE_SUFFIX}")
        if q is None or scale is None or q.dtype != torch.int8 or scale.numel() != q.shape[0]:
            raise InputError(f"{path}: int8 tensor {key} lacks a matching {key}{SCALE_SUFFIX}")
    state_dict = dequantize_int8(tensors) if quantized else tensors
    check_finite_weights(state_dict, path)
    return {
        "format": CHECKPOINT_FORMAT, "model_name": name, "model_options": options, "model_state": state_dict,
        "provenance": prov, "step": prov.get("step") if isinstance(prov, dict) else None, "path": str(path),
    }

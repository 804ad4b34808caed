"""Checkpoint files: one format for training, resuming, evaluation, prediction and export.

A checkpoint is a ``torch.save`` dict with these keys (only the first four are required)::

    format          "twohded-checkpoint/1"
    model_name      registry name, e.g. "2hded"
    model_options   dict passed to create_model (besides the name)
    model_state     state_dict of the model (EMA weights under "ema_state" if used)
    config          the resolved experiment config (plain dict) or None
    step, epoch     training progress (ints)
    metrics         last validation metrics (dict) or {}
    optimizer_state, scheduler_state, scaler_state, ema_state, rng_state: for exact resume

Every value is a tensor or a plain Python value (dict, list, tuple, str, int, float, bool,
None): the random states of Python and NumPy are stored as lists and tensors, so checkpoints
are read with ``torch.load(..., weights_only=True)`` and a file cannot run code when opened.
:func:`load_checkpoint` also reads the pickle-free inference format of :mod:`twohded.weights`
(``.safetensors``) into the same dict layout, and refuses non-finite weights.

Files are written atomically: a reader never sees a half-written checkpoint. See docs/formats.md.
"""

from __future__ import annotations

import os
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import InputError
from .io import atomic_write, free_space

FORMAT = "twohded-checkpoint/1"
REQUIRED = ("format", "model_name", "model_options", "model_state")


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write ``state`` (see module docstring) to ``path`` atomically; returns the path."""
    state = {"format": FORMAT, **state}
    missing = [k for k in REQUIRED if k not in state]
    if missing:
        raise ValueError(f"checkpoint state lacks {missing}")
    path = Path(path)
    try:
        with atomic_write(path) as tmp:
            torch.save(state, tmp)
    except RuntimeError as exc:  # torch's zip writer reports a full disk as a RuntimeError
        first = (str(exc).strip().splitlines() or [""])[0]
        raise InputError(f"{path}: cannot write the checkpoint ({first}; {free_space(path.parent)}); "
                         "nothing written") from None
    return path


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read and validate a checkpoint; :class:`InputError` names the file and the problem."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: checkpoint file does not exist")
    if path.is_dir():
        for name in ("best.pt", "last.pt"):
            if (path / name).exists():
                path = path / name
                break
        else:
            raise InputError(f"{path}: folder holds no best.pt or last.pt checkpoint")
    kind = file_kind(path)
    if kind == "safetensors":
        from .weights import load_weights

        return load_weights(path)
    if kind != "torch":
        raise InputError(f"{path}: not a readable checkpoint: neither a twohded .pt (a zip archive) "
                         "nor a .safetensors weights file")
    state = _torch_load(path, map_location)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise InputError(f"{path}: not a twohded checkpoint (expected format {FORMAT!r})")
    missing = [k for k in REQUIRED if k not in state]
    if missing:
        raise InputError(f"{path}: checkpoint lacks {', '.join(missing)}")
    for key in ("model_state", "ema_state"):
        if state.get(key):
            check_finite_weights(state[key], path)
    state["path"] = str(path)
    return state


def file_kind(path: Path) -> str:
    """``"torch"`` (a zip archive, as ``torch.save`` writes), ``"safetensors"`` or ``"unknown"``, by content."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(9)
    except OSError as exc:
        raise InputError(f"{path}: cannot read checkpoint: {exc.strerror or exc}") from None
    if head[:4] == b"PK\x03\x04":
        return "torch"
    if len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < 100_000_000:
        return "safetensors"
    return "unknown"


def _torch_load(path: Path, map_location) -> Any:
    """``torch.load(weights_only=True)`` with every failure as one :class:`InputError` line."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        what = f"it asks for {found.group(1)}" if found else "an unsupported pickle instruction"
        raise InputError(
            f"{path}: refused: the checkpoint holds Python objects other than tensors and plain values ({what}); "
            "twohded unpickles no objects, so that no file can run code when opened"
        ) from None
    except (zipfile.BadZipFile, EOFError, RuntimeError, OSError, ValueError, TypeError, KeyError) as exc:
        first = (str(exc).strip().splitlines() or [""])[0]
        raise InputError(f"{path}: not a readable checkpoint ({type(exc).__name__}: {first})") from None


def check_finite_weights(weights: dict[str, Any], path: str | os.PathLike) -> None:
    """Raise :class:`InputError` naming ``path`` and a tensor if any floating weight is NaN or infinite."""
    bad = [k for k, v in weights.items()
           if isinstance(v, torch.Tensor) and v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise InputError(f"{path}: {len(bad)} weight tensor(s) hold NaN or infinite values (e.g. {bad[0]}); "
                         "the checkpoint is broken")


def model_from_checkpoint(
    checkpoint: str | os.PathLike | dict[str, Any],
    expect_name: str | None = None,
    use_ema: bool = True,
    map_location: str | torch.device = "cpu",
) -> nn.Module:
    """Build the model a checkpoint describes and load its weights (eval mode, on CPU).

    Args:
        checkpoint: a path (file, or run folder with best.pt / last.pt) or a loaded dict.
        expect_name: if given, refuse a checkpoint of another model variant.
        use_ema: load the EMA weights when the checkpoint has them.
    """
    from .models import create_model

    state = checkpoint if isinstance(checkpoint, dict) else load_checkpoint(checkpoint, map_location)
    where = state.get("path", "checkpoint")
    name = state["model_name"]
    if expect_name is not None and name != expect_name:
        raise InputError(f"{where}: holds a {name!r} model, not {expect_name!r}")
    model = create_model(name, **dict(state["model_options"]))
    weights = state.get("ema_state") if use_ema and state.get("ema_state") else state["model_state"]
    try:
        model.load_state_dict(weights)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise InputError(f"{where}: weights do not fit model {name!r}: {first}") from None
    return model.eval()

"""Device names -> :class:`torch.device`: one place for ``--device`` and ``train.device``."""

from __future__ import annotations

import torch

from .errors import InputError

__all__ = ["device_type", "resolve_device"]


def device_type(name: str | torch.device | None) -> str:
    """``"cuda"``, ``"mps"`` or ``"cpu"`` of a device name (``None`` / ``"auto"``: CUDA if available)."""
    if name is None or str(name) == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    text = str(name)
    return "cuda" if text.startswith("cuda") else ("mps" if text.startswith("mps") else "cpu")


def resolve_device(device: str | torch.device | None = None, *, option: str = "--device",
                   index: int | None = None) -> torch.device:
    """``None`` / ``"auto"``: CUDA if available, else CPU; otherwise the named device.

    Args:
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps`` or a :class:`torch.device`.
        option: how the user gave it, for messages (``"--device"``, ``"train.device"``).
        index: the CUDA device to use when the name gives none (the trainer passes its local
            rank, so ``auto`` / ``cuda`` become ``cuda:<local rank>``); None: leave it unset.

    Raises :class:`InputError` for an unknown device, a CUDA device without a GPU or an
    index beyond the GPUs present.
    """
    given = f"{option}={device}" if not option.startswith("-") else f"{option} {device}"
    if device is None or str(device) == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise InputError(f"{given}: not a device name ({exc})") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"{given}: no CUDA GPU is available here (use {option}{'=' if '=' in given else ' '}cpu)")
        if dev.index is None and index is not None:
            dev = torch.device("cuda", index)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise InputError(f"{given}: only {torch.cuda.device_count()} CUDA device(s) here")
    elif dev.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise InputError(f"{given}: MPS is not available here")
    return dev

"""Int8 weights: symmetric per-slice quantisation of a state dict, and its inverse.

A floating tensor with two or more dimensions (conv / linear / transposed-conv weights) is
stored as ``int8`` values ``q`` and one ``float32`` scale per slice along dim 0 (output
channels of ``Conv2d`` / ``Linear``, input channels of ``ConvTranspose2d``): ``w ~ q * scale``,
``scale = max|w_slice| / 127``. Everything else (biases, BatchNorm statistics, integer
buffers) is kept as it is. Quantising an already-dequantised state again gives the same
``q`` and scales (up to float rounding of the scale), so int8 is a fixed point.
"""

from __future__ import annotations

import torch

__all__ = ["SCALE_SUFFIX", "quantize_int8", "dequantize_int8", "is_quantized"]

SCALE_SUFFIX = ".int8_scale"


def _quantizable(t: torch.Tensor) -> bool:
    return t.is_floating_point() and t.ndim >= 2


def quantize_int8(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` -> a state of plain tensors: int8 weights plus ``name + SCALE_SUFFIX`` scales ``(C0,)``."""
    out: dict[str, torch.Tensor] = {}
    for name, t in state.items():
        t = t.detach().cpu()
        if not _quantizable(t):
            out[name] = t.clone()
            continue
        flat = t.float().reshape(t.shape[0], -1)
        scale = flat.abs().amax(dim=1) / 127.0
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))
        q = torch.round(flat / scale[:, None]).clamp_(-127, 127).to(torch.int8)
        out[name] = q.reshape(t.shape)
        out[name + SCALE_SUFFIX] = scale.float()
    return out


def is_quantized(state: dict[str, torch.Tensor]) -> bool:
    return any(k.endswith(SCALE_SUFFIX) for k in state)


def dequantize_int8(state: dict[str, torch.Tensor], dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """Inverse of :func:`quantize_int8`: int8 weights times their scales, in ``dtype``."""
    out: dict[str, torch.Tensor] = {}
    for name, t in state.items():
        if name.endswith(SCALE_SUFFIX):
            continue
        scale = state.get(name + SCALE_SUFFIX)
        if scale is None:
            out[name] = t
        else:
            shape = (t.shape[0],) + (1,) * (t.ndim - 1)
            out[name] = (t.float() * scale.float().reshape(shape)).to(dtype)
    return out

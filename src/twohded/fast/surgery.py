"""Module surgery of the fast path: each function changes a model in place and returns a count.

BatchNorm folding (:func:`fold_batchnorm`), convolution weights in the autocast dtype
(:func:`cast_conv_weights`), float32 output heads (:class:`Float32`, :func:`float32_heads`),
GEMM output heads (:class:`GemmHead`, :func:`gemm_heads`) and fused convolution + bias + ReLU
(:class:`ConvReLU`, :func:`fuse_conv_relu`). They know the layouts of :mod:`twohded.models`;
other modules are left alone. See :mod:`twohded.fast` for when each is used.
"""

from __future__ import annotations

import logging
from typing import Optional

import torch
from torch import Tensor, nn

from ..errors import InputError

log = logging.getLogger("twohded.fast")

__all__ = [
    "HEAD_ATTRIBUTES",
    "ConvReLU",
    "Float32",
    "GemmHead",
    "cast_conv_weights",
    "first_line",
    "float32_heads",
    "fold_batchnorm",
    "fuse_conv_relu",
    "gemm_heads",
]


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (at most 300 characters), for notes and logs."""
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else ""


def _conv_bn_pairs(model: nn.Module) -> list[tuple[nn.Module, str, str]]:
    """(parent, conv attribute, batchnorm attribute) where the BN directly follows the conv."""
    from ..models.decoder import DecoderBlock
    from ..models.encoder import DenseNetEncoder, _DenseLayer

    pairs: list[tuple[nn.Module, str, str]] = []
    for m in model.modules():
        if isinstance(m, _DenseLayer):
            pairs.append((m, "conv1", "norm2"))  # conv1 -> norm2 -> relu2 -> conv2
        elif isinstance(m, DecoderBlock):
            pairs += [(m, "conv1", "bn1"), (m, "conv2", "bn2")]  # conv -> BN -> [dropout] -> ReLU
        elif isinstance(m, DenseNetEncoder):
            pairs += [(m.features, "conv0", "norm0"), (m.features, "downconv0", "norm1")]
    return pairs


def fold_batchnorm(model: nn.Module) -> int:
    """Fold eval-mode BatchNorms that directly follow a convolution into it, in place.

    Knows the layouts of :mod:`twohded.models` (DenseNet encoder, U-Net decoder); other
    modules are left alone. The folded BatchNorms become ``nn.Identity``. Returns how many
    were folded. The model must be in eval mode (BatchNorm uses its running statistics).
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    done = 0
    for parent, conv_name, bn_name in _conv_bn_pairs(model):
        conv, bn = getattr(parent, conv_name, None), getattr(parent, bn_name, None)
        if type(bn) is not nn.BatchNorm2d or type(conv) not in (nn.Conv2d, nn.ConvTranspose2d):
            continue
        if bn.training or conv.training or bn.running_mean is None or bn.running_var is None:
            continue
        fused = fuse_conv_bn_eval(conv, bn, transpose=isinstance(conv, nn.ConvTranspose2d))
        setattr(parent, conv_name, fused)
        setattr(parent, bn_name, nn.Identity())
        done += 1
    return done


def cast_conv_weights(model: nn.Module, dtype: torch.dtype) -> int:
    """Store the weights and biases of every ``Conv2d`` / ``ConvTranspose2d`` in ``dtype``, in place.

    Under autocast to ``dtype`` this changes nothing numerically (autocast casts them to
    ``dtype`` on every call); it removes those casts. Convolutions inside a :class:`Float32`
    or :class:`GemmHead` are left in float32. Returns the number of convolutions cast.
    """
    keep = {id(m) for w in model.modules() if isinstance(w, (Float32, GemmHead)) for m in w.modules()}
    n = 0
    for m in model.modules():
        if type(m) in (nn.Conv2d, nn.ConvTranspose2d) and id(m) not in keep:
            m.to(dtype)
            n += 1
    return n


class Float32(nn.Module):
    """Runs ``inner`` in float32 with autocast off (its input cast to float32)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: Tensor) -> Tensor:
        with torch.autocast(x.device.type, enabled=False):
            return self.inner(x.float())


#: output layers that :func:`float32_heads` wraps (attributes of the top-level model)
HEAD_ATTRIBUTES = ("depth_head", "aif_head")


def float32_heads(model: nn.Module) -> int:
    """Wrap the model's output convolutions (:data:`HEAD_ATTRIBUTES`) in :class:`Float32`, in place."""
    n = 0
    for name in HEAD_ATTRIBUTES:
        head = getattr(model, name, None)
        if isinstance(head, nn.Module) and not isinstance(head, Float32):
            setattr(model, name, Float32(head))
            n += 1
    return n


class GemmHead(nn.Module):
    """A 3x3 output convolution with few output channels (``depth_head``: 1, ``aif_head``: 3) as
    one GEMM with float32 accumulation and float32 output, then nine shifted adds.

    cuDNN runs a 3x3 convolution to 1 or 3 channels at a few percent of the GPU's rate (it was
    1.9 ms of a 16.9 ms 480x640 batch-8 forward pass on an H100, as a float32 convolution).
    Here the ``(B, C, H, W)`` bf16 channels-last input is read once as a ``(B*H*W, C)`` matrix
    and multiplied by the ``(C, 9 * C_out)`` matrix of the kernel's nine taps
    (``torch.mm(..., out_dtype=torch.float32)``), each tap's plane is then added at its offset.
    The weights are split into a bf16 high part and a bf16 low part (``w = hi + lo`` to about
    2^-17), so the result is the float32 convolution of the bf16 input up to summation order.

    Any other input (CPU, float32, NCHW) or a torch without ``mm(..., out_dtype=)`` runs the
    float32 convolution (as :class:`Float32`). ``(B, C, H, W)`` -> ``(B, C_out, H, W)`` float32.
    """

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        if not (type(conv) is nn.Conv2d and conv.kernel_size == (3, 3) and conv.stride == (1, 1) and conv.padding == (1, 1)
                and conv.dilation == (1, 1) and conv.groups == 1):
            raise InputError(f"GemmHead: needs a Conv2d(3x3, stride 1, padding 1), got {conv}")
        self.conv = conv.float()
        w = conv.weight.detach().float()  # (O, C, 3, 3)
        o, c = w.shape[:2]
        taps = w.permute(1, 2, 3, 0).reshape(c, 9 * o)  # column (kh * 3 + kw) * O + o
        hi = taps.to(torch.bfloat16)
        lo = (taps - hi.float()).to(torch.bfloat16)
        self.register_buffer("taps", torch.cat([hi, lo], 1), persistent=False)  # (C, 18 * O)
        bias = conv.bias.detach().float() if conv.bias is not None else w.new_zeros(o)
        self.register_buffer("bias", bias.view(1, o, 1, 1), persistent=False)
        self.out_channels = o

    def _gemm_ok(self, x: Tensor) -> bool:
        return (x.is_cuda and x.dtype == torch.bfloat16 and x.dim() == 4
                and x.is_contiguous(memory_format=torch.channels_last) and _MM_OUT_DTYPE[0] is not False)

    def forward(self, x: Tensor) -> Tensor:
        if self._gemm_ok(x):
            try:
                out = self._gemm(x)
                _MM_OUT_DTYPE[0] = True
                return out
            except (RuntimeError, TypeError, NotImplementedError) as exc:  # no mm(..., out_dtype=) here
                if _MM_OUT_DTYPE[0]:
                    raise
                _MM_OUT_DTYPE[0] = False
                log.warning("fast path: GemmHead falls back to the float32 convolution: %s", first_line(exc))
        with torch.autocast(x.device.type, enabled=False):
            return self.conv(x.float())

    def _gemm(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        o = self.out_channels
        with torch.autocast(x.device.type, enabled=False):
            z = torch.mm(x.permute(0, 2, 3, 1).reshape(-1, c), self.taps.to(x.dtype), out_dtype=torch.float32)
            if torch.compiler.is_compiling():
                return self._shift_sum_fused(z, b, h, w)
            z = z[:, : 9 * o] + z[:, 9 * o:]  # hi + lo taps
            planes = z.view(b, h, w, 9, o).permute(0, 3, 4, 1, 2).contiguous()  # (B, 9, O, H, W)
            y = planes[:, 4] + self.bias  # the centre tap (kh = kw = 1)
            for k in range(9):
                dh, dw = k // 3 - 1, k % 3 - 1
                if dh == 0 and dw == 0:
                    continue
                h0, h1, w0, w1 = max(0, -dh), h - max(0, dh), max(0, -dw), w - max(0, dw)
                y[:, :, h0:h1, w0:w1] += planes[:, k, :, h0 + dh:h1 + dh, w0 + dw:w1 + dw]
            return y

    def _shift_sum_fused(self, z: Tensor, b: int, h: int, w: int) -> Tensor:
        """The nine shifted adds as one expression over the GEMM output ``(B*H*W, 18 * O)``, for
        torch.compile: inductor turns it into a single kernel that reads ``z`` once (the eager
        form above materialises the planes first, which compiled cost 0.7 ms of 9.3 at 480x640
        batch 8)."""
        o = self.out_channels
        z = z.view(b, h, w, 2, 9, o)
        z = z[:, :, :, 0] + z[:, :, :, 1]  # hi + lo taps: (B, H, W, 9, O)
        zp = torch.nn.functional.pad(z, (0, 0, 0, 0, 1, 1, 1, 1))  # zero border in W and H
        y = zp[:, 0:h, 0:w, 0]
        for k in range(1, 9):
            kh, kw = divmod(k, 3)
            y = y + zp[:, kh:kh + h, kw:kw + w, k]
        return y.permute(0, 3, 1, 2) + self.bias  # (B, O, H, W), channels-last strides


#: whether ``torch.mm(..., out_dtype=torch.float32)`` works here (None: not tried yet)
_MM_OUT_DTYPE: list[Optional[bool]] = [None]


def gemm_heads(model: nn.Module) -> int:
    """Replace the model's output convolutions (:data:`HEAD_ATTRIBUTES`, bare or inside a
    :class:`Float32`) by :class:`GemmHead`, in place. Returns how many were replaced."""
    n = 0
    for name in HEAD_ATTRIBUTES:
        head = getattr(model, name, None)
        conv = head.inner if isinstance(head, Float32) else head
        if type(conv) is nn.Conv2d:
            try:
                setattr(model, name, GemmHead(conv))
            except InputError:
                continue
            n += 1
    return n


class ConvReLU(nn.Module):
    """``relu(conv(x))`` in one cuDNN call (``torch.cudnn_convolution_relu``: convolution, bias
    and ReLU fused) on CUDA; the two separate operations elsewhere or if cuDNN refuses.

    After BatchNorm folding every such convolution has a bias, which an eager PyTorch
    convolution adds in a kernel of its own (3.5 ms, plus 2.0 ms of ReLUs, of a 16.9 ms
    480x640 batch-8 forward pass on an H100).
    """

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        self.conv = conv

    def forward(self, x: Tensor) -> Tensor:
        c = self.conv
        if x.is_cuda and _CUDNN_RELU[0] is not False and c.bias is not None and not torch.is_grad_enabled():
            try:
                w = c.weight
                if torch.is_autocast_enabled(x.device.type):
                    dt = torch.get_autocast_dtype(x.device.type)
                    x, w = x.to(dt), w.to(dt)
                out = torch.cudnn_convolution_relu(x, w, c.bias.to(w.dtype), c.stride, c.padding, c.dilation, c.groups)
                _CUDNN_RELU[0] = True
                return out
            except RuntimeError as exc:
                if _CUDNN_RELU[0]:
                    raise
                _CUDNN_RELU[0] = False
                log.warning("fast path: fused convolution + ReLU unavailable, running them apart: %s", first_line(exc))
        return torch.relu(c(x))


#: whether ``torch.cudnn_convolution_relu`` works here (None: not tried yet)
_CUDNN_RELU: list[Optional[bool]] = [None]


def fuse_conv_relu(model: nn.Module) -> int:
    """Fuse the (folded, biased) convolutions that a ReLU directly follows into :class:`ConvReLU`,
    in place: the first convolution of every dense layer (``conv1 -> norm2 -> relu2`` with
    ``norm2`` folded) and the 3x3 convolution of every decoder block (``conv2 -> bn2 ->
    dropout -> relu2``, eval mode). Run after :func:`fold_batchnorm`; returns how many were fused."""
    from ..models.decoder import DecoderBlock
    from ..models.encoder import _DenseLayer

    triples = []
    for m in model.modules():
        if isinstance(m, _DenseLayer):
            triples.append((m, "conv1", ("norm2",), "relu2"))
        elif isinstance(m, DecoderBlock):
            triples.append((m, "conv2", ("bn2", "drop2"), "relu2"))
    n = 0
    for parent, conv_name, between, relu_name in triples:
        conv = getattr(parent, conv_name)
        if type(conv) is not nn.Conv2d or conv.bias is None or type(getattr(parent, relu_name)) is not nn.ReLU:
            continue
        if not all(isinstance(getattr(parent, b), nn.Identity) or (isinstance(getattr(parent, b), nn.Dropout) and not model.training)
                   for b in between):
            continue  # an unfolded BatchNorm in between
        setattr(parent, conv_name, ConvReLU(conv))
        for name in (*between, relu_name):
            setattr(parent, name, nn.Identity())
        n += 1
    return n

"""The fast inference path: one call turns a model into a fast fp32-in / fp32-out callable.

    from twohded.fast import InferenceSettings, prepare_inference

    run = prepare_inference(model, "cuda")             # the default fast settings for the device
    out = run(images)                                  # ModelOutput, float32, on the device
    run = prepare_inference(model, "cuda", InferenceSettings(compile=True))
    ref = prepare_inference(model, "cuda", InferenceSettings.reference())   # plain fp32 eager

What the fast settings do (each can be switched off; see docs/speed.md):

* **eval mode**, ``torch.inference_mode``;
* **BatchNorm folding** (``fold_bn``): in eval mode a BatchNorm right after a convolution is an
  affine map, folded into that convolution's weights and bias (2HDED:NET: the stem, the first
  1x1 convolution of every dense layer and both convolutions of every decoder block: 80 of its
  142 BatchNorms). Exact in real arithmetic; the model is copied first, the caller's model is
  never changed;
* **bf16 autocast** (``autocast``; fp16 on GPUs without bf16) with the convolution weights
  stored in that dtype (``cast_weights``: the same numbers autocast would produce, minus a cast
  kernel per weight per call). The output convolutions (``depth_head``, ``aif_head``) run in
  float32 (``fp32_heads``: a bf16 depth has steps of 3-6 cm between 4 and 10 m; these layers
  cost 0.2 % of the FLOPs). Outputs are returned as float32;
* **GEMM output heads** (``gemm_heads``): the two 3x3 output convolutions (1 and 3 channels,
  slow in cuDNN) as one GEMM with float32 accumulation and output plus nine shifted adds
  (:class:`GemmHead`);
* **fused convolution + bias + ReLU** (``fuse_relu``, off under compile): one cuDNN call for
  each folded convolution that a ReLU follows (:class:`ConvReLU`);
* **channels-last** tensors (``channels_last``), the layout of the tensor-core convolutions;
* **CUDA graphs** (``cuda_graphs``): the second time an input shape is seen, the whole forward
  pass is captured once and then replayed with one launch (the network runs hundreds of
  small kernels, so eager small batches are limited by launch overhead). Up to
  ``max_graphs`` shapes are kept (least recently used dropped);
* optional **torch.compile** (``compile``, ``compile_mode``), with inductor's weight freezing
  for inference (``freeze``). Off by default: compiling takes about a minute per input shape.

Defaults (:meth:`InferenceSettings.resolve`): ``InferenceSettings()`` turns everything above
but compilation on for CUDA GPUs, and only BatchNorm folding on the CPU (CPU bf16 autocast and
channels-last can be asked for explicitly, which the tests do); ``fast=None`` (prediction's and
evaluation's default) is the fast path on CUDA and the plain fp32 path elsewhere. Anything that fails on a machine (a compile error,
a graph capture error) falls back to the eager path with a note in :attr:`FastModel.notes`
and a log warning; results never depend on it beyond bf16 rounding.

Tolerance: bf16 keeps 8 significant bits, and the error grows through the ~140 convolutions; the
fast path's outputs agree with the fp32 path's to within :data:`BF16_RTOL` of the output's
range (see :func:`within_bf16_tolerance`; typical: 0.1-1 %).
"""

from __future__ import annotations

import contextlib
import copy
import logging
from collections import OrderedDict
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Callable, Optional

import torch
from torch import Tensor, nn

from .errors import InputError

log = logging.getLogger("twohded.fast")

__all__ = [
    "BF16_RTOL",
    "COMPILE_MODES",
    "FastModel",
    "Float32",
    "float32_heads",
    "InferenceSettings",
    "ConvReLU",
    "GemmHead",
    "cast_conv_weights",
    "fold_batchnorm",
    "fuse_conv_relu",
    "gemm_heads",
    "max_abs_diff",
    "prepare_inference",
    "within_bf16_tolerance",
]

#: torch.compile modes accepted by :class:`InferenceSettings` (None: torch's default)
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
#: compile modes that capture CUDA graphs themselves (then ours stay off)
_MODES_WITH_GRAPHS = ("reduce-overhead", "max-autotune")
#: the fast path agrees with fp32 to this fraction of the reference output's range
BF16_RTOL = 0.03
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


# ---------------------------------------------------------------------------------------
# Settings
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InferenceSettings:
    """How :func:`prepare_inference` prepares a model. ``None`` fields: decided per device.

    Attributes:
        fast: master switch; False gives the reference path (fp32, eager unless ``compile``,
            the model itself, nothing copied or changed beyond ``.to(device).eval()``); None:
            fast on CUDA GPUs, the reference path elsewhere (prediction's and evaluation's default).
        autocast: run under autocast (None: on CUDA only).
        dtype: autocast dtype: ``"auto"`` (bf16 where supported, else fp16), ``"bf16"``, ``"fp16"``.
        channels_last: channels-last model and inputs (None: on CUDA only).
        fold_bn: fold eval-mode BatchNorms into the preceding convolutions (on a copy).
        cast_weights: with autocast, store convolution weights in the autocast dtype.
        fp32_heads: with autocast, run the output convolutions (``depth_head``, ``aif_head``)
            in float32, outside autocast.
        gemm_heads: with bf16 autocast and channels-last, run the output convolutions as one
            GEMM with float32 accumulation and output (:class:`GemmHead`; None: on CUDA).
        fuse_relu: run each folded convolution that a ReLU follows as one cuDNN
            convolution + bias + ReLU call (:class:`ConvReLU`; None: on CUDA without ``compile``,
            which fuses the bias and ReLU itself).
        cuda_graphs: capture CUDA graphs per input shape (None: on CUDA unless the compile
            mode captures its own).
        compile: ``torch.compile`` the model.
        compile_mode: None (torch's default) or one of :data:`COMPILE_MODES`.
        freeze: with ``compile``, inductor's freezing (weights become constants, conv/BN
            folding and layout choices at compile time). Sets the global
            ``torch._inductor.config.freezing``.
        max_graphs: captured input shapes kept per model (each holds its own activations).
        capture_after: calls with one input shape before it is captured (the first ones run
            eagerly and warm up cuDNN's algorithm choice).
        cudnn_benchmark: set ``torch.backends.cudnn.benchmark = True`` on CUDA (global).
    """

    fast: Optional[bool] = True
    autocast: Optional[bool] = None
    dtype: str = "auto"
    channels_last: Optional[bool] = None
    fold_bn: bool = True
    cast_weights: bool = True
    fp32_heads: bool = True
    gemm_heads: Optional[bool] = None
    fuse_relu: Optional[bool] = None
    cuda_graphs: Optional[bool] = None
    compile: bool = False
    compile_mode: Optional[str] = None
    freeze: bool = True
    max_graphs: int = 4
    capture_after: int = 1
    cudnn_benchmark: bool = True

    def __post_init__(self) -> None:
        if self.dtype not in ("auto", *_DTYPES):
            raise InputError(f"InferenceSettings.dtype={self.dtype!r}: choose auto, bf16 or fp16")
        if self.compile_mode is not None and self.compile_mode not in COMPILE_MODES:
            raise InputError(f"compile mode {self.compile_mode!r}: choose one of {', '.join(COMPILE_MODES)}")
        if self.max_graphs < 1 or self.capture_after < 0:
            raise InputError("InferenceSettings: max_graphs must be >= 1 and capture_after >= 0")

    @classmethod
    def reference(cls) -> "InferenceSettings":
        """The plain path: fp32, eager, the model as it is (what ``--no-fast`` runs)."""
        return cls(fast=False)

    @classmethod
    def from_flags(cls, fast: bool | None = None, compile: bool = False, compile_mode: str | None = None) -> "InferenceSettings":
        """Settings of the command-line flags: ``--fast/--no-fast`` (None: neither given), ``--compile``.

        ``fast=None``: on for CUDA GPUs, off on the CPU (:meth:`resolve`); ``fast=True`` on the
        CPU gives the CPU's fast settings (BatchNorm folding, fp32); ``fast=False``: reference.
        """
        return cls(fast=fast, compile=bool(compile), compile_mode=compile_mode)

    def resolve(self, device: str | torch.device) -> "InferenceSettings":
        """These settings with every ``None`` decided for ``device`` (and impossible ones off)."""
        dev = torch.device(device)
        cuda = dev.type == "cuda"
        if self.fast is False or (self.fast is None and not cuda):
            return _reference_like(self)
        autocast = cuda if self.autocast is None else bool(self.autocast)
        dtype = self.dtype
        if dtype == "auto":
            dtype = "bf16" if (not cuda or torch.cuda.is_bf16_supported()) else "fp16"
        channels_last = cuda if self.channels_last is None else bool(self.channels_last)
        graphs_by_compile = self.compile and (self.compile_mode in _MODES_WITH_GRAPHS)
        graphs = (cuda and not graphs_by_compile) if self.cuda_graphs is None else bool(self.cuda_graphs)
        graphs = graphs and cuda and not graphs_by_compile
        gemm = (cuda if self.gemm_heads is None else bool(self.gemm_heads)) and autocast and dtype == "bf16" and channels_last
        fuse = (cuda and not self.compile) if self.fuse_relu is None else bool(self.fuse_relu)
        return replace(
            self, fast=True, autocast=autocast, dtype=dtype, channels_last=channels_last, cuda_graphs=graphs,
            cast_weights=self.cast_weights and autocast, fp32_heads=self.fp32_heads and autocast,
            gemm_heads=gemm, fuse_relu=fuse and self.fold_bn,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _reference_like(s: InferenceSettings) -> InferenceSettings:
    """fp32 eager on the model itself (``compile`` kept: ``--no-fast --compile`` compiles in fp32)."""
    return replace(
        s, fast=False, autocast=False, channels_last=False, fold_bn=False, cast_weights=False, fp32_heads=False,
        gemm_heads=False, fuse_relu=False, cuda_graphs=False, dtype="bf16" if s.dtype == "auto" else s.dtype,
    )


# ---------------------------------------------------------------------------------------
# Model transforms
# ---------------------------------------------------------------------------------------


def _conv_bn_pairs(model: nn.Module) -> list[tuple[nn.Module, str, str]]:
    """(parent, conv attribute, batchnorm attribute) where the BN directly follows the conv."""
    from .models.decoder import DecoderBlock
    from .models.encoder import DenseNetEncoder, _DenseLayer

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
                log.warning("fast path: GemmHead falls back to the float32 convolution: %s", _first_line(exc))
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
                log.warning("fast path: fused convolution + ReLU unavailable, running them apart: %s", _first_line(exc))
        return torch.relu(c(x))


#: whether ``torch.cudnn_convolution_relu`` works here (None: not tried yet)
_CUDNN_RELU: list[Optional[bool]] = [None]


def fuse_conv_relu(model: nn.Module) -> int:
    """Fuse the (folded, biased) convolutions that a ReLU directly follows into :class:`ConvReLU`,
    in place: the first convolution of every dense layer (``conv1 -> norm2 -> relu2`` with
    ``norm2`` folded) and the 3x3 convolution of every decoder block (``conv2 -> bn2 ->
    dropout -> relu2``, eval mode). Run after :func:`fold_batchnorm`; returns how many were fused."""
    from .models.decoder import DecoderBlock
    from .models.encoder import _DenseLayer

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


# ---------------------------------------------------------------------------------------
# The callable
# ---------------------------------------------------------------------------------------


def _as_float(out: Any, clone: bool) -> Any:
    """A ModelOutput (NamedTuple of tensors / None) with float32 tensors (fresh ones if ``clone``)."""

    def conv(t):
        if not isinstance(t, Tensor):
            return t
        if t.dtype != torch.float32:
            return t.float()
        return t.clone() if clone else t

    if isinstance(out, tuple) and hasattr(out, "_fields"):
        return type(out)(*(conv(t) for t in out))
    if isinstance(out, (tuple, list)):
        return type(out)(conv(t) for t in out)
    return conv(out)


class _Graph:
    """One captured forward pass: static input, CUDA graph, static output."""

    def __init__(self, fn: Callable[[Tensor], Any], example: Tensor) -> None:
        self.static_in = torch.empty_like(example)  # same memory format
        self.static_in.copy_(example)
        stream = torch.cuda.Stream(device=example.device)
        stream.wait_stream(torch.cuda.current_stream(example.device))
        with torch.cuda.stream(stream):
            fn(self.static_in)  # warm-up on a side stream (cuDNN / compiled kernels ready)
        torch.cuda.current_stream(example.device).wait_stream(stream)
        torch.cuda.synchronize(example.device)
        self.graph = torch.cuda.CUDAGraph()
        # thread_local: CUDA calls of other threads (a DataLoader's pin-memory thread) do not break the capture
        with torch.cuda.graph(self.graph, capture_error_mode="thread_local"):
            self.static_out = fn(self.static_in)

    def __call__(self, x: Tensor) -> Any:
        self.static_in.copy_(x)
        self.graph.replay()
        return self.static_out


class FastModel:
    """A model prepared by :func:`prepare_inference`: ``fast(images) -> ModelOutput`` (float32).

    Attributes:
        model: the prepared module (a folded copy, or the original model in eval mode on the device).
        device: where it runs.
        settings: the resolved :class:`InferenceSettings`.
        outputs: the model's output fields, e.g. ``("depth", "aif")``.
        notes: what was switched off on the way (compile or capture failures).
        folded_bn: BatchNorms folded into convolutions.
    """

    def __init__(self, model: nn.Module, device: torch.device, settings: InferenceSettings, outputs: tuple[str, ...],
                 folded_bn: int = 0) -> None:
        self.model = model
        self.device = device
        self.settings = settings
        self.outputs = outputs
        self.folded_bn = folded_bn
        self.notes: list[str] = []
        self._compiled: Callable | None = None
        self._graphs: "OrderedDict[tuple, _Graph]" = OrderedDict()
        self._seen: dict[tuple, int] = {}
        self._graphs_on = settings.cuda_graphs
        if settings.compile:
            self._compiled = self._compile()

    # -- building blocks ------------------------------------------------------------------
    def _compile(self) -> Callable | None:
        s = self.settings
        try:
            if s.freeze:
                import torch._inductor.config as inductor_config

                inductor_config.freezing = True
            kwargs = {"dynamic": False}
            if s.compile_mode not in (None, "default"):
                kwargs["mode"] = s.compile_mode
            return torch.compile(self.model, **kwargs)
        except Exception as exc:  # torch.compile unavailable (e.g. no compiler on this machine)
            self._note(f"torch.compile off: {type(exc).__name__}: {_first_line(exc)}")
            return None

    def _note(self, text: str) -> None:
        self.notes.append(text)
        log.warning("fast path: %s", text)

    def _autocast(self):
        s = self.settings
        if not s.autocast:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=_DTYPES[s.dtype], cache_enabled=False)

    def _eager(self, x: Tensor, **kwargs: Any) -> Any:
        """The forward pass without graphs (compiled if compiling, falling back to eager on failure)."""
        if self._compiled is not None:
            try:
                if self.settings.compile_mode in _MODES_WITH_GRAPHS:
                    torch.compiler.cudagraph_mark_step_begin()
                with self._autocast():
                    return self._compiled(x, **kwargs)
            except InputError:
                raise
            except Exception as exc:
                self._compiled = None
                self._note(f"torch.compile failed, running eagerly: {type(exc).__name__}: {_first_line(exc)}")
        with self._autocast():
            return self.model(x, **kwargs)

    def _graph_call(self, x: Tensor) -> tuple[Any, bool]:
        key = (tuple(x.shape), tuple(x.stride()), x.dtype)
        graph = self._graphs.get(key)
        if graph is not None:
            self._graphs.move_to_end(key)
            return graph(x), True
        seen = self._seen.get(key, 0)
        self._seen[key] = seen + 1
        if seen < self.settings.capture_after:
            return self._eager(x), False
        try:
            graph = _Graph(self._eager, x)
        except InputError:
            raise
        except Exception as exc:
            self._graphs_on = False
            self._graphs.clear()
            self._note(f"CUDA graphs off: {type(exc).__name__}: {_first_line(exc)}")
            return self._eager(x), False
        self._graphs[key] = graph
        while len(self._graphs) > self.settings.max_graphs:
            self._graphs.popitem(last=False)
        return graph(x), True

    # -- public ---------------------------------------------------------------------------
    def __call__(self, image: Tensor, **kwargs: Any) -> Any:
        """``(B, 3, H, W)`` float images in [0, 1] (any device) -> the model's output, float32, on :attr:`device`.

        Keyword arguments (e.g. ``depth=`` of an oracle baseline) are passed to the model, tensors
        moved to the device; calls with keyword arguments are not captured in CUDA graphs.
        """
        kwargs = {k: (v.to(self.device, non_blocking=True) if isinstance(v, Tensor) else v) for k, v in kwargs.items()}
        with torch.inference_mode():
            x = image.to(self.device, non_blocking=True)
            if not x.is_floating_point():
                raise InputError(f"images must be float tensors, got {x.dtype}")
            x = x.float()
            if self.settings.channels_last and x.dim() == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            if self._graphs_on and x.is_cuda and not kwargs:
                out, static = self._graph_call(x)
            else:
                out, static = self._eager(x, **kwargs), False
            return _as_float(out, clone=static)

    forward = __call__

    def describe(self) -> dict[str, Any]:
        """What runs: the resolved settings, folded BatchNorms, captured shapes, notes (for logs / JSON)."""
        return {
            **self.settings.to_dict(),
            "device": str(self.device),
            "folded_bn": self.folded_bn,
            "compiled": self._compiled is not None,
            "cuda_graphs_active": bool(self._graphs_on),
            "captured_shapes": [list(k[0]) for k in self._graphs],
            "notes": list(self.notes),
        }

    def release_graphs(self) -> None:
        """Drop every captured graph (frees their memory)."""
        self._graphs.clear()
        self._seen.clear()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else ""


def prepare_inference(
    model: nn.Module,
    device: str | torch.device | None = None,
    settings: InferenceSettings | None = None,
) -> FastModel:
    """Prepare ``model`` for fast inference on ``device`` (default: the model's device).

    With the reference settings (``fast=False``) the model itself is moved to ``device`` and put
    in eval mode; otherwise a copy is folded / cast / converted to channels-last and the
    caller's model is left as it was (except for ``.to(device)`` when a device is given).
    """
    settings = settings or InferenceSettings()
    if device is None:
        p = next(iter(model.parameters()), None)
        dev = p.device if p is not None else torch.device("cpu")
    else:
        dev = torch.device(device)
    s = settings.resolve(dev)
    outputs = tuple(getattr(model, "outputs", ("depth", "aif")))
    if dev.type == "cuda" and s.fast and s.cudnn_benchmark:
        torch.backends.cudnn.benchmark = True
    folded = 0
    if not s.fast:
        net = model.to(dev).eval()
    else:
        transform = s.fold_bn or s.cast_weights or s.channels_last
        net = model
        if transform:
            was_training = model.training
            model.eval()
            try:
                net = copy.deepcopy(model)
            finally:
                model.train(was_training)
        net = net.to(dev).eval()
        if s.fold_bn:
            folded = fold_batchnorm(net)
        if s.fuse_relu:
            fuse_conv_relu(net)
        if s.gemm_heads:
            gemm_heads(net)
        elif s.fp32_heads:
            float32_heads(net)
        if s.cast_weights:
            cast_conv_weights(net, _DTYPES[s.dtype])
        if s.channels_last:
            net = net.to(memory_format=torch.channels_last)
        for p in net.parameters():
            p.requires_grad_(False)
    if not hasattr(net, "outputs"):
        try:
            net.outputs = outputs
        except AttributeError:
            pass
    return FastModel(net, dev, s, outputs, folded)


# ---------------------------------------------------------------------------------------
# Comparing outputs
# ---------------------------------------------------------------------------------------


def max_abs_diff(a: Any, b: Any) -> dict[str, float]:
    """``{field: max |a - b|}`` over the tensor fields of two model outputs."""
    out = {}
    for name in getattr(a, "_fields", ()):
        x, y = getattr(a, name), getattr(b, name)
        if isinstance(x, Tensor) and isinstance(y, Tensor):
            out[name] = float((x.float() - y.float().to(x.device)).abs().max())
    return out


def within_bf16_tolerance(fast: Tensor, reference: Tensor, rtol: float = BF16_RTOL) -> bool:
    """``max |fast - reference| <= rtol * range(reference)`` (range: max - min, at least 1e-6)."""
    ref = reference.float()
    span = max(float(ref.max() - ref.min()), 1e-6)
    return float((fast.float().to(ref.device) - ref).abs().max()) <= rtol * span


# names of the settings fields, for the CLI / benchmark
SETTINGS_FIELDS = tuple(f.name for f in fields(InferenceSettings))

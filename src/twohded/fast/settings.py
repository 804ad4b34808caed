"""What the fast inference path does: :class:`InferenceSettings`, decided per device."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Optional

import torch

from ..errors import InputError

__all__ = ["BF16_RTOL", "COMPILE_MODES", "DTYPES", "InferenceSettings", "MODES_WITH_GRAPHS", "SETTINGS_FIELDS"]

#: torch.compile modes accepted by :class:`InferenceSettings` (None: torch's default)
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
#: compile modes that capture CUDA graphs themselves (then ours stay off)
MODES_WITH_GRAPHS = ("reduce-overhead", "max-autotune")
#: the fast path agrees with fp32 to this fraction of the reference output's range
BF16_RTOL = 0.03
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


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
        if self.dtype not in ("auto", *DTYPES):
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
        graphs_by_compile = self.compile and (self.compile_mode in MODES_WITH_GRAPHS)
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



#: names of the settings fields, for the CLI / benchmark
SETTINGS_FIELDS = tuple(f.name for f in fields(InferenceSettings))

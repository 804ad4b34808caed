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

Code: :mod:`.settings` (:class:`InferenceSettings`), :mod:`.surgery` (the model transforms),
:mod:`.runner` (:func:`prepare_inference`, :class:`FastModel`); the CUDA-graph capture is
:mod:`twohded.cuda_graph` (shared with the training step).
"""

from __future__ import annotations

from .runner import FastModel, max_abs_diff, prepare_inference, within_bf16_tolerance
from .settings import BF16_RTOL, COMPILE_MODES, SETTINGS_FIELDS, InferenceSettings
from .surgery import (
    HEAD_ATTRIBUTES,
    ConvReLU,
    Float32,
    GemmHead,
    cast_conv_weights,
    float32_heads,
    fold_batchnorm,
    fuse_conv_relu,
    gemm_heads,
)

__all__ = [
    "BF16_RTOL",
    "COMPILE_MODES",
    "FastModel",
    "Float32",
    "float32_heads",
    "InferenceSettings",
    "ConvReLU",
    "GemmHead",
    "HEAD_ATTRIBUTES",
    "SETTINGS_FIELDS",
    "cast_conv_weights",
    "fold_batchnorm",
    "fuse_conv_relu",
    "gemm_heads",
    "max_abs_diff",
    "prepare_inference",
    "within_bf16_tolerance",
]

"""``train.cuda_graphs``: the forward pass, the loss and the backward pass of a training step
captured once in a CUDA graph and replayed every step.

2HDED:NET's training step launches about 2,900 kernels (BatchNorm, ReLU, concatenations and
143 convolutions, forward and backward). At 256x256 batch 32 on an H100 they take 49 ms of GPU
time but the eager step took 90 ms: the GPU waited for Python to launch them. A replayed graph
is one launch. What stays outside the graph: the optimizer step, gradient clipping, the
learning-rate schedule, EMA, logging and the non-finite check (which therefore still stops
before a bad update is applied).

How (PyTorch's "partial network capture", with :class:`twohded.cuda_graph.CapturedGraph`,
the helper the inference path uses too): two warm-up passes on a side stream (cuDNN picks
its algorithms; their gradients are dropped and the BatchNorm statistics they touched are
restored), then the capture with the gradients unset, so that the graph owns the gradient
tensors and every replay overwrites them: the optimizer reads them as usual and they are never
zeroed. Each step copies its batch into the graph's static input tensors. Dropout draws new
random numbers on every replay (PyTorch's graph-safe generator).

Limits: CUDA only, one input shape (the trainer drops the last partial batch), no DDP (its
gradient hooks would be captured), no fp16 GradScaler (bf16 needs none). Where it cannot be
used the trainer says why and trains eagerly.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

import torch
from torch import Tensor, nn

from ..cuda_graph import CapturedGraph

log = logging.getLogger(__name__)

__all__ = ["GraphedStep", "graph_problem"]

KEYS = ("image", "depth", "aif", "mask")


def graph_problem(device: torch.device, distributed: bool, amp_mode: str) -> str | None:
    """Why a training step cannot be captured here (None if it can)."""
    if device.type != "cuda":
        return "CUDA graphs need a CUDA device"
    if distributed:
        return "not under DDP (its gradient all-reduce hooks would be captured)"
    if amp_mode == "fp16":
        return "not with train.amp=fp16 (the GradScaler's dynamic scale); use bf16"
    return None


class GraphedStep:
    """``step(batch) -> loss parts`` (dict of 0-dim float32 tensors, static: read before the
    next call) with forward, loss and backward replayed from one CUDA graph.

    Args:
        model: the module being trained (its parameters get the gradients).
        forward: what to call on the image (the model, or its compiled form).
        loss_fn: ``loss_fn(output, depth=, aif=, mask=) -> LossOutput`` (``.total``, ``.parts``).
        autocast_dtype: bf16 / fp16 autocast dtype, or None for float32.
        channels_last: keep the static image channels-last.
    """

    def __init__(self, model: nn.Module, forward: Callable, loss_fn: Callable, autocast_dtype: torch.dtype | None,
                 channels_last: bool) -> None:
        self.model = model
        self.forward = forward
        self.loss_fn = loss_fn
        self.dtype = autocast_dtype
        self.channels_last = channels_last
        self.graph: CapturedGraph | None = None
        self.static: dict[str, Tensor] = {}
        self.parts: dict[str, Tensor] = {}
        self.replays = 0

    def _run(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        image = batch["image"]
        if self.dtype is not None:
            # no weight-cast cache: cached casts would be stale in a replayed graph
            with torch.autocast("cuda", dtype=self.dtype, cache_enabled=False):
                out = self.forward(image)
        else:
            out = self.forward(image)
        loss = self.loss_fn(out, depth=batch["depth"], aif=batch["aif"], mask=batch["mask"])
        loss.total.backward()
        return {k: v.detach().float() for k, v in loss.parts.items()}

    def _capture(self, batch: dict[str, Tensor]) -> None:
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        example = {k: batch[k].contiguous(memory_format=fmt if k == "image" else torch.contiguous_format) for k in KEYS}
        params = [p for p in self.model.parameters() if p.requires_grad]
        saved = [b.detach().clone() for b in self.model.buffers()]  # BatchNorm statistics

        def drop_grads() -> None:
            for p in params:
                p.grad = None

        def restore_buffers() -> None:
            with torch.no_grad():
                for b, s in zip(self.model.buffers(), saved):
                    b.copy_(s)

        drop_grads()
        self.graph = CapturedGraph(self._run, example, warmup=2, after_warmup_call=drop_grads,
                                   before_capture=restore_buffers, capture_error_mode="global")
        self.static = self.graph.static_in
        self.parts = self.graph.static_out

    def __call__(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        if self.graph is None:
            self._capture(batch)
        self.replays += 1
        return self.graph(batch)

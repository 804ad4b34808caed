"""One CUDA-graph helper for inference (:mod:`twohded.fast`) and training
(:mod:`twohded.training.graphs`): ``fn(static inputs)`` captured once, replayed after.

A :class:`CapturedGraph` holds static copies of its example inputs (same shapes, dtypes and
memory formats), runs ``fn`` on them ``warmup`` times on a side stream (cuDNN and compiled
kernels choose their algorithms there, outside the capture), then captures one call. Each
replay copies new inputs into the static tensors, replays the graph and returns the same
static outputs: read (or clone) them before the next replay.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import Tensor

__all__ = ["CapturedGraph"]

Inputs = dict[str, Tensor]


class CapturedGraph:
    """``fn(inputs) -> outputs`` captured once in a CUDA graph; ``graph(inputs)`` replays it.

    Args:
        fn: called with a dict of static tensors; whatever it returns is :attr:`static_out`.
        example: the inputs to capture with (``name -> tensor``, on one CUDA device); the
            static copies keep each tensor's memory format (e.g. channels-last).
        warmup: calls of ``fn`` on a side stream before the capture.
        after_warmup_call: run after each warm-up call (e.g. drop the gradients it made).
        before_capture: run once after the warm-up, before the capture (e.g. restore the
            BatchNorm statistics the warm-up touched).
        capture_error_mode: ``torch.cuda.graph``'s: ``"thread_local"`` lets other threads
            (a DataLoader's pin-memory thread) call CUDA during the capture; ``"global"`` is
            PyTorch's default.
    """

    def __init__(self, fn: Callable[[Inputs], Any], example: Inputs, *, warmup: int = 1,
                 after_warmup_call: Callable[[], None] | None = None, before_capture: Callable[[], None] | None = None,
                 capture_error_mode: str = "thread_local") -> None:
        device = next(iter(example.values())).device
        self.static_in: Inputs = {}
        for k, v in example.items():
            self.static_in[k] = torch.empty_like(v)  # same memory format
            self.static_in[k].copy_(v)
        stream = torch.cuda.Stream(device=device)
        stream.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(stream):
            for _ in range(warmup):
                fn(self.static_in)
                if after_warmup_call is not None:
                    after_warmup_call()
        torch.cuda.current_stream(device).wait_stream(stream)
        torch.cuda.synchronize(device)
        if before_capture is not None:
            before_capture()
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph, capture_error_mode=capture_error_mode):
            self.static_out = fn(self.static_in)
        self.replays = 0

    def __call__(self, inputs: Inputs) -> Any:
        """Copy ``inputs`` (the example's names) into the static tensors, replay, return :attr:`static_out`."""
        for k, v in self.static_in.items():
            v.copy_(inputs[k], non_blocking=True)
        self.graph.replay()
        self.replays += 1
        return self.static_out

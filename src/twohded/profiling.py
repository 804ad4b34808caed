"""Where the time of a profiled call goes: :func:`kernel_rows` of ``torch.profiler`` key averages,
each kernel or operator in a coarse class (:func:`kernel_class`). Used by the speed benchmark's
``profile`` section (benchmarks/speed_benchmark.py)."""

from __future__ import annotations

from typing import Any

__all__ = ["kernel_class", "kernel_rows"]


def kernel_class(name: str) -> str:
    """A coarse class of a profiler event or kernel name (for the profile section)."""
    n = name.lower()
    if n.startswith("triton_"):  # inductor's generated kernels: fused element-wise / reductions (named after the ops fused)
        return "fused element-wise (Triton)"
    if any(k in n for k in ("conv", "gemm", "matmul", "mm_", "sm90", "cutlass", "xmma", "wgrad", "dgrad", "implicit")):
        return "convolution / matmul"
    if any(k in n for k in ("cat", "copy", "memcpy", "contiguous", "transpose", "nchw", "nhwc")):
        return "concatenation / copies"
    if any(k in n for k in ("norm", "relu", "elementwise", "add", "mul", "clamp", "pool", "reduce", "vectorized")):
        return "normalisation / element-wise / pooling"
    return "other"


def kernel_rows(events, cuda: bool, calls: int) -> list[dict[str, Any]]:
    """Profiler key averages -> rows sorted by time: device kernels on CUDA, top-level aten ops on the CPU."""
    rows = []
    for e in events:
        if cuda:
            us = getattr(e, "self_device_time_total", None)
            if us is None:
                us = getattr(e, "self_cuda_time_total", 0.0)
            if not us or getattr(e, "device_type", None) is None or "cuda" not in str(e.device_type).lower():
                continue
        else:
            if not e.key.startswith("aten::"):
                continue
            us = e.self_cpu_time_total
            if not us:
                continue
        rows.append({"name": e.key, "class": kernel_class(e.key), "ms_per_call": us / 1e3 / calls,
                     "count_per_call": e.count / calls})
    return sorted(rows, key=lambda r: -r["ms_per_call"])

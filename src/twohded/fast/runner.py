"""The fast inference callable: :func:`prepare_inference` -> :class:`FastModel`, and output comparisons."""

from __future__ import annotations

import contextlib
import copy
import logging
from collections import OrderedDict
from typing import Any, Callable

import torch
from torch import Tensor, nn

from ..cuda_graph import CapturedGraph
from ..errors import InputError
from ..models.base import check_model
from .settings import BF16_RTOL, DTYPES, MODES_WITH_GRAPHS, InferenceSettings
from .surgery import cast_conv_weights, first_line, float32_heads, fold_batchnorm, fuse_conv_relu, gemm_heads

log = logging.getLogger("twohded.fast")

__all__ = ["FastModel", "max_abs_diff", "prepare_inference", "within_bf16_tolerance"]


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
        self._graphs: "OrderedDict[tuple, CapturedGraph]" = OrderedDict()
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
            self._note(f"torch.compile off: {type(exc).__name__}: {first_line(exc)}")
            return None

    def _note(self, text: str) -> None:
        self.notes.append(text)
        log.warning("fast path: %s", text)

    def _autocast(self):
        s = self.settings
        if not s.autocast:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=DTYPES[s.dtype], cache_enabled=False)

    def _eager(self, x: Tensor, **kwargs: Any) -> Any:
        """The forward pass without graphs (compiled if compiling, falling back to eager on failure)."""
        if self._compiled is not None:
            try:
                if self.settings.compile_mode in MODES_WITH_GRAPHS:
                    torch.compiler.cudagraph_mark_step_begin()
                with self._autocast():
                    return self._compiled(x, **kwargs)
            except InputError:
                raise
            except Exception as exc:
                self._compiled = None
                self._note(f"torch.compile failed, running eagerly: {type(exc).__name__}: {first_line(exc)}")
        with self._autocast():
            return self.model(x, **kwargs)

    def _graph_call(self, x: Tensor) -> tuple[Any, bool]:
        key = (tuple(x.shape), tuple(x.stride()), x.dtype)
        graph = self._graphs.get(key)
        if graph is not None:
            self._graphs.move_to_end(key)
            return graph({"x": x}), True
        seen = self._seen.get(key, 0)
        self._seen[key] = seen + 1
        if seen < self.settings.capture_after:
            return self._eager(x), False
        try:
            graph = CapturedGraph(lambda inputs: self._eager(inputs["x"]), {"x": x})
        except InputError:
            raise
        except Exception as exc:
            self._graphs_on = False
            self._graphs.clear()
            self._note(f"CUDA graphs off: {type(exc).__name__}: {first_line(exc)}")
            return self._eager(x), False
        self._graphs[key] = graph
        while len(self._graphs) > self.settings.max_graphs:
            self._graphs.popitem(last=False)
        return graph({"x": x}), True

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
    outputs = tuple(check_model(model, "prepare_inference").outputs)
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
            cast_conv_weights(net, DTYPES[s.dtype])
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

"""Export a model to ONNX, with dynamic batch, height and width, and check it with onnxruntime.

    twohded export --checkpoint runs/nyu/best.pt --onnx model.onnx

From Python::

    from twohded.export import export_onnx
    result = export_onnx(model, "model.onnx")         # checked with onnxruntime on the CPU
    result.check["max_abs_diff"]                       # {"depth": ..., "aif": ...}

The ONNX graph:

* one input ``image``: ``(N, 3, H, W)`` float32 RGB in ``[0, 1]``; ``N``, ``H`` and ``W`` are
  dynamic, and ``H`` and ``W`` must be **multiples of 32** (the network's total stride; the
  PyTorch model pads other sizes itself, the exported graph does not: pad or resize first);
* one output per head of the variant, in this order: ``depth`` ``(N, 1, H, W)`` metres and/or
  ``aif`` ``(N, 3, H, W)`` in ``[0, 1]`` (``2hded``: both; ``2hded-depth``: depth; ``2hded-aif``: aif);
* the model in eval mode (BatchNorm running statistics, no dropout, AiF clamped), float32;
* metadata (``metadata_props``): ``twohded.model``, ``twohded.outputs``, ``twohded.multiple``,
  ``twohded.input``, ``twohded.units``, ``twohded.version``.

The check runs the file with onnxruntime on the CPU at the export size and at a second size and
batch (``H + 32``, ``W + 64``, batch 2: the dynamic axes in use) on random images and compares
with the PyTorch model in float32 on the CPU: every output must agree to
``ONNX_RTOL * max(1, max |PyTorch output|)`` (1e-4 of the output's scale; in practice the
difference is around 1e-6). The file is written atomically and only once the check passed.

Two exporters: ``torchscript`` (``torch.onnx.export(..., dynamo=False)``; needs only the
``onnx`` package, a few seconds) and ``dynamo`` (the ``torch.export`` based exporter; needs
``onnxscript``, about a minute on a CPU; the height and width are declared as ``32 * k``).
``auto`` uses the first and falls back to the second.
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from .errors import InputError, TwohdedError
from .io import write_error

log = logging.getLogger("twohded.export")

__all__ = ["EXPORTERS", "ONNX_RTOL", "DEFAULT_OPSET", "ExportCheckError", "ExportResult", "check_onnx", "export_onnx"]

EXPORTERS = ("auto", "torchscript", "dynamo")
DEFAULT_OPSET = 17
#: onnxruntime must agree with PyTorch to ONNX_RTOL * max(1, max |output|)
ONNX_RTOL = 1e-4


class ExportCheckError(TwohdedError):
    """onnxruntime's output differs from PyTorch's beyond the tolerance (nothing was written)."""


@dataclass
class ExportResult:
    """What :func:`export_onnx` wrote.

    Attributes:
        path: the ONNX file.
        outputs: output names, e.g. ``("depth", "aif")``.
        size: ``(H, W)`` of the example input the graph was traced with.
        opset: ONNX opset.
        exporter: ``"torchscript"`` or ``"dynamo"``.
        check: the onnxruntime check (``sizes``, ``max_abs_diff`` per output and size,
            ``tolerance``, ``ok``), or None if skipped.
    """

    path: Path
    outputs: tuple[str, ...]
    size: tuple[int, int]
    opset: int
    exporter: str
    check: dict[str, Any] | None = None
    metadata: dict[str, str] = field(default_factory=dict)


class _OnnxWrapper(nn.Module):
    """``image -> (depth, aif)`` as a plain tuple of the model's outputs (ONNX has no NamedTuple)."""

    def __init__(self, model: nn.Module, outputs: Sequence[str]) -> None:
        super().__init__()
        self.model = model
        self.names = tuple(outputs)

    def forward(self, image: torch.Tensor):
        out = self.model(image)
        return tuple(getattr(out, name) for name in self.names)


def _require(module: str, purpose: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise InputError(
            f"{purpose} needs the Python package {module!r}: pip install {module} (or pip install 'twohded[export]')"
        ) from None


def _check_size(model: nn.Module, height: int, width: int) -> int:
    multiple = int(model.stride)
    if height < multiple or width < multiple or height % multiple or width % multiple:
        raise InputError(
            f"export size {width}x{height} (WxH): height and width must be positive multiples of {multiple} "
            "(the network's total stride)"
        )
    return multiple


def _example(batch: int, height: int, width: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, height, width, generator=g)


def _export_torchscript(wrapper: nn.Module, example: torch.Tensor, path: Path, names: tuple[str, ...], opset: int) -> None:
    axes = {"image": {0: "batch", 2: "height", 3: "width"}}
    axes.update({name: {0: "batch", 2: "height", 3: "width"} for name in names})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecation of this exporter, tracer warnings on shape checks
        torch.onnx.export(
            wrapper, (example,), str(path), input_names=["image"], output_names=list(names),
            dynamic_axes=axes, opset_version=opset, do_constant_folding=True, dynamo=False,
        )


def _export_dynamo(wrapper: nn.Module, example: torch.Tensor, path: Path, names: tuple[str, ...], opset: int,
                   multiple: int) -> None:
    _require("onnxscript", "the dynamo ONNX exporter")
    from torch.export import Dim

    batch = Dim("batch", min=1, max=4096)
    h = Dim("h", min=1, max=8192 // multiple)
    w = Dim("w", min=1, max=8192 // multiple)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapper, (example,), str(path), input_names=["image"], output_names=list(names), dynamo=True,
            dynamic_shapes=({0: batch, 2: multiple * h, 3: multiple * w},), opset_version=opset,
            external_data=False, verbose=False,
        )


def _add_metadata(path: Path, metadata: dict[str, str]) -> None:
    onnx = _require("onnx", "writing ONNX metadata")
    proto = onnx.load(str(path))
    del proto.metadata_props[:]
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(path))


def check_onnx(
    path: str | os.PathLike,
    model: nn.Module,
    sizes: Sequence[tuple[int, int, int]],
    *,
    seed: int = 0,
    rtol: float = ONNX_RTOL,
) -> dict[str, Any]:
    """Run ``path`` with onnxruntime (CPU) and ``model`` (PyTorch, fp32, CPU) on random images.

    Args:
        path: the ONNX file.
        model: the PyTorch model it was exported from.
        sizes: ``(batch, height, width)`` inputs to compare.
        rtol: tolerance, relative to ``max(1, max |PyTorch output|)`` per output.

    Returns:
        ``{"sizes", "max_abs_diff": {"BxHxW": {output: diff}}, "tolerance": {...}, "ok"}``.
    """
    ort = _require("onnxruntime", "checking the ONNX file")
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    model = model.to("cpu").eval()
    diffs: dict[str, dict[str, float]] = {}
    tols: dict[str, dict[str, float]] = {}
    ok = True
    for i, (b, h, w) in enumerate(sizes):
        x = _example(b, h, w, seed + i)
        with torch.inference_mode():
            ref = model(x)
        got = session.run(None, {"image": x.numpy()})
        key = f"{b}x{h}x{w}"
        diffs[key], tols[key] = {}, {}
        for name, arr in zip(names, got):
            r = getattr(ref, name).float().numpy()
            if arr.shape != r.shape:
                raise ExportCheckError(f"onnxruntime output {name} has shape {arr.shape}, PyTorch {r.shape} (input {key})")
            d = float(np.abs(arr - r).max())
            tol = rtol * max(1.0, float(np.abs(r).max()))
            diffs[key][name], tols[key][name] = d, tol
            ok = ok and d <= tol and bool(np.isfinite(arr).all())
    return {"sizes": [list(s) for s in sizes], "max_abs_diff": diffs, "tolerance": tols, "rtol": rtol, "ok": ok,
            "onnxruntime": getattr(ort, "__version__", "?")}


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike,
    *,
    height: int = 256,
    width: int = 256,
    opset: int = DEFAULT_OPSET,
    exporter: str = "auto",
    check: bool = True,
    metadata: dict[str, str] | None = None,
    overwrite: bool = True,
) -> ExportResult:
    """Export ``model`` (a twohded model) to ONNX at ``path``; see the module docstring.

    Args:
        model: the model (its ``outputs`` name the heads); exported in eval mode, float32,
            on the CPU. Its mode and device are restored afterwards.
        path: the ``.onnx`` file to write (atomically; only after the check passed).
        height, width: example input size used for tracing (multiples of 32).
        opset: ONNX opset version.
        exporter: ``"auto"``, ``"torchscript"`` or ``"dynamo"``.
        check: compare onnxruntime (CPU) with PyTorch at two sizes and batches.
        metadata: extra ``metadata_props`` entries.
        overwrite: replace an existing file (else :class:`InputError`).

    Raises:
        InputError: bad size, exporter or path; a missing package (``onnx``, ``onnxruntime``).
        ExportCheckError: onnxruntime disagrees with PyTorch beyond the tolerance.
    """
    from .io import atomic_write

    from .models.base import check_model

    path = _check_arguments(path, exporter, opset, overwrite)
    multiple = _check_size(check_model(model, "export_onnx"), height, width)
    _require("onnx", "ONNX export")
    if check:
        _require("onnxruntime", "checking the exported file (--no-check skips it)")
    names = tuple(model.outputs)

    was_training = model.training
    param = next(iter(model.parameters()), None)
    device = param.device if param is not None else torch.device("cpu")
    model.to("cpu").eval()
    wrapper = _OnnxWrapper(model, names).eval()
    example = _example(1, height, width, seed=1234)
    meta = _metadata(model, names, multiple, metadata)
    report = None
    try:
        with atomic_write(path) as tmp:
            used = _export(wrapper, example, tmp, names, opset, multiple, exporter, path)
            _add_metadata(tmp, meta)
            if check:
                sizes = [(1, height, width), (2, height + multiple, width + 2 * multiple)]
                report = check_onnx(tmp, model, sizes)
                if not report["ok"]:
                    raise ExportCheckError(
                        f"{path}: onnxruntime differs from PyTorch beyond the tolerance "
                        f"({report['max_abs_diff']} vs {report['tolerance']}); nothing written"
                    )
    finally:
        model.to(device).train(was_training)
    return ExportResult(path=path, outputs=names, size=(height, width), opset=opset, exporter=used, check=report,
                        metadata=meta)


def _check_arguments(path: str | os.PathLike, exporter: str, opset: int, overwrite: bool) -> Path:
    """``path`` as a :class:`Path`, or :class:`InputError` for a bad exporter, opset or output path."""
    if exporter not in EXPORTERS:
        raise InputError(f"exporter {exporter!r}: choose one of {', '.join(EXPORTERS)}")
    if opset < 11:
        raise InputError(f"opset {opset}: use 11 or newer")
    path = Path(path)
    from .io import check_output_file

    return check_output_file(path, ".onnx", overwrite)


def _metadata(model: nn.Module, names: tuple[str, ...], multiple: int, extra: dict[str, str] | None) -> dict[str, str]:
    """The file's ``metadata_props``: version, model, outputs, input size rule, units, plus ``extra``."""
    from . import __version__

    return {
        "twohded.version": __version__,
        "twohded.model": str(getattr(model, "name", None) or type(model).__name__),
        "twohded.outputs": ",".join(names),
        "twohded.multiple": str(multiple),
        "twohded.input": f"image (N, 3, H, W) float32 RGB in [0, 1]; H and W multiples of {multiple}",
        "twohded.units": "depth: metres; aif: [0, 1]",
        **(extra or {}),
    }


def _export(wrapper: nn.Module, example: torch.Tensor, tmp: Path, names: tuple[str, ...], opset: int, multiple: int,
            exporter: str, path: Path) -> str:
    """Write the ONNX graph to ``tmp`` with ``exporter`` (``auto``: TorchScript, else dynamo); returns the one used."""
    used = exporter
    if exporter in ("auto", "torchscript"):
        try:
            _export_torchscript(wrapper, example, tmp, names, opset)
            used = "torchscript"
        except Exception as exc:
            if isinstance(exc, OSError) and write_error(path, exc) is not None:
                raise write_error(path, exc) from None
            if exporter == "torchscript":
                raise InputError(f"{path}: ONNX export failed: {type(exc).__name__}: {_first_line(exc)}") from None
            log.warning("torchscript ONNX exporter failed (%s); trying the dynamo exporter", _first_line(exc))
            used = "dynamo"
    if used == "dynamo":
        try:
            _export_dynamo(wrapper, example, tmp, names, opset, multiple)
        except InputError:
            raise
        except Exception as exc:
            if isinstance(exc, OSError) and write_error(path, exc) is not None:
                raise write_error(path, exc) from None
            raise InputError(f"{path}: ONNX export failed: {type(exc).__name__}: {_first_line(exc)}") from None
    return used


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else ""

"""Machine-readable summaries (``--json``) of ``twohded predict`` and ``twohded evaluate``.

``--json`` alone (or ``--json -``) prints the summary as JSON on standard output (the
commands' human-readable lines then go to standard error, so the output parses as it is);
``--json FILE`` writes it to ``FILE`` atomically. Formats:

``twohded-predict/1``::

    {"format": "twohded-predict/1", "checkpoint": ..., "model_name": ..., "step": ...,
     "device": "cpu", "fast": false, "outputs": ["depth", "aif"], "out_dir": ..., "count": N,
     "images": [{"input": "photos/a.jpg", "width": W, "height": H, "tiles": 1,
                 "files": {"depth_npy": ..., "depth_png": ..., "depth_color": ..., "aif": ..., "ply": ...},
                 "depth_m": {"min": ..., "median": ..., "max": ...},
                 "points": N, "intrinsics": {"fx_px": ..., ..., "fov_deg": ..., "source": ...}}]}

(``points`` and ``intrinsics`` only with ``--ply``; ``depth_m`` only for a model with depth).

``twohded-evaluate/1``: the ``metrics.json`` content (``twohded-eval/1``: averages, regions,
per-image metrics, settings) under ``"metrics"``, and ``"files"``: the paths written.
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .errors import InputError

PREDICT_FORMAT = "twohded-predict/1"
EVALUATE_FORMAT = "twohded-evaluate/1"
STDOUT = "-"
#: file name suffix -> key in a predict summary's "files"
FILE_KEYS = {"_depth.npy": "depth_npy", "_depth.png": "depth_png", "_depth_color.png": "depth_color",
             "_aif.png": "aif", "_points.ply": "ply"}


def check_json_destination(dest: str | None, overwrite: bool) -> None:
    """Refuse a ``--json`` path that is a folder, looks like an input image, or exists (without ``overwrite``)."""
    from .io import IMAGE_SUFFIXES

    if dest is None or dest == STDOUT:
        return
    path = Path(dest)
    if path.suffix.lower() in IMAGE_SUFFIXES:
        raise InputError(f"--json {dest}: looks like an image, not a summary file; give a .json path, "
                         "or put --json after the inputs to print the summary")
    if path.is_dir():
        raise InputError(f"--json {dest}: is a folder; give a file path")
    if path.exists() and not overwrite:
        raise InputError(f"{dest}: already exists (use --overwrite to replace it)")


def human_stream(dest: str | None):
    """Where the commands' human-readable lines go: stderr if the JSON goes to stdout."""
    return sys.stderr if dest == STDOUT else sys.stdout


def write_json(dest: str, data: dict[str, Any]) -> Path | None:
    """Write ``data`` as JSON to stdout (``dest == "-"``) or to the file ``dest`` (atomic)."""
    from .io import atomic_write

    text = json.dumps(data, indent=2, allow_nan=False) + "\n"
    if dest == STDOUT:
        sys.stdout.write(text)
        sys.stdout.flush()
        return None
    path = Path(dest)
    with atomic_write(path) as tmp:
        tmp.write_text(text)
    return path


def _finite_or_none(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def prediction_record(
    input_path: str | os.PathLike, prediction, written: Sequence[Path], points: int | None = None, intrinsics=None,
) -> dict[str, Any]:
    """The summary of one image: its size, tiles, files written (by kind), depth range (metres)."""
    h, w = prediction.size
    files = {}
    for path in written:
        key = next((k for s, k in FILE_KEYS.items() if path.name.endswith(s)), path.name)
        files[key] = str(path)
    record: dict[str, Any] = {"input": str(input_path), "width": int(w), "height": int(h),
                              "tiles": int(prediction.tiles), "files": files}
    if prediction.depth is not None:
        d = prediction.depth[np.isfinite(prediction.depth)]
        record["depth_m"] = ({"min": _finite_or_none(d.min()), "median": _finite_or_none(np.median(d)),
                              "max": _finite_or_none(d.max())} if d.size else None)
    if points is not None:
        record["points"] = int(points)
    if intrinsics is not None:
        record["intrinsics"] = intrinsics.to_dict()
    return record


def predict_summary(predictor, out_dir: str | os.PathLike, records: list[dict[str, Any]]) -> dict[str, Any]:
    """The whole ``twohded predict`` summary (see module docstring)."""
    info = dict(getattr(predictor, "info", {}) or {})
    return {
        "format": PREDICT_FORMAT,
        "checkpoint": info.get("checkpoint"),
        "model_name": info.get("model_name"),
        "step": info.get("step"),
        "device": str(predictor.device),
        "fast": bool(predictor.fast),
        "outputs": list(predictor.outputs),
        "out_dir": str(out_dir),
        "count": len(records),
        "images": records,
    }


def evaluate_summary(result, files: dict[str, Any]) -> dict[str, Any]:
    """The ``twohded evaluate`` summary: the metrics (``EvalResult.to_dict()``) and the files written."""
    return {"format": EVALUATE_FORMAT, "metrics": result.to_dict(), "files": files}

"""The web demo (``twohded app``): upload a defocused photo, see its depth and all-in-focus image.

Built with Gradio (``pip install "twohded[app]"``). The page shows the depth colour map (with
its scale bar in metres) and the all-in-focus image side by side, and offers the depth as a
16-bit PNG (millimetres), a ``.npy`` (float32 metres) and a coloured point cloud (``.ply``,
metres, x right, y down, z forward; :mod:`twohded.pointcloud`) for download. Its HTTP API
(``/predict``, the same inputs and outputs) is what ``gradio_client`` calls::

    from gradio_client import Client, handle_file
    color, aif, depth_png, depth_npy, ply, info = Client("http://127.0.0.1:7860/").predict(
        handle_file("photo.jpg"), None, api_name="/predict")

The point cloud's focal length comes from the field of view typed on the page, else the
camera options the app was started with (``--fov-deg``, ``--focal-mm`` / ``--pixel-pitch-um``,
``--preset``), else the photo's EXIF 35 mm-equivalent focal length, else
:data:`DEFAULT_FOV_DEG` (the page says which).

Everything but :func:`build_app` and :func:`launch` works without Gradio.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import tempfile
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError

#: the model ``twohded app`` uses without ``--checkpoint``
DEFAULT_MODEL = "dfd-indoor"
#: horizontal field of view assumed for the point cloud when nothing else gives one, degrees
DEFAULT_FOV_DEG = 60.0
#: prediction folders kept on disk (older ones are removed)
KEEP_RESULTS = 16

__all__ = ["DEFAULT_FOV_DEG", "DEFAULT_MODEL", "AppState", "build_app", "launch", "load_app_model", "predict_files"]


def load_app_model(checkpoint: str | os.PathLike | None = None, device: str | None = None):
    """The :class:`~twohded.predict.Predictor` of ``checkpoint``, or of the shipped :data:`DEFAULT_MODEL`.

    Raises :class:`InputError` with a clear message (asking for ``--checkpoint``) when no
    checkpoint is given and the shipped model is not available.
    """
    from .predict import load_model

    if checkpoint is not None:
        return load_model(checkpoint, device=device)
    try:
        return load_model(DEFAULT_MODEL, device=device)
    except InputError as exc:
        raise InputError(
            f"the shipped model {DEFAULT_MODEL!r} is not available ({exc}); "
            "start the app with --checkpoint CKPT (a checkpoint file or run folder)"
        ) from None


@dataclass
class AppState:
    """What the app needs besides the model: camera options for the point cloud (keyword
    arguments of :func:`twohded.pointcloud.camera_intrinsics`), the colour map's depth range
    (metres, None: each image's), the point cloud's pixel step, the folder results go to, and a lock around the model."""

    camera: dict[str, Any] = field(default_factory=dict)
    depth_range: tuple[float, float] | None = None
    ply_step: int = 1
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="twohded-app-")))
    lock: threading.Lock = field(default_factory=threading.Lock)
    count: int = 0


def _stem(image_path: str | os.PathLike) -> str:
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(image_path).stem).strip("._")
    return stem or "photo"


def _intrinsics(state: AppState, image_path, width: int, height: int, fov_deg: float | None):
    """The point cloud's intrinsics and a note saying where the focal length came from."""
    from .pointcloud import camera_intrinsics, exif_focal_35mm

    if fov_deg is not None and not (isinstance(fov_deg, (int, float)) and math.isfinite(fov_deg) and fov_deg > 0):
        fov_deg = None
    if fov_deg:
        return camera_intrinsics(width, height, fov_deg=float(fov_deg))
    if any(v is not None for v in state.camera.values()):
        return camera_intrinsics(width, height, **state.camera)
    focal_35mm = exif_focal_35mm(image_path)
    if focal_35mm is not None:
        return camera_intrinsics(width, height, focal_35mm=focal_35mm)
    intr = camera_intrinsics(width, height, fov_deg=DEFAULT_FOV_DEG)
    return replace(intr, source=f"an assumed horizontal field of view of {DEFAULT_FOV_DEG:g} deg "
                   "(no EXIF focal length: type the photo's field of view)")


def predict_files(predictor, state: AppState, image_path: str | os.PathLike, fov_deg: float | None = None) -> dict[str, Any]:
    """Predict one photo and write what the page shows and offers.

    Returns ``{"color", "aif", "depth_png", "depth_npy", "ply"}`` (paths; ``aif`` None for a
    depth-only model) and ``"info"`` (markdown: size, depth range in metres, intrinsics).
    """
    from .pointcloud import PLY_SUFFIX
    from .predict import to_image_tensor

    if image_path is None:
        raise InputError("no photo: upload a defocused photo first")
    stem = _stem(image_path)
    with state.lock:
        state.count += 1
        out = state.root / f"{state.count:06d}"
        result = predictor.predict(image_path)
    if result.depth is None:
        raise InputError("this model predicts no depth; the app needs a depth model")
    written = {p.name[len(stem):]: p for p in result.save(out, stem, overwrite=True, depth_range=state.depth_range)}
    h, w = result.size
    intr = _intrinsics(state, image_path, w, h, fov_deg)
    colors = None if result.aif is not None else to_image_tensor(image_path).permute(1, 2, 0).numpy()
    ply = out / f"{stem}{PLY_SUFFIX}"
    points = result.save_ply(ply, intr, colors=colors, step=state.ply_step)
    _prune(state)
    d = result.depth
    info = (f"**{w}x{h} px**, depth {float(d.min()):.3f} to {float(d.max()):.3f} m (median {float(np.median(d)):.3f} m); "
            f"point cloud: {points} points, focal length {intr.fx_px:.1f} px ({intr.fov_deg:.1f} deg across) "
            f"from {intr.source}.")
    return {"color": written["_depth_color.png"], "aif": written.get("_aif.png"), "depth_png": written["_depth.png"],
            "depth_npy": written["_depth.npy"], "ply": ply, "info": info}


def _prune(state: AppState) -> None:
    """Remove result folders beyond the newest :data:`KEEP_RESULTS` (bounded disk use)."""
    folders = sorted(p for p in state.root.iterdir() if p.is_dir())
    for old in folders[:-KEEP_RESULTS]:
        shutil.rmtree(old, ignore_errors=True)


def describe_model(predictor) -> str:
    """One markdown line naming the model the app runs."""
    info = getattr(predictor, "info", {}) or {}
    where = info.get("checkpoint") or "an in-memory model"
    step = info.get("step")
    return (f"Model: `{info.get('model_name', '?')}` from `{where}`" + (f" (training step {step})" if step is not None else "")
            + f", on {predictor.device}.")


def build_app(predictor, state: AppState | None = None, title: str = "twohded: depth from one defocused photo"):
    """The Gradio ``Blocks`` of the demo (needs Gradio). Its event ``/predict`` takes (photo path,
    field of view in degrees or None) and returns (colour map, AiF image, depth PNG, depth .npy,
    point cloud .ply, info markdown)."""
    import gradio as gr

    state = state or AppState()

    def run(image_path, fov_deg):
        try:
            r = predict_files(predictor, state, image_path, fov_deg)
        except InputError as exc:
            raise gr.Error(str(exc)) from None
        return (str(r["color"]), str(r["aif"]) if r["aif"] else None, str(r["depth_png"]), str(r["depth_npy"]),
                str(r["ply"]), r["info"])

    # Gradio's copies of the files served are removed after an hour (checked hourly)
    with gr.Blocks(title=title, delete_cache=(3600, 3600)) as app:
        gr.Markdown(f"## {title}\nUpload a defocused photo: 2HDED:NET predicts its depth in metres and its "
                    f"all-in-focus image. {describe_model(predictor)}")
        with gr.Row():
            photo = gr.Image(type="filepath", image_mode=None, label="defocused photo", sources=["upload", "clipboard"])
            with gr.Column():
                fov = gr.Number(value=None, label="horizontal field of view of the photo, degrees, for the .ply "
                                "(0: the app's camera options, else the photo's EXIF, else 60)", minimum=0, maximum=179)
                button = gr.Button("Predict", variant="primary")
                info = gr.Markdown()
        with gr.Row():
            color = gr.Image(type="filepath", format="png", label="depth (m)", interactive=False)
            aif = gr.Image(type="filepath", format="png", label="all-in-focus image", interactive=False)
        with gr.Row():
            depth_png = gr.File(label="depth, 16-bit PNG (millimetres)")
            depth_npy = gr.File(label="depth, .npy (float32 metres)")
            ply = gr.File(label="point cloud, .ply (metres)")
        button.click(run, inputs=[photo, fov], outputs=[color, aif, depth_png, depth_npy, ply, info], api_name="predict")
    app.twohded_state = state
    return app


def launch(app, host: str = "127.0.0.1", port: int = 7860) -> None:
    """Serve ``app`` on ``host:port`` until interrupted (no share link, no analytics, no SSR)."""
    state = getattr(app, "twohded_state", None)
    try:
        app.launch(server_name=host, server_port=port, share=False, ssr_mode=False, quiet=False,
                   allowed_paths=[str(state.root)] if state else None, show_error=True)
    finally:
        if state is not None:
            shutil.rmtree(state.root, ignore_errors=True)

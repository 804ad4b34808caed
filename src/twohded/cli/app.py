"""``twohded app``: the web demo (Gradio) on this machine.

    twohded app --checkpoint runs/dfd_real/best.pt            # http://127.0.0.1:7860
    twohded app --checkpoint ck.pt --host 0.0.0.0 --port 8080 --fov-deg 60

Needs ``pip install "twohded[app]"``. See :mod:`twohded.app`.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys

from ..errors import InputError


def add_parser(sub) -> None:
    from ..app import DEFAULT_MODEL
    from .pointcloud_options import add_point_cloud_arguments

    p = sub.add_parser(
        "app",
        help="web demo: upload a photo, see and download its depth and all-in-focus image",
        description="Serve the web demo (Gradio): upload a defocused photo, see the depth colour map and the "
        "all-in-focus image side by side, download the depth (16-bit PNG in mm, .npy in metres) and a "
        "point cloud (.ply). Needs: pip install \"twohded[app]\".",
    )
    p.add_argument("--checkpoint", default=None,
                   help=f"checkpoint file, run folder, http(s) URL (#sha256=<hex>) or shipped name (default: the shipped model {DEFAULT_MODEL!r})")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    p.add_argument("--device", default=None, help="cuda, cuda:1, cpu (default: cuda if available)")
    p.add_argument("--depth-range", type=float, nargs=2, default=None, metavar=("MIN", "MAX"),
                   help="metres spanned by the colour map (default: each image's min..max)")
    add_point_cloud_arguments(p, with_ply_flag=False)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..app import AppState, build_app, launch, load_app_model
    from .pointcloud_options import camera_options, check_point_cloud_arguments

    if not 0 < args.port < 65536:
        raise InputError(f"--port {args.port}: must be 1..65535")
    if args.depth_range is not None and not args.depth_range[1] > args.depth_range[0]:
        raise InputError(f"--depth-range {args.depth_range[0]} {args.depth_range[1]}: MAX must exceed MIN")
    check_point_cloud_arguments(args)
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    try:
        import gradio  # noqa: F401
    except ImportError:
        raise InputError('twohded app needs Gradio: pip install "twohded[app]"') from None
    predictor = load_app_model(args.checkpoint, device=args.device)
    state = AppState(camera=camera_options(args), depth_range=tuple(args.depth_range) if args.depth_range else None,
                     ply_step=args.ply_step)
    # a plain `kill` (SIGTERM) ends the app like Ctrl-C does: its result folder is removed
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    launch(build_app(predictor, state), host=args.host, port=args.port)
    return 0

"""``twohded camera``: describe a camera setting (blur against depth) or calibrate it on photos.

``twohded camera describe``: from lens specs (options) or a camera file, write the camera file,
a figure of the blur against depth with the depth of field and the near/far ambiguity, and a
short table (:mod:`twohded.camera_report`).

``twohded camera calibrate``: fit the focus distance and blur gain of a camera to triplets of
real photos (defocused photo, sharp photo, registered depth) and write the fitted camera file,
a report and a residual figure (:mod:`twohded.calibration`).
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from ..errors import InputError

#: option dest -> camera-file key (same units: mm, um, m)
SPEC_OPTIONS = ("focal_length_mm", "f_number", "aperture_mm", "focus_m", "pixel_pitch_um", "sensor_width_mm",
                "image_width_px", "sigma_per_coc", "coc_model", "name", "source")


def add_spec_options(p: argparse.ArgumentParser) -> None:
    """``--preset`` and the lens-spec options (they override the preset's values)."""
    p.add_argument("--preset", default=None,
                   help="start from a built-in preset or a camera file (mycam.yaml); the options below override it")
    g = p.add_argument_group("lens specs (camera-file keys; needed when there is no --preset)")
    g.add_argument("--focal-length-mm", type=float, help="focal length, mm")
    g.add_argument("--f-number", type=float, help="f-number N")
    g.add_argument("--aperture-mm", type=float, help="aperture diameter, mm (instead of --f-number)")
    g.add_argument("--focus-m", type=float, help="focus distance, m")
    g.add_argument("--pixel-pitch-um", type=float, help="pixel size in the images, um")
    g.add_argument("--sensor-width-mm", type=float, help="sensor width, mm (with --image-width-px, instead of the pitch)")
    g.add_argument("--image-width-px", type=int, help="image width the sensor spans, px")
    g.add_argument("--sigma-per-coc", type=float,
                   help="Gaussian PSF sigma as a fraction of the CoC diameter (default 0.25, the paper's; D3-Net 0.3)")
    g.add_argument("--coc-model", choices=("thin_lens", "paper_eq8"), help="CoC formula (default thin_lens)")
    g.add_argument("--name", help="camera name (default: the preset's, or 'custom')")
    g.add_argument("--source", help="where the numbers come from (kept in the camera file)")


def preset_from_args(args: argparse.Namespace):
    """The :class:`~twohded.optics.Preset` of ``--preset`` and the spec options."""
    from ..camera_file import camera_from_specs
    from ..optics import get_preset

    base = get_preset(args.preset) if args.preset else None
    specs = {k: getattr(args, k) for k in SPEC_OPTIONS}
    if base is not None and not any(v is not None for v in specs.values()):
        return base
    try:
        return camera_from_specs(base, where="camera options", **specs)
    except InputError as exc:  # name the option, not the file key
        raise InputError(re.sub(r"key '(\w+)'", lambda m: "--" + m.group(1).replace("_", "-"), str(exc))) from None


def add_parser(sub) -> None:
    p = sub.add_parser("camera", help="describe a camera setting, or calibrate it on your own photos",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    csub = p.add_subparsers(dest="camera_command", metavar="ACTION")
    d = csub.add_parser("describe", help="blur against depth, depth of field and ambiguity of a camera setting",
                        description="Write OUT/camera.yaml, OUT/blur.png (blur sigma against depth, depth of field "
                        "and near/far ambiguity shaded) and OUT/describe.md (table), and print the table.")
    add_spec_options(d)
    d.add_argument("-o", "--out", required=True, type=Path, help="output folder")
    d.add_argument("--depth-range-m", type=float, nargs=2, default=(0.5, 10.0), metavar=("NEAR", "FAR"),
                   help="depths of interest, metres (default 0.5 10)")
    d.add_argument("--threshold-px", type=float, default=0.5,
                   help="depth of field: blur sigma below this many pixels counts as sharp (default 0.5)")
    d.add_argument("--depths-m", type=float, nargs="+", default=None, help="depths of the table (default: 8 over the range)")
    d.set_defaults(func=run_describe)
    add_calibrate_parser(csub)
    p.set_defaults(func=lambda args: (p.print_help(), 1)[1])


def run_describe(args: argparse.Namespace) -> int:
    from ..camera_report import write_description

    preset = preset_from_args(args)
    report, paths = write_description(preset, args.out, depth_range_m=tuple(args.depth_range_m),
                                      threshold_px=args.threshold_px, depths_m=args.depths_m)
    print(report.markdown())
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


def add_calibrate_parser(csub) -> None:
    c = csub.add_parser(
        "calibrate", help="fit a camera's focus and blur to your own triplets (defocused, sharp, depth)",
        description="Fit the focus distance and blur gain of a lens (--preset / lens specs; default d3net_nyu's "
        "lens) to real triplets: TRIPLETS/defocused/<stem> (the camera to calibrate), TRIPLETS/aif/<stem> (or rgb/: "
        "a sharp photo of the same scene, e.g. at a small aperture; registered automatically) and "
        "TRIPLETS/depth/<stem> (16-bit PNG in mm or .npy in m, aligned with the defocused photo). Writes "
        "OUT/camera.yaml, OUT/calibration.md and .json (PSNR of rendered vs real defocus on the fitted and "
        "held-out triplets, against the identity and the base preset) and OUT/residuals.png.")
    src = c.add_mutually_exclusive_group(required=True)
    src.add_argument("--triplets", type=Path, help="folder with defocused/, aif/ (or rgb/) and depth/")
    src.add_argument("--dfd", type=Path, help="a DFD indoor root: fit on its train split, hold out its val split")
    add_spec_options(c)
    c.add_argument("-o", "--out", required=True, type=Path, help="output folder")
    c.add_argument("--holdout", type=int, default=None,
                   help="--triplets: hold out N evenly spaced triplets (default: a fifth, rounded down); "
                   "--dfd: the val split is held out")
    c.add_argument("--limit", type=int, default=None, help="fit on only N evenly spaced triplets (of the non-held-out)")
    c.add_argument("--refine-scenes", type=int, default=None,
                   help="triplets used by the renderer refinement (default all fitted; fewer is faster)")
    c.add_argument("--no-refine", action="store_true", help="surrogate search only (fast, less exact)")
    c.add_argument("--border", type=int, default=24, help="pixels ignored on each side (default 24)")
    c.add_argument("--depth-frame", choices=("defocused", "sharp"), default="defocused",
                   help="the depth is aligned with the defocused photo (default) or with the sharp one")
    c.add_argument("--depth-median", type=int, default=5,
                   help="median filter size for the depth against isolated wrong pixels (default 5; 1: none)")
    c.add_argument("--depth-scale-m", type=float, default=1e-3, help="metres per unit of a 16-bit depth PNG (default 0.001)")
    c.add_argument("--threads", type=int, default=1, help="torch threads (default 1: fastest for these renders)")
    c.set_defaults(func=run_calibrate)


def _calibration_sets(args):
    """(fitted, held-out) :class:`~twohded.calibration.TripletFiles` lists from the options."""
    import numpy as np

    from ..calibration import dfd_files, folder_files, holdout_split

    if args.dfd is not None:
        return dfd_files(args.dfd, "train", args.limit), dfd_files(args.dfd, "val")
    files = folder_files(args.triplets)
    n = len(files) // 5 if args.holdout is None else args.holdout
    fitted, held = holdout_split(files, n)
    if args.limit is not None:
        if args.limit < 1:
            raise InputError(f"--limit must be >= 1, got {args.limit}")
        fitted = [fitted[i] for i in np.linspace(0, len(fitted) - 1, min(args.limit, len(fitted))).round().astype(int)]
    return fitted, held


def run_calibrate(args: argparse.Namespace) -> int:
    import shlex
    import sys

    from ..calibration import calibrate, load_triplets, torch_threads, write_calibration
    from ..optics import get_preset

    base = preset_from_args(args) if (args.preset or args.focal_length_mm) else get_preset("d3net_nyu")
    fitted_files, held_files = _calibration_sets(args)
    opts = dict(border=args.border, depth_frame=args.depth_frame, depth_scale_m=args.depth_scale_m,
                median=args.depth_median)
    print(f"loading and registering {len(fitted_files)} fitted and {len(held_files)} held-out triplets ...")
    fitted, held = load_triplets(fitted_files, **opts), load_triplets(held_files, **opts)
    name = args.name or f"{base.name}_calibrated"
    argv = sys.argv[1:]
    command = "twohded " + shlex.join(argv) if argv[:2] == ["camera", "calibrate"] else "twohded camera calibrate (from Python)"
    with torch_threads(args.threads):
        preset, result = calibrate(fitted, held, base, name=name, refine=not args.no_refine,
                                   refine_scenes=args.refine_scenes, source=command)
        paths = write_calibration(args.out, preset, base, result, (held or fitted)[0])
    print()
    print((paths["report"]).read_text())
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0

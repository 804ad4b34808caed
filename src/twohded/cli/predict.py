"""``twohded predict``: depth and all-in-focus image of defocused photos.

    twohded predict photo.jpg --checkpoint runs/nyu/best.pt --out results/
    twohded predict photos/ --checkpoint runs/nyu -o results/ --batch-size 8
    twohded predict photo.jpg --checkpoint ck.pt -o results/ --ply --fov-deg 60 --json summary.json

For each image ``<stem>``: ``<stem>_depth.npy`` (float32 metres), ``<stem>_depth.png``
(16-bit millimetres), ``<stem>_depth_color.png`` (colour map with a scale bar in metres) and
``<stem>_aif.png``; with ``--ply`` also ``<stem>_points.ply`` (coloured point cloud, metres,
x right, y down, z forward; :mod:`twohded.pointcloud`). ``--json`` prints (or writes) a
machine-readable summary (:mod:`twohded.summary`).

An image's files are written as one group (temporaries renamed once all are complete), and
``OUT/.twohded-predict.json`` records the settings and the images finished: rerunning the same
command after an interruption skips the finished images and removes the temporary files a
kill left. Files of other settings (or of no record) are not replaced without ``--overwrite``.
The output folder may not be an input folder.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import InputError
from .options import add_fast_arguments, check_out_dir


def add_parser(sub) -> None:
    from ..predict import DEFAULT_MAX_SIDE, DEFAULT_OVERLAP, MIN_SIDE
    from .pointcloud_options import add_point_cloud_arguments

    p = sub.add_parser(
        "predict",
        help="depth and all-in-focus image of defocused photos",
        description="Predict metric depth and the all-in-focus image of one image or of every image "
        f"in a folder (any format PIL reads, at least {MIN_SIDE}x{MIN_SIDE} pixels; large images in "
        "blended tiles). See docs/evaluation.md.",
    )
    p.add_argument("inputs", nargs="+", type=Path, metavar="IMAGE_OR_DIR", help="image file(s) or folder(s) of images")
    p.add_argument("--checkpoint", default="dfd-indoor",
                   help="checkpoint file, run folder with best.pt / last.pt, http(s) URL (#sha256=<hex>) or shipped model "
                        "name (default: the shipped model 'dfd-indoor', for DFD indoor's camera; no weights ship yet, "
                        "and other cameras need their own training)")
    p.add_argument("-o", "--out", required=True, type=Path, help="output folder (created)")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.add_argument("--model", default=None, help="refuse a checkpoint of another model variant (e.g. 2hded)")
    p.add_argument("--device", default=None, help="cuda, cuda:1, cpu (default: cuda if available)")
    add_fast_arguments(p)
    p.add_argument("--no-ema", action="store_true", help="use the raw weights even if the checkpoint has EMA weights")
    p.add_argument("--batch-size", type=int, default=4, help="images (same size) or tiles per forward pass (default 4)")
    p.add_argument("--max-side", type=int, default=DEFAULT_MAX_SIDE,
                   help=f"tile images whose longer side exceeds this (default {DEFAULT_MAX_SIDE})")
    p.add_argument("--overlap", type=int, default=DEFAULT_OVERLAP, help=f"tile overlap in pixels (default {DEFAULT_OVERLAP})")
    p.add_argument("--depth-range", type=float, nargs=2, default=None, metavar=("MIN", "MAX"),
                   help="metres spanned by the colour map (default: each image's min..max)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", nargs="?", const="-", default=None, metavar="FILE",
                   help="machine-readable summary (files written per image, depth range): to stdout, "
                   "or to FILE; put it after the inputs")
    add_point_cloud_arguments(p)
    p.set_defaults(func=run)


def collect_inputs(paths: list[Path]) -> list[Path]:
    """Files named directly, plus the images (by suffix) directly inside named folders, sorted."""
    from ..io import IMAGE_SUFFIXES

    files: list[Path] = []
    for path in paths:
        if not path.exists():
            raise InputError(f"{path}: input does not exist")
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                           and not p.name.startswith("."))
            if not found:
                raise InputError(f"{path}: folder holds no image ({', '.join(IMAGE_SUFFIXES)})")
            files += found
        else:
            files.append(path)
    return list(dict.fromkeys(files))


def check_inputs(files: list[Path]) -> None:
    """Open each header (cheap): unreadable files and images below the minimum size fail before any work."""
    from ..io import image_size
    from ..predict import MIN_SIDE

    for path in files:
        w, h = image_size(path)
        if min(w, h) < MIN_SIDE:
            raise InputError(f"{path}: image is {w}x{h} pixels; the network needs at least {MIN_SIDE}x{MIN_SIDE}")


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..fast import InferenceSettings
    from ..pointcloud import PLY_SUFFIX
    from ..predict import load_model
    from ..summary import check_json_destination, human_stream, predict_summary, write_json
    from .pointcloud_options import check_point_cloud_arguments, intrinsics_for

    if args.batch_size < 1:
        raise InputError("--batch-size must be >= 1")
    if args.depth_range is not None and not args.depth_range[1] > args.depth_range[0]:
        raise InputError(f"--depth-range {args.depth_range[0]} {args.depth_range[1]}: MAX must exceed MIN")
    check_json_destination(args.json, args.overwrite)
    check_point_cloud_arguments(args)
    files = collect_inputs(args.inputs)
    stems: dict[str, Path] = {}
    for f in files:
        if f.stem in stems:
            raise InputError(f"{f} and {stems[f.stem]} would write the same output files (same name stem)")
        stems[f.stem] = f
    if args.out.exists() and not args.out.is_dir():
        raise InputError(f"{args.out}: output path exists and is not a folder")
    if args.ply:
        for f in files:  # every image needs intrinsics: fail before any work
            intrinsics_for(args, f, 640, 480)
    settings = InferenceSettings.from_flags(args.fast, args.compile or args.compile_mode is not None, args.compile_mode)
    predictor = load_model(
        args.checkpoint, model=args.model, device=args.device, settings=settings,
        use_ema=not args.no_ema, max_side=args.max_side, overlap=args.overlap, batch_size=args.batch_size,
    )
    if args.ply and "depth" not in predictor.outputs:
        raise InputError(f"--ply: {args.checkpoint} predicts no depth")
    check_inputs(files)
    check_out_dir(args.out)
    todo, record = _plan(args, files, predictor)
    depth_range = tuple(args.depth_range) if args.depth_range else None
    records, n = [], 0
    bar = tqdm(total=len(todo), desc="predict", unit="image", disable=args.no_progress)
    try:
        for path, result in predictor.iter_predict(todo, names=todo):
            written = result.save(args.out, path.stem, overwrite=True, depth_range=depth_range)
            points = intr = None
            if args.ply:
                points, intr = _save_ply(args, path, result)
                written.append(args.out / f"{path.stem}{PLY_SUFFIX}")
            record.mark_done(path.stem)
            if args.json is not None:
                from ..summary import prediction_record

                records.append(prediction_record(path, result, written, points, intr))
            n += 1
            bar.update(1)
    finally:
        bar.close()
    if len(todo) < len(files):
        print(f"skipped {len(files) - len(todo)} image(s) finished by an earlier run with the same settings "
              "(--overwrite redoes them)", file=human_stream(args.json))
    kinds = " and ".join(predictor.outputs) + (" and point clouds" if args.ply else "")
    print(f"wrote {kinds} of {n} image(s) to {args.out} ({predictor.device}{', fast path' if predictor.fast else ''})",
          file=human_stream(args.json))
    if args.json is not None:
        write_json(args.json, predict_summary(predictor, args.out, records))
    return 0


def _outputs_of(args: argparse.Namespace, stem: str, outputs) -> list[Path]:
    from ..pointcloud import PLY_SUFFIX
    from ..predict import output_paths

    return output_paths(args.out, stem, outputs) + ([args.out / f"{stem}{PLY_SUFFIX}"] if args.ply else [])


def _check_not_inputs(args: argparse.Namespace, files: list[Path], outputs) -> None:
    """Refuse an output folder that is an input folder, and outputs that would replace an input."""
    out = args.out.resolve()
    for given in args.inputs:
        if given.is_dir() and given.resolve() == out:
            raise InputError(f"--out {args.out} is the input folder {given}: the outputs would be read as "
                             "inputs by the next run; choose another output folder")
    inputs = {f.resolve() for f in files}
    for f in files:
        for path in _outputs_of(args, f.stem, outputs):
            if path.resolve() in inputs:
                raise InputError(f"{path}: is an input image and would be replaced by an output; "
                                 "choose another output folder")


def _plan(args: argparse.Namespace, files: list[Path], predictor):
    """The images still to do and the folder's :class:`~twohded.run_record.RunRecord` (started);
    removes the temporaries of killed writes; refuses to replace files of other settings."""
    from ..io import remove_temporaries
    from ..run_record import RunRecord

    outputs = predictor.outputs
    _check_not_inputs(args, files, outputs)
    ckpt = Path(str(predictor.info.get("checkpoint") or args.checkpoint))
    stat = ckpt.stat() if ckpt.is_file() else None
    keys = ("model", "no_ema", "max_side", "overlap", "depth_range", "ply", "fov_deg", "focal_mm",
            "pixel_pitch_um", "preset", "ply_step")
    settings = {"checkpoint": ckpt, "checkpoint_bytes": stat and stat.st_size,
                "checkpoint_mtime_ns": stat and stat.st_mtime_ns, **{k: getattr(args, k, None) for k in keys}}
    record = RunRecord(args.out, "predict", settings)
    finished = set() if args.overwrite else record.finished()
    todo, keep = [], set()
    for f in files:
        paths = _outputs_of(args, f.stem, outputs)
        remove_temporaries(paths)
        if f.stem in finished and all(p.is_file() for p in paths):
            keep.add(f.stem)
            continue
        if not args.overwrite and not record.same_settings:
            for path in paths:
                if path.exists():
                    why = f"; made with other settings ({', '.join(record.changed())})" if record.changed() else ""
                    raise InputError(f"{path}: already exists{why} (use --overwrite to replace it)")
        todo.append(f)
    remove_temporaries([record.path])
    record.start(keep | (finished - {f.stem for f in files}))
    return todo, record


def _save_ply(args: argparse.Namespace, path: Path, result):
    """Write ``<stem>_points.ply`` of one prediction; colours: the AiF image, else the input photo."""
    from ..pointcloud import PLY_SUFFIX
    from ..predict import to_image_tensor
    from .pointcloud_options import intrinsics_for

    h, w = result.size
    intr = intrinsics_for(args, path, w, h)
    colors = None if result.aif is not None else to_image_tensor(path).permute(1, 2, 0).numpy()
    points = result.save_ply(args.out / f"{path.stem}{PLY_SUFFIX}", intr, colors=colors, step=args.ply_step)
    return points, intr

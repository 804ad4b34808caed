"""``twohded prepare``: write a fast-loading cache of (defocused, depth, aif) samples.

    twohded prepare nyu    --root nyu_depth_v2_labeled.mat --out cache/nyu    --preset d3net_nyu
    twohded prepare make3d --root make3d/                   --out cache/make3d --preset paper
    twohded prepare dfd    --root ../shared/data/dfd_indoor --out cache/dfd
    twohded prepare idfd   --root iDFD/ --out cache/idfd --variant inpainting --resolution processed
    twohded prepare folder --root my_rgbd/                  --out cache/mine   --preset syndof

Frames are resized / cropped first and the defocus rendered at the final size (on the GPU if
there is one). The run is resumable: samples already written are skipped, and each file is
written atomically. The cache layout is described in :mod:`twohded.data.cache`; read it with
``twohded.data.PreparedDataset(OUT, split)``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ..errors import InputError

DATASETS = ("nyu", "make3d", "dfd", "idfd", "folder", "synthetic")
#: the paper's training size for the datasets whose defocus is rendered
DEFAULT_SIZE = {"nyu": "256", "make3d": "256", "dfd": None, "idfd": None, "folder": None, "synthetic": None}


def add_parser(sub) -> None:
    from .render import add_camera_options

    p = sub.add_parser(
        "prepare",
        help="cache (defocused, depth, aif) samples of a dataset for fast training",
        description="Read a dataset (NYU Depth v2 labeled .mat, Make3D, DFD indoor, iDFD, an RGB-D folder or "
        "the built-in synthetic scenes), resize/crop it, render its defocus with a camera preset "
        "(or keep DFD's real defocus) and write a resumable cache. See docs/datasets.md.",
    )
    p.add_argument("dataset", choices=DATASETS, help="which dataset reader to use")
    p.add_argument("--root", type=Path, help="dataset location (NYU: the .mat or its folder); not for synthetic")
    p.add_argument("-o", "--out", required=True, type=Path, help="cache folder (created; re-run to resume)")
    p.add_argument(
        "--split", action="append", default=None,
        help="split to prepare (repeatable; default: all the dataset has, e.g. train and test)",
    )
    p.add_argument(
        "--size", default="auto",
        help="output size: N or WIDTHxHEIGHT (default: 256 for nyu/make3d as in the paper, native for dfd/idfd/folder/synthetic; 'none' = native)",
    )
    p.add_argument(
        "--resize", choices=("resize", "crop", "fit"), default=None,
        help="how frames reach --size: resize the whole frame (paper; default when rendering), "
        "crop a centred window at native scale (default for real defocus), or fit = resize keeping aspect then crop",
    )
    p.add_argument("--defocus", choices=("real", "render", "auto"), default="auto",
                   help="dfd/idfd/folder: real defocused photos or rendered from the sharp image (default: real if the data has it)")
    p.add_argument("--blur-at", choices=("source", "output"), default="source",
                   help="camera pixel pitch refers to the source frame (default; as rendering at native resolution) or to the output")
    p.add_argument("--seed", type=int, default=0, help="seed of random cameras (syndof) (default 0)")
    p.add_argument("--device", default=None, help="render on this device (default: cuda if available, else cpu)")
    p.add_argument("--batch-size", type=int, default=8, help="samples rendered together (default 8)")
    p.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1), help="loader processes (default: up to 4)")
    p.add_argument("--limit", type=int, default=None, help="prepare only the first N samples of each split (a quick try)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_dataset_options(p.add_argument_group("dataset options"))
    add_camera_options(p, seed_option=False)
    p.set_defaults(func=run)


def _dataset_classes() -> dict:
    from ..data import DATASETS as CLASSES

    return {name: CLASSES[name] for name in DATASETS}


def _add_dataset_options(group) -> None:
    """``--<option>`` for every option the datasets declare (``prepare_options``), with the
    constructor's default."""
    seen = set()
    for cls in _dataset_classes().values():
        for o in cls.prepare_options:
            if o.name in seen:
                continue
            seen.add(o.name)
            flag, default = "--" + o.name.replace("_", "-"), cls.option_default(o.name)
            if o.type is None and isinstance(default, bool):
                group.add_argument(flag, dest=o.name, action="store_true", default=default, help=o.help)
            else:
                group.add_argument(flag, dest=o.name, type=o.type, choices=o.choices, default=default, help=o.help)


def _dataset_specific(args) -> dict:
    """The dataset's own options, as the command line gives them."""
    return {o.name: getattr(args, o.name) for o in _dataset_classes()[args.dataset].prepare_options}


def _splits(args, root: Path | None) -> list:
    if args.split:
        return list(dict.fromkeys(args.split))
    if args.dataset in ("nyu", "make3d"):
        return ["train", "test"]
    if args.dataset in ("synthetic", "idfd"):
        return ["train", "val", "test"]
    if args.dataset == "dfd":
        has_test = (root / "dfd_dataset_indoor_N2_8" / "rgb" / "test").is_dir()
        return ["train", "val", "test"] if has_test else ["train", "val"]
    subs = [s for s in ("train", "val", "test") if (root / s / "rgb").is_dir() or (root / "rgb" / s).is_dir()]
    return subs or ["all"]


def _settings(args, splits, size, resize, defocus) -> dict:
    camera = {k: getattr(args, k) for k in ("focal_length_mm", "f_number", "focus_m", "pixel_pitch_um")
              if getattr(args, k, None) is not None}
    s = {
        "dataset": args.dataset,
        "root": str(args.root.resolve()) if args.root else None,
        "splits": splits,
        "size": list(size) if size else None,
        "resize": resize,
        "defocus": defocus,
        "preset": args.preset if defocus != "real" else None,
        "camera_overrides": camera if defocus != "real" else {},
        "mode": args.mode if defocus != "real" else None,
        "blur_at": args.blur_at,
        "seed": args.seed,
        "limit": args.limit,
    }
    s.update(_dataset_specific(args))
    return s


def run(args: argparse.Namespace) -> int:
    import torch

    from ..data import DATASETS as CLASSES
    from ..data.cache import format_summary, prepare_cache
    from ..data.transforms import parse_size
    from .render import camera_from_args

    if args.dataset != "synthetic":
        if args.root is None:
            raise InputError(f"prepare {args.dataset}: --root is required")
        if not args.root.exists():
            raise InputError(f"{args.root}: --root does not exist")
    for name in ("batch_size", "workers"):
        if getattr(args, name) < (1 if name == "batch_size" else 0):
            raise InputError(f"--{name.replace('_', '-')} must be >= {1 if name == 'batch_size' else 0}")
    if args.limit is not None and args.limit < 1:
        raise InputError("--limit must be >= 1")

    size_text = DEFAULT_SIZE[args.dataset] if args.size == "auto" else args.size
    size = None if size_text in (None, "none") else parse_size(size_text)
    defocus = args.defocus
    if args.dataset in ("nyu", "make3d", "synthetic"):
        if defocus == "real":
            raise InputError(f"prepare {args.dataset}: this dataset has no real defocused images (use --defocus render)")
        defocus = "render"
    elif defocus == "auto" and args.dataset in ("dfd", "idfd"):
        defocus = "real"
    splits = _splits(args, args.root)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    preset = camera_from_args(args)
    specific = _dataset_specific(args)
    cls = CLASSES[args.dataset]

    def split_arg(split):
        return None if split == "all" else split

    if defocus == "auto":  # an RGB-D folder: real if it has defocused/ or aif/, else rendered
        defocus = cls(args.root, split_arg(splits[0]), defocus="auto", preset=preset, **specific).defocus
    resize = args.resize or ("crop" if defocus == "real" else "resize")
    common = dict(size=size, resize=resize, augment=False, seed=args.seed)
    if defocus != "real":
        common.update(preset=preset)
    mode = "real" if defocus == "real" else "deferred"
    datasets = {split: cls(args.root, split_arg(split), defocus=mode, **specific, **common) for split in splits}
    settings = _settings(args, splits, size, resize, defocus)
    manifest = prepare_cache(
        datasets, args.out, settings, device=device, batch_size=args.batch_size, workers=args.workers,
        progress=not args.no_progress, limit=args.limit,
    )
    print(format_summary(manifest, args.out))
    return 0

"""``twohded evaluate``: depth and deblurring metrics of a checkpoint on a dataset.

    twohded evaluate --checkpoint runs/nyu/best.pt --data nyu --root nyu_depth_v2_labeled.mat --size 256
    twohded evaluate --checkpoint runs/nyu --data cache --root cache/nyu --split test --figures 8
    twohded evaluate --checkpoint ck.pt --data synthetic -O n=20 -O height=64 -O width=64

Writes ``OUT/metrics.json``, ``OUT/metrics.md`` and ``OUT/figures/*.png``; ``--json`` also prints
(or writes to a file) a summary: the metrics and the files written (:mod:`twohded.summary`).
See docs/evaluation.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import InputError
from .options import add_fast_arguments, check_out_dir

DATA_NAMES = ("nyu", "make3d", "dfd", "idfd", "folder", "synthetic", "cache")
#: datasets whose defocus is rendered: render on the evaluation device (``deferred``)
RENDERED = ("nyu", "make3d", "synthetic")


def add_parser(sub) -> None:
    from ..evaluate import PROTOCOLS

    p = sub.add_parser(
        "evaluate",
        help="depth and deblurring metrics of a checkpoint on a dataset",
        description="Evaluate a checkpoint: depth errors (RMSE, AbsRel, SqRel, RMSE log, log10, "
        "delta<1.25^k) and PSNR/SSIM of the all-in-focus output and of the defocused input against "
        "the same target. Writes metrics.json and metrics.md (and figures). See docs/evaluation.md.",
    )
    p.add_argument("--checkpoint", required=True, type=Path, help="checkpoint file, or run folder with best.pt / last.pt")
    p.add_argument("--model", default=None, help="refuse a checkpoint of another model variant (e.g. 2hded)")
    p.add_argument("--data", required=True, choices=DATA_NAMES, help="dataset reader (cache: a twohded prepare folder)")
    p.add_argument("--root", type=Path, default=None, help="dataset location (not for synthetic)")
    p.add_argument("--split", default="test", help="split to evaluate (default: test)")
    p.add_argument("--size", default=None, help="item size: N or WIDTHxHEIGHT (default: the dataset's own)")
    p.add_argument("--resize", choices=("resize", "crop", "fit"), default=None,
                   help="how frames reach --size (default: resize; crop for real defocus and caches)")
    p.add_argument("--preset", default=None, help="camera preset for rendered datasets (default: the dataset's)")
    p.add_argument("-O", "--option", action="append", default=[], metavar="KEY=VALUE",
                   help="further dataset option (YAML value), e.g. -O border=mask -O n=20; repeatable")
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N items")
    p.add_argument("--protocol", choices=PROTOCOLS, default="standard",
                   help="standard (the field's: Eigen crop / C1-C2, native-resolution ground truth; default) "
                   "or paper (the 2HDED:NET authors' scripts)")
    p.add_argument("--gt", choices=("auto", "input"), default="auto",
                   help="depth ground truth: auto = native resolution where the protocol asks for it "
                   "(NYU, Make3D), input = the items' resolution")
    p.add_argument("-o", "--out", type=Path, default=None,
                   help="output folder (default: eval/<data>-<split>-<protocol>)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing metrics.json in --out")
    p.add_argument("--figures", type=int, default=0, metavar="N", help="write N figure panels (default 0)")
    p.add_argument("--batch-size", type=int, default=1, help="images per forward pass (default 1)")
    p.add_argument("--workers", type=int, default=0, help="DataLoader processes (default 0)")
    p.add_argument("--device", default=None, help="cuda, cuda:1, cpu (default: cuda if available)")
    add_fast_arguments(p)
    p.add_argument("--no-ema", action="store_true", help="use the raw weights even if the checkpoint has EMA weights")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", nargs="?", const="-", default=None, metavar="FILE",
                   help="machine-readable summary (metrics, files written): to stdout, or to FILE")
    p.set_defaults(func=run)


def parse_options(pairs: list[str]) -> dict:
    """``["n=20", "border=mask"]`` -> ``{"n": 20, "border": "mask"}`` (values read as YAML)."""
    import yaml

    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise InputError(f"-O {pair!r}: expected KEY=VALUE")
        try:
            out[key] = yaml.safe_load(value) if value.strip() else None
        except yaml.YAMLError:
            out[key] = value
    return out


def build_eval_dataset(args: argparse.Namespace):
    from torch.utils.data import Subset

    from ..data import build_dataset

    if args.data != "synthetic":
        if args.root is None:
            raise InputError(f"--data {args.data}: --root is required")
        if not args.root.exists():
            raise InputError(f"{args.root}: --root does not exist")
    options = parse_options(args.option)
    options.setdefault("augment", False)
    options.setdefault("flip", False)
    if args.size is not None and args.size.lower() != "none":
        options["size"] = args.size
    if args.resize is not None:
        options["resize"] = args.resize
    if args.preset is not None:
        options["preset"] = args.preset
    if args.data in RENDERED:
        options.setdefault("defocus", "deferred")
    split = None if args.data == "folder" and args.split in ("all", "none") else args.split
    dataset = build_dataset(args.data, args.root, split, where=f"--data {args.data}", **options)
    if args.limit is not None:
        if args.limit < 1:
            raise InputError("--limit must be >= 1")
        dataset = Subset(dataset, range(min(args.limit, len(dataset))))
    return dataset


def run(args: argparse.Namespace) -> int:
    from ..checkpoint import load_checkpoint, model_from_checkpoint
    from ..evaluate import evaluate_model
    from ..fast import InferenceSettings
    from ..devices import resolve_device
    from ..summary import check_json_destination, evaluate_summary, human_stream, write_json

    for name in ("batch_size",):
        if getattr(args, name) < 1:
            raise InputError(f"--{name.replace('_', '-')} must be >= 1")
    if args.workers < 0:
        raise InputError("--workers must be >= 0")
    if args.figures < 0:
        raise InputError("--figures must be >= 0")
    out = args.out or Path("eval") / f"{args.data}-{args.split}-{args.protocol}"
    if (out / "metrics.json").exists() and not args.overwrite:
        raise InputError(f"{out / 'metrics.json'}: already exists (use --overwrite to replace it, or another --out)")
    check_json_destination(args.json, args.overwrite)
    device = resolve_device(args.device)
    state = load_checkpoint(args.checkpoint)
    model = model_from_checkpoint(state, expect_name=args.model, use_ema=not args.no_ema)
    dataset = build_eval_dataset(args)
    check_out_dir(out)
    settings = InferenceSettings.from_flags(args.fast, args.compile or args.compile_mode is not None, args.compile_mode)
    info = {
        "checkpoint": state.get("path"),
        "model_name": state["model_name"],
        "step": state.get("step"),
        "split": args.split,
        "data_root": str(args.root) if args.root else None,
        "limit": args.limit,
    }
    result = evaluate_model(
        model, dataset, protocol=args.protocol, dataset_name=None if args.data == "cache" else args.data,
        batch_size=args.batch_size, device=device, settings=settings, figures=args.figures, out_dir=out,
        gt=args.gt, workers=args.workers, progress=not args.no_progress, info=info,
    )
    stream = human_stream(args.json)
    print(result.to_markdown(), file=stream)
    print(f"wrote {out / 'metrics.json'} and {out / 'metrics.md'}"
          + (f" and {len(result.figures)} figure(s) in {out / 'figures'}" if args.figures else ""), file=stream)
    if args.json is not None:
        files = {"metrics_json": str(out / "metrics.json"), "metrics_md": str(out / "metrics.md"),
                 "figures": [str(p) for p in result.figures]}
        write_json(args.json, evaluate_summary(result, files))
    return 0

"""``twohded train``: train 2HDED:NET from an experiment config (see docs/training.md).

    twohded train --config configs/nyu_paper.yaml data.root=/data/nyu_depth_v2_labeled.mat
    twohded train --config configs/synthetic_quick.yaml train.epochs=2 train.device=cpu
    twohded train --resume runs/nyu_paper                 # continue a stopped run exactly
    torchrun --nproc_per_node 2 -m twohded train --config configs/nyu_paper.yaml data.root=...

Overrides are ``section.key=value`` (values parsed as YAML). The run folder (``--out``, else
``train.out_dir/<name>``) receives ``config.yaml``, ``last.pt``, ``best.pt``, ``log.csv`` and
``tb/``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ..errors import InputError


def add_parser(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train a model from an experiment config (configs/*.yaml)",
        description="Train 2HDED:NET (or a single-head variant) from a YAML experiment config, with "
        "section.key=value overrides. Writes RUN_DIR/config.yaml, last.pt, best.pt, log.csv and "
        "TensorBoard files in RUN_DIR/tb. Several GPUs: torchrun --nproc_per_node N -m twohded train ... "
        "(global batch = train.batch_size x N). See docs/training.md.",
        epilog="examples:\n"
        "  twohded train --config configs/synthetic_quick.yaml\n"
        "  twohded train --config configs/nyu_paper.yaml data.root=/data/nyu_depth_v2_labeled.mat\n"
        "  twohded train --config configs/nyu_paper.yaml train.epochs=10 optim.name=adam optim.betas=[0.5,0.999]\n"
        "  twohded train --resume runs/nyu_paper",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", type=Path, help="experiment YAML file (configs/*.yaml)")
    p.add_argument("--resume", type=Path, metavar="RUN_DIR",
                   help="continue the run in RUN_DIR from its last.pt (with its saved config; overrides still apply)")
    p.add_argument("-o", "--out", type=Path, metavar="RUN_DIR",
                   help="run folder to create (default: train.out_dir/<name>, suffixed -2, -3, ... if taken)")
    p.add_argument("--print-config", action="store_true", help="print the resolved config as YAML and exit")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="config overrides, e.g. train.epochs=3 data.root=/data/nyu optim.lr=1e-4")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..config import apply_overrides, config_from_dict, dump_config, load_config

    if args.config is None and args.resume is None:
        raise InputError("train: give --config FILE (a new run) or --resume RUN_DIR (continue one)")
    if args.config is not None and args.resume is not None:
        raise InputError("train: give either --config (a new run) or --resume (it reuses the run's saved config), not both")
    if args.resume is not None and args.out is not None:
        raise InputError("train: --out does not apply to --resume (the run continues in its own folder)")
    for item in args.overrides:
        if "=" not in item:
            raise InputError(f"argument {item!r}: expected a KEY=VALUE override (e.g. train.epochs=3)")

    if args.print_config:
        if args.config is not None:
            cfg = load_config(args.config, args.overrides)
        else:
            from ..training.trainer import _resolve_resume

            folder, state = _resolve_resume(args.resume)
            cfg = apply_overrides(config_from_dict(state["config"], where=f"{folder}/last.pt config"), args.overrides)
        print(dump_config(cfg), end="")
        return 0

    from ..training import train

    progress = False if args.no_progress else None
    if args.resume is not None:
        result = train(resume=args.resume, overrides=args.overrides, progress=progress)
    else:
        cfg = load_config(args.config, args.overrides)
        result = train(cfg, run_dir=args.out, progress=progress)
    if os.environ.get("RANK", "0") == "0":  # torchrun: rank 0 reports
        if result.best_checkpoint is not None:
            print(f"best {result.best_metric} {result.best_value:.4g}: {result.best_checkpoint}")
        print(f"last: {result.last_checkpoint}")
    return 143 if result.stopped else 0  # 128 + SIGTERM: stopped early, resumable

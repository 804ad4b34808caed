"""Print parameter counts per part and the feature sizes of Table I (256x256 input).

Usage::

    python -m twohded.models.summary            # 2hded
    python -m twohded.models.summary 2hded-depth
"""

from __future__ import annotations

import argparse

import torch

from twohded.models.registry import create_model, list_models
from twohded.models.twohded import HEADS, TwoHDEDNet, count_parameters


def parameter_table(model: TwoHDEDNet) -> list[tuple[str, int]]:
    """``[(part, count), ...]`` for encoder, each decoder and head, and the total."""
    rows = [("encoder (DenseNet-121, 3x3 stem + 4x4 down-conv)", count_parameters(model.encoder))]
    for head in HEADS:
        if head in model.outputs:
            rows.append((f"{head} decoder (5 blocks)", count_parameters(getattr(model, f"{head}_decoder"))))
            rows.append((f"{head} head (3x3 conv, no bias)", count_parameters(getattr(model, f"{head}_head"))))
    rows.append(("total", count_parameters(model)))
    return rows


@torch.no_grad()
def feature_sizes(model: TwoHDEDNet, size: int = 256) -> list[tuple[str, tuple[int, ...]]]:
    """Shapes ``(C, H, W)`` of every encoder feature and decoder block output for a ``size`` x ``size`` input.

    A model built on the ``meta`` device (``with torch.device("meta"): create_model(...)``)
    gives the shapes without computing anything.
    """
    model.eval()
    rows: list[tuple[str, tuple[int, ...]]] = []
    x = torch.rand(1, 3, size, size, device=next(model.parameters()).device)
    rows.append(("input", tuple(x.shape[1:])))
    feats = model.encoder(x)
    for name, f in zip(("stem skip", "transition1 skip", "transition2 skip", "transition3 skip", "bottleneck"), feats):
        rows.append((f"encoder {name}", tuple(f.shape[1:])))
    for head in HEADS:
        if head not in model.outputs:
            continue
        dec = getattr(model, f"{head}_decoder")
        hooks, outs = [], []
        for blk in dec.blocks:
            hooks.append(blk.register_forward_hook(lambda m, i, o: outs.append(tuple(o.shape[1:]))))
        y = getattr(model, f"{head}_head")(dec(feats))
        for h in hooks:
            h.remove()
        for k, shape in zip((5, 4, 3, 2, 1), outs):
            rows.append((f"{head} decoder block{k}", shape))
        rows.append((f"{head} output", tuple(y.shape[1:])))
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", nargs="?", default="2hded", choices=list_models())
    parser.add_argument("--size", type=int, default=256)
    args = parser.parse_args(argv)
    model = create_model(args.name)
    print(f"{args.name}: parameters")
    for part, n in parameter_table(model):
        print(f"  {part:<50s} {n:>12,d}")
    print(f"{args.name}: feature sizes for a {args.size}x{args.size} input (C, H, W)")
    for part, shape in feature_sizes(model, args.size):
        print(f"  {part:<50s} {str(shape):>18s}")


if __name__ == "__main__":
    main()

"""Size of the .safetensors inference file of a randomly initialised model, float32 vs int8, and
the largest output difference between the two (docs/formats.md quotes this script's output).

    python scripts/weights_size.py [--model 2hded] [--size 256] [--seed 0]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from twohded.checkpoint import model_from_checkpoint
from twohded.models import count_parameters, create_model
from twohded.weights import save_weights


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="2hded")
    p.add_argument("--size", type=int, default=256, help="test input side, pixels (default 256)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.manual_seed(args.seed)
    model = create_model(args.model).eval()
    x = torch.rand(1, 3, args.size, args.size, generator=torch.Generator().manual_seed(args.seed + 1))
    print(f"{args.model}: {count_parameters(model) / 1e6:.1f}M parameters; input 1x3x{args.size}x{args.size} uniform [0, 1]")
    with tempfile.TemporaryDirectory() as d, torch.no_grad():
        ref = model(x)
        for int8 in (False, True):
            path = Path(d) / f"m{int(int8)}.safetensors"
            save_weights(path, model.state_dict(), args.model, {}, {}, int8=int8)
            out = model_from_checkpoint(path)(x)
            diffs = {k: (getattr(ref, k) - getattr(out, k)).abs().max().item()
                     for k in ("depth", "aif") if getattr(ref, k) is not None}
            spans = {k: (getattr(ref, k).max() - getattr(ref, k).min()).item() for k in diffs}
            size = path.stat().st_size
            print(f"{'int8' if int8 else 'float32'}: {size / 1e6:.1f} MB ({size / 2**20:.1f} MiB); max |diff| vs float32: "
                  + ", ".join(f"{k} {v:.2e} (output range {spans[k]:.2e})" for k, v in diffs.items()))


if __name__ == "__main__":
    main()

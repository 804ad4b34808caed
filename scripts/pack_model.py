"""Carry a trained run's weights off the GPU machine in int8 (its files are at most 16 MiB each):

    python scripts/pack_model.py RUN/last.pt OUT_DIR [--part-mib 15]

Writes OUT_DIR/model_int8.pt.partNN (a tensors-only state dict from :mod:`twohded.quantize`
plus the checkpoint's plain fields, loadable with ``weights_only=True`` once re-joined with
``cat``) and RUN/dequant.pt, the same checkpoint with the int8 weights dequantised, so that
``twohded evaluate`` can measure what int8 costs.
"""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import torch

from twohded.checkpoint import load_checkpoint, save_checkpoint
from twohded.quantize import dequantize_int8, quantize_int8

FIELDS = ("model_name", "model_options", "config", "step", "epoch", "metrics")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--part-mib", type=float, default=15.0)
    args = p.parse_args()
    ckpt = load_checkpoint(args.checkpoint)
    state = ckpt["ema_state"] or ckpt["model_state"]
    q = quantize_int8(state)
    meta = {k: ckpt.get(k) for k in FIELDS}
    buf = io.BytesIO()
    torch.save({"state": q, "meta": json.dumps(meta, default=str)}, buf)
    data = buf.getvalue()
    part = int(args.part_mib * 2**20)
    args.out.mkdir(parents=True, exist_ok=True)
    for i in range(0, len(data), part):
        (args.out / f"model_int8.pt.part{i // part:02d}").write_bytes(data[i:i + part])
    fields = {k: ckpt[k] for k in ckpt if k in FIELDS or k == "model_options"}
    save_checkpoint(args.checkpoint.with_name("dequant.pt"), {**fields, "model_state": dequantize_int8(q), "ema_state": None})
    print(f"packed {args.checkpoint} (step {ckpt.get('step')}): {len(data) / 1e6:.1f} MB int8 in "
          f"{(len(data) + part - 1) // part} parts; {args.checkpoint.with_name('dequant.pt')}")


if __name__ == "__main__":
    main()

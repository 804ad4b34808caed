"""``twohded export``: a checkpoint as an ONNX file with dynamic batch, height and width, or as
a pickle-free ``.safetensors`` weights file for sharing (:mod:`twohded.weights`).

    twohded export --checkpoint runs/nyu/best.pt --onnx model.onnx
    twohded export --checkpoint runs/nyu --onnx model.onnx --size 640x480 --opset 17
    twohded export --checkpoint runs/nyu --weights model.safetensors [--int8]

Input ``image`` ``(N, 3, H, W)`` float32 in [0, 1] with H and W multiples of 32; outputs
``depth`` (metres) and/or ``aif`` (the heads of the variant). The file is checked with
onnxruntime on the CPU against PyTorch before it is written. See :mod:`twohded.export`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import InputError


def add_parser(sub) -> None:
    from ..export import DEFAULT_OPSET, EXPORTERS, ONNX_RTOL

    p = sub.add_parser(
        "export",
        help="export a checkpoint to ONNX (dynamic batch, height and width)",
        description="Export a checkpoint's network to ONNX: input 'image' (N, 3, H, W) float32 RGB in [0, 1] "
        "with H and W multiples of 32 (all three dynamic); outputs 'depth' (N, 1, H, W) metres and/or 'aif' "
        "(N, 3, H, W) in [0, 1], the heads of the model variant. The file is checked with onnxruntime on the "
        f"CPU (at two sizes and batches; tolerance {ONNX_RTOL:g} of max(1, |output|)) and written only if "
        "the check passes. See docs/speed.md.",
    )
    p.add_argument("--checkpoint", required=True, type=Path, help="checkpoint file, or run folder with best.pt / last.pt")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--onnx", type=Path, metavar="OUT.onnx", help="the ONNX file to write")
    what.add_argument("--weights", type=Path, metavar="OUT.safetensors",
                      help="write the weights and the model's name, options and provenance as one .safetensors "
                      "file (no pickle: safe to share; predict, evaluate and load_model read it). See docs/formats.md")
    p.add_argument("--int8", action="store_true", help="with --weights: convolution / linear weights as int8 with "
                   "per-output-channel float scales (about a quarter of the size; dequantised at load)")
    p.add_argument("--model", default=None, help="refuse a checkpoint of another model variant (e.g. 2hded)")
    p.add_argument("--no-ema", action="store_true", help="export the raw weights even if the checkpoint has EMA weights")
    p.add_argument("--size", default="256", help="example input used for tracing: N or WIDTHxHEIGHT, multiples "
                   "of 32 (default 256); the exported graph accepts any multiple of 32")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (default {DEFAULT_OPSET})")
    p.add_argument("--exporter", choices=EXPORTERS, default="auto",
                   help="torchscript (needs onnx; seconds), dynamo (needs onnxscript; about a minute), "
                   "auto: torchscript, else dynamo (default)")
    p.add_argument("--no-check", action="store_true", help="skip the onnxruntime comparison")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..checkpoint import load_checkpoint, model_from_checkpoint
    from ..data import parse_size
    from ..export import export_onnx
    from ..io import check_output_file

    if args.weights is not None:
        return _run_weights(args)
    if args.int8:
        raise InputError("--int8 applies to --weights only")
    out: Path = check_output_file(args.onnx, ".onnx", args.overwrite)
    height, width = parse_size(args.size)
    state = load_checkpoint(args.checkpoint)
    model = model_from_checkpoint(state, expect_name=args.model, use_ema=not args.no_ema)
    meta = {"twohded.model": str(state["model_name"]), "twohded.checkpoint": Path(str(state.get("path", ""))).name}
    if state.get("step") is not None:
        meta["twohded.step"] = str(state["step"])
    result = export_onnx(
        model, out, height=height, width=width, opset=args.opset, exporter=args.exporter, check=not args.no_check,
        metadata=meta, overwrite=args.overwrite,
    )
    size_mb = out.stat().st_size / 2**20
    print(f"wrote {out} ({size_mb:.1f} MiB, {result.exporter} exporter, opset {result.opset}): input image "
          f"(N, 3, H, W), H and W multiples of {result.metadata['twohded.multiple']}; "
          f"outputs {', '.join(result.outputs)}")
    if result.check is not None:
        worst = {}
        for per_size in result.check["max_abs_diff"].values():
            for name, d in per_size.items():
                worst[name] = max(worst.get(name, 0.0), d)
        sizes = ", ".join("x".join(str(v) for v in s) for s in result.check["sizes"])
        print(f"checked with onnxruntime {result.check['onnxruntime']} on the CPU at {sizes} (NxHxW): max |ONNX - PyTorch| "
              + ", ".join(f"{k} {v:.2e}" for k, v in worst.items()) + " (within tolerance)")
    return 0


def _run_weights(args: argparse.Namespace) -> int:
    """``--weights OUT.safetensors``: the checkpoint's (EMA) weights plus metadata, no ONNX."""
    from ..checkpoint import load_checkpoint, model_from_checkpoint
    from ..io import check_output_file
    from ..weights import weights_from_checkpoint

    out: Path = check_output_file(args.weights, ".safetensors", args.overwrite)
    state = load_checkpoint(args.checkpoint)
    if Path(state["path"]).resolve() == out.resolve():
        raise InputError(f"{out}: is the checkpoint being exported; write to another file")
    model_from_checkpoint(state, expect_name=args.model, use_ema=not args.no_ema)  # the weights fit the model
    weights_from_checkpoint(state, out, use_ema=not args.no_ema, int8=args.int8)
    size_mb = out.stat().st_size / 2**20
    print(f"wrote {out} ({size_mb:.1f} MiB, {state['model_name']}{', int8 weights' if args.int8 else ', float32'}): "
          "load it with twohded.load_model, predict --checkpoint or evaluate --checkpoint")
    return 0

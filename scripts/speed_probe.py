"""Where does 2HDED:NET's GPU time go? A diagnostic companion to benchmarks/speed_benchmark.py.

    python scripts/speed_probe.py --out DIR [--parts infer,train,convt,batch]

Parts (each prints a Markdown table and adds to DIR/speed_probe.json):

* ``infer``: torch.profiler over eager fast-path calls (BatchNorms folded, bf16, channels-last,
  no CUDA graphs) at 480x640 batch 8: device time per aten operator (the kernels each launches),
  and per convolution shape (input shape, weight shape) for the top convolutions;
* ``train``: the same for one training step (bf16 autocast, channels-last, SGD, the hybrid loss)
  at 256x256 batch 32;
* ``convt``: the decoder's ConvTranspose2d(4x4, stride 2) against the same map written as a 3x3
  convolution to 4x the channels plus pixel_shuffle (``twohded.fast``'s sub-pixel form), per
  decoder block at 480x640 batch 8, bf16 channels-last;
* ``batch``: model-only training images/s (bf16, channels-last, fused SGD, eager) at batches
  32, 64 and 128.

Not a test and not the benchmark of record: a measuring tool for the speed work (docs/speed.md).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


class SubpixelConvTranspose(torch.nn.Module):
    """``ConvTranspose2d(kernel 4, stride 2, padding 1)`` as a 3x3 convolution to 4x the channels
    followed by ``pixel_shuffle(2)``: the same map, in a form cuDNN runs as an ordinary
    convolution (the transposed one runs as a backward-data kernel).

    Output phase ``(a, b)`` (row ``2i + a``, column ``2j + b``) of the transposed convolution
    reads input rows ``i - 1, i`` (a = 0, kernel rows 3, 1) or ``i, i + 1`` (a = 1, kernel rows
    2, 0), and likewise for columns: a 3x3 window with a quarter of its taps zero. The 3x3
    convolution therefore does 9/4 of the transposed convolution's multiply-adds.
    ``(B, C_in, h, w)`` -> ``(B, C_out, 2h, 2w)``.
    """

    def __init__(self, conv) -> None:
        super().__init__()
        self.conv = conv

    def forward(self, x):
        return torch.nn.functional.pixel_shuffle(self.conv(x), 2)


def subpixel_from_transpose(ct) -> SubpixelConvTranspose:
    """The :class:`SubpixelConvTranspose` equal to ``ct`` (kernel 4, stride 2, padding 1, no
    groups or dilation, no output padding); ValueError for any other transposed convolution."""
    if not (ct.kernel_size == (4, 4) and ct.stride == (2, 2) and ct.padding == (1, 1) and ct.groups == 1
            and ct.dilation == (1, 1) and ct.output_padding == (0, 0)):
        raise ValueError(f"subpixel_from_transpose: only ConvTranspose2d(4, stride 2, padding 1), got {ct}")
    w = ct.weight.detach()  # (C_in, C_out, 4, 4)
    c_in, c_out = w.shape[:2]
    k = w.new_zeros(c_out, 2, 2, c_in, 3, 3)  # (o, a, b, c, dh + 1, dw + 1)
    taps = {0: {-1: 3, 0: 1}, 1: {0: 2, 1: 0}}  # phase -> {input offset: kernel index}
    for a, rows in taps.items():
        for b, cols in taps.items():
            for dh, kh in rows.items():
                for dw, kw in cols.items():
                    k[:, a, b, :, dh + 1, dw + 1] = w[:, :, kh, kw].t()
    conv = torch.nn.Conv2d(c_in, 4 * c_out, 3, padding=1, bias=ct.bias is not None, device=w.device, dtype=w.dtype)
    with torch.no_grad():
        conv.weight.copy_(k.reshape(4 * c_out, c_in, 3, 3))
        if ct.bias is not None:
            conv.bias.copy_(ct.bias.detach().repeat_interleave(4))
    conv.train(ct.training)
    return SubpixelConvTranspose(conv)


def timed(fn, iters: int = 20, warmup: int = 5) -> float:
    """Median seconds per call (CUDA-synchronised)."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    ts = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        ts.append(time.perf_counter() - t0)
    ts.sort()
    return ts[len(ts) // 2]


def op_table(prof, calls: int, top: int = 25) -> list[dict]:
    """Aten operators by device time (their kernels, children included), per call."""
    rows = []
    for e in prof.key_averages():
        if not e.key.startswith("aten::"):
            continue
        us = getattr(e, "device_time_total", None)
        if us is None:
            us = getattr(e, "cuda_time_total", 0.0)
        if us:
            rows.append({"op": e.key, "ms": us / 1e3 / calls, "count": e.count / calls})
    rows.sort(key=lambda r: -r["ms"])
    return rows[:top]


def shape_table(prof, calls: int, top: int = 20) -> list[dict]:
    rows = []
    for e in prof.key_averages(group_by_input_shape=True):
        if e.key not in ("aten::cudnn_convolution", "aten::cudnn_convolution_transpose", "aten::convolution_backward",
                         "aten::native_batch_norm", "aten::cudnn_batch_norm", "aten::cat"):
            continue
        us = getattr(e, "device_time_total", None) or getattr(e, "cuda_time_total", 0.0)
        if us:
            rows.append({"op": e.key, "shapes": str(e.input_shapes)[:110], "ms": us / 1e3 / calls, "count": e.count / calls})
    rows.sort(key=lambda r: -r["ms"])
    return rows[:top]


def kernel_total(prof, calls: int) -> tuple[float, float]:
    total = n = 0.0
    for e in prof.key_averages():
        if "cuda" in str(getattr(e, "device_type", "")).lower():
            total += (getattr(e, "self_device_time_total", None) or getattr(e, "self_cuda_time_total", 0.0))
            n += e.count
    return total / 1e3 / calls, n / calls


def show(title: str, rows: list[dict], cols: list[str]) -> None:
    print(f"\n### {title}\n| " + " | ".join(cols) + " |\n|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(f"{r[c]:.3f}" if isinstance(r[c], float) else f"`{r[c]}`" if c in ("op", "shapes") else str(r[c])
                                 for c in cols) + " |")


def profiled(fn, calls: int):
    from torch.profiler import ProfilerActivity, profile

    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA], record_shapes=True) as prof:
        for _ in range(calls):
            fn()
        torch.cuda.synchronize()
    return prof


def part_infer(results: dict) -> None:
    from twohded.fast import InferenceSettings, prepare_inference
    from twohded.models import create_model

    torch.backends.cudnn.benchmark = True
    model = create_model("2hded").cuda().eval()
    run = prepare_inference(model, "cuda", InferenceSettings(cuda_graphs=False))
    x = torch.rand(8, 3, 480, 640, device="cuda")
    prof = profiled(lambda: run(x), 5)
    ms, launches = kernel_total(prof, 5)
    print(f"\ninference 480x640 b8, eager fast path: {ms:.2f} ms device time / call, {launches:.0f} kernels / call")
    ops, shapes = op_table(prof, 5), shape_table(prof, 5)
    show("inference: aten ops by device time (ms / call, children included)", ops, ["op", "ms", "count"])
    show("inference: top operator shapes", shapes, ["op", "shapes", "ms", "count"])
    results["infer"] = {"device_ms": ms, "kernels": launches, "ops": ops, "shapes": shapes}


def part_train(results: dict) -> None:
    from twohded.losses import HybridLoss
    from twohded.models import create_model

    torch.backends.cudnn.benchmark = True
    model = create_model("2hded").cuda().train().to(memory_format=torch.channels_last)
    loss_fn = HybridLoss()
    opt = torch.optim.SGD(model.parameters(), lr=2e-4, momentum=0.9, fused=True)
    x = torch.rand(32, 3, 256, 256, device="cuda").contiguous(memory_format=torch.channels_last)
    d = torch.rand(32, 1, 256, 256, device="cuda") * 9 + 1
    a = torch.rand(32, 3, 256, 256, device="cuda")
    m = d > 0

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = model(x)
        loss = loss_fn(out, depth=d, aif=a, mask=m)
        loss.total.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    prof = profiled(step, 3)
    ms, launches = kernel_total(prof, 3)
    print(f"\ntraining step 256x256 b32 (bf16, channels-last, eager): {ms:.2f} ms device time / step, {launches:.0f} kernels / step"
          f" = {32 / ms * 1e3:.0f} images/s if the GPU never waited")
    ops, shapes = op_table(prof, 3, 30), shape_table(prof, 3)
    show("training: aten ops by device time (ms / step, children included)", ops, ["op", "ms", "count"])
    show("training: top operator shapes", shapes, ["op", "shapes", "ms", "count"])
    results["train"] = {"device_ms": ms, "kernels": launches, "ops": ops, "shapes": shapes}


def part_convt(results: dict) -> None:
    from torch import nn

    torch.backends.cudnn.benchmark = True
    rows = []
    # decoder blocks at 480x640: (in, out, input h, w)
    for cin, cout, h, w in ((1024, 512, 15, 20), (1024, 256, 30, 40), (512, 128, 60, 80), (256, 64, 120, 160), (128, 64, 240, 320)):
        ct = nn.ConvTranspose2d(cin, cout, 4, 2, 1).cuda().to(torch.bfloat16).to(memory_format=torch.channels_last)
        sp = subpixel_from_transpose(ct).cuda().to(torch.bfloat16)
        x = torch.randn(8, cin, h, w, device="cuda", dtype=torch.bfloat16).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            ref, new = ct(x), sp(x)
            err = float((ref.float() - new.float()).abs().max() / ref.float().abs().max())
            t_ct = timed(lambda: ct(x))
            t_sp = timed(lambda: sp(x))
        flops = 2 * 4 * cin * cout * (2 * h) * (2 * w) * 8
        rows.append({"block": f"{cin}->{cout} @ {2 * h}x{2 * w}", "convT ms": t_ct * 1e3, "subpixel ms": t_sp * 1e3,
                     "ratio": t_ct / t_sp, "convT TFLOP/s": flops / t_ct / 1e12, "rel err": err})
    show("ConvTranspose2d vs sub-pixel 3x3 conv + pixel_shuffle (480x640 b8, bf16, channels-last)", rows,
         ["block", "convT ms", "subpixel ms", "ratio", "convT TFLOP/s", "rel err"])
    results["convt"] = rows


def part_batch(results: dict) -> None:
    from twohded.losses import HybridLoss
    from twohded.models import create_model

    torch.backends.cudnn.benchmark = True
    rows = []
    for b in (32, 64, 128):
        model = create_model("2hded").cuda().train().to(memory_format=torch.channels_last)
        loss_fn = HybridLoss()
        opt = torch.optim.SGD(model.parameters(), lr=2e-4, momentum=0.9, fused=True)
        x = torch.rand(b, 3, 256, 256, device="cuda").contiguous(memory_format=torch.channels_last)
        d = torch.rand(b, 1, 256, 256, device="cuda") * 9 + 1
        a = torch.rand(b, 3, 256, 256, device="cuda")

        def step():
            with torch.autocast("cuda", dtype=torch.bfloat16):
                out = model(x)
            loss = loss_fn(out, depth=d, aif=a, mask=d > 0)
            loss.total.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        torch.cuda.reset_peak_memory_stats()
        t = timed(step, iters=8, warmup=3)
        rows.append({"batch": b, "images/s": b / t, "ms / step": t * 1e3,
                     "peak GiB": torch.cuda.max_memory_allocated() / 2**30})
        model = opt = x = d = a = None  # free them before the next batch size
        torch.cuda.empty_cache()
    show("model-only training, bf16 + channels-last + fused SGD, eager, 256x256", rows,
         ["batch", "images/s", "ms / step", "peak GiB"])
    results["batch"] = rows


PARTS = {"infer": part_infer, "train": part_train, "convt": part_convt, "batch": part_batch}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--parts", default="infer,train,convt,batch")
    a = p.parse_args()
    if not torch.cuda.is_available():
        print("speed_probe: needs a CUDA GPU", file=sys.stderr)
        return 2
    a.out.mkdir(parents=True, exist_ok=True)
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, cuDNN {torch.backends.cudnn.version()}")
    results: dict = {"device": torch.cuda.get_device_name(), "torch": torch.__version__}
    for name in a.parts.split(","):
        t0 = time.perf_counter()
        try:
            PARTS[name](results)
        except Exception as exc:  # noqa: BLE001 - a diagnostic: report and go on
            print(f"\n{name}: FAILED: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
            results[name] = {"failed": repr(exc)}
        print(f"({name}: {time.perf_counter() - t0:.0f} s)")
        (a.out / "speed_probe.json").write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

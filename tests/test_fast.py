"""The fast inference path (twohded.fast) on the CPU: its mechanism against the fp32 path.

bf16 tolerance: ``max |fast - fp32| <= BF16_RTOL x range(fp32 output)`` (3 %; measured here
about 0.5 %). CUDA graphs are checked only where a GPU is present.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from twohded.cli import build_parser
from twohded.data import SyntheticScenes
from twohded.evaluate import evaluate_model
from twohded.fast import (
    ConvReLU,
    Float32,
    GemmHead,
    InferenceSettings,
    fold_batchnorm,
    fuse_conv_relu,
    gemm_heads,
    max_abs_diff,
    prepare_inference,
    within_bf16_tolerance,
)
from twohded.errors import InputError
from twohded.models import create_model
from twohded.predict import Predictor

from .conftest import REPO_ROOT

BF16 = InferenceSettings(autocast=True, channels_last=True)  # what CUDA gets by default, minus graphs


def _count(model: nn.Module, cls) -> int:
    return sum(isinstance(m, cls) for m in model.modules())


@pytest.fixture(scope="module")
def lively():
    """A random 2HDED:NET whose outputs are not trivial: depth of about a metre, a real AiF residual,
    BatchNorm statistics that are not the identity."""
    torch.manual_seed(0)
    model = create_model("2hded", aif_zero_init=False)
    with torch.no_grad():
        model.depth_head.weight.mul_(300.0)
        model.aif_head.weight.mul_(20.0)
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 2.0)
    return model.eval()


@pytest.fixture(scope="module")
def images():
    return torch.rand(1, 3, 32, 64, generator=torch.Generator().manual_seed(3))


@pytest.fixture(scope="module")
def reference(lively, images):
    with torch.inference_mode():
        return lively(images)


def test_reference_settings_run_the_model_itself(lively, images, reference):
    run = prepare_inference(lively, "cpu", InferenceSettings.reference())
    assert run.model is lively and not run.settings.fast and run.folded_bn == 0
    out = run(images)
    assert torch.equal(out.depth, reference.depth) and torch.equal(out.aif, reference.aif)


def test_batchnorm_folding_is_exact_in_fp32_and_leaves_the_model_alone(lively, images, reference):
    before = copy.deepcopy(lively.state_dict())
    run = prepare_inference(lively, "cpu", InferenceSettings())  # the CPU's fast settings: folding only
    assert run.settings.fast and not run.settings.autocast and not run.settings.cuda_graphs
    assert run.folded_bn == 80  # stem 2 + dense layers 58 + decoder blocks 2 x 10
    assert _count(run.model, nn.BatchNorm2d) == 142 - 80
    out = run(images)
    assert out.depth.dtype == torch.float32
    for name, d in max_abs_diff(out, reference).items():
        assert d <= 1e-4 * max(1.0, float(getattr(reference, name).abs().max())), (name, d)
    # the caller's model: same weights, same BatchNorms, same mode
    assert _count(lively, nn.BatchNorm2d) == 142 and not lively.training
    after = lively.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_fold_batchnorm_skips_training_mode():
    model = create_model("2hded-depth").train()
    assert fold_batchnorm(model) == 0


def test_bf16_autocast_within_bf16_tolerance(lively, images, reference):
    run = prepare_inference(lively, "cpu", BF16)
    s = run.settings
    assert s.autocast and s.dtype == "bf16" and s.channels_last and s.cast_weights and s.fp32_heads
    # convolutions hold bf16 weights, the output heads stay float32
    convs = [m for m in run.model.modules() if isinstance(m, nn.Conv2d)]
    assert any(c.weight.dtype == torch.bfloat16 for c in convs)
    assert isinstance(run.model.depth_head, Float32) and run.model.depth_head.inner.weight.dtype == torch.float32
    out = run(images)
    assert out.depth.dtype == torch.float32 and out.aif.dtype == torch.float32
    assert float(reference.depth.abs().max()) > 0.1  # a meaningful comparison
    assert within_bf16_tolerance(out.depth, reference.depth)
    assert within_bf16_tolerance(out.aif, reference.aif)
    assert not torch.equal(out.depth, reference.depth)  # it did run in bf16
    # without folding / weight casting / fp32 heads: plain autocast, also within tolerance
    plain = prepare_inference(lively, "cpu", InferenceSettings(autocast=True, fold_bn=False, cast_weights=False, fp32_heads=False))
    o2 = plain(images)
    assert within_bf16_tolerance(o2.depth, reference.depth) and within_bf16_tolerance(o2.aif, reference.aif)


def test_channels_last_equals_contiguous(lively, images, reference):
    run = prepare_inference(lively, "cpu", InferenceSettings(channels_last=True, fold_bn=False))
    assert run.model.encoder.features.conv0.weight.is_contiguous(memory_format=torch.channels_last)
    out = run(images)
    for name, d in max_abs_diff(out, reference).items():
        assert d <= 1e-4 * max(1.0, float(getattr(reference, name).abs().max())), (name, d)


def test_settings_resolve_per_device():
    auto = InferenceSettings.from_flags(None)
    cpu = auto.resolve("cpu")
    assert not cpu.fast and not cpu.autocast and not cpu.fold_bn and not cpu.cuda_graphs
    gpu = auto.resolve("cuda")  # pure logic: no GPU needed
    assert gpu.fast and gpu.autocast and gpu.channels_last and gpu.cuda_graphs and gpu.fold_bn and not gpu.compile
    assert InferenceSettings.from_flags(False).resolve("cuda").fast is False
    assert InferenceSettings.from_flags(True).resolve("cpu").fold_bn  # --fast on a CPU: folding, fp32
    assert not InferenceSettings.from_flags(True).resolve("cpu").autocast
    ro = InferenceSettings(compile=True, compile_mode="reduce-overhead").resolve("cuda")
    assert ro.compile and not ro.cuda_graphs  # that mode captures its own graphs
    assert InferenceSettings.from_flags(False, compile=True).resolve("cuda").compile  # --no-fast --compile: fp32 compiled
    with pytest.raises(InputError, match="compile mode"):
        InferenceSettings(compile=True, compile_mode="fastest")
    with pytest.raises(InputError, match="dtype"):
        InferenceSettings(dtype="int8")


def test_predict_fast_on_and_off_agree(lively):
    x = torch.rand(3, 32, 80, generator=torch.Generator().manual_seed(5))
    off = Predictor(lively, device="cpu", fast=False)
    assert not off.fast and off.model is lively
    on = Predictor(lively, device="cpu", settings=BF16)
    assert on.fast and on.runner.settings.autocast
    a, b = off.predict(x), on.predict(x)
    assert within_bf16_tolerance(torch.from_numpy(b.depth), torch.from_numpy(a.depth))
    assert within_bf16_tolerance(torch.from_numpy(b.aif), torch.from_numpy(a.aif))
    # tiled, batched: the same path
    tiled = Predictor(lively, device="cpu", settings=BF16, max_side=64, overlap=16, batch_size=2).predict(x)
    assert tiled.tiles > 1 and np.isfinite(tiled.depth).all()
    # default on the CPU: the plain path
    assert not Predictor(lively, device="cpu").fast


def test_evaluate_fast_on_and_off_agree(lively):
    ds = SyntheticScenes(None, "test", n=2, height=32, width=64, defocus="render", preset="paper")
    lively.train()  # evaluate_model restores the caller's mode
    try:
        off = evaluate_model(lively, ds, dataset_name="synthetic", device="cpu", fast=False)
        on = evaluate_model(lively, ds, dataset_name="synthetic", device="cpu", settings=BF16)
        assert lively.training and _count(lively, nn.BatchNorm2d) == 142
    finally:
        lively.eval()
    assert off.settings["fast"] is False and on.settings["fast"] is True
    assert on.settings["inference"]["autocast"] and on.settings["inference"]["folded_bn"] == 80
    for key in ("rmse", "abs_rel"):
        assert on.depth[key] == pytest.approx(off.depth[key], rel=0.03), key
    assert on.aif["psnr"] == pytest.approx(off.aif["psnr"], abs=0.5)


def test_cli_fast_flags_parse():
    parser = build_parser()
    base = ["predict", "x.png", "--checkpoint", "c.pt", "--out", "o"]
    assert parser.parse_args(base).fast is None
    assert parser.parse_args(base + ["--no-fast"]).fast is False
    assert parser.parse_args(base + ["--fast"]).fast is True
    args = parser.parse_args(base + ["--compile", "--compile-mode", "max-autotune-no-cudagraphs"])
    assert args.compile and args.compile_mode == "max-autotune-no-cudagraphs"
    ev = parser.parse_args(["evaluate", "--checkpoint", "c.pt", "--data", "synthetic", "--no-fast"])
    assert ev.fast is False and not ev.compile
    with pytest.raises(SystemExit):
        parser.parse_args(base + ["--compile-mode", "turbo"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
def test_cuda_graphs_match_eager_and_do_not_alias(lively, images):
    run = prepare_inference(lively, "cuda", InferenceSettings())
    eager = prepare_inference(lively, "cuda", InferenceSettings(cuda_graphs=False))
    x2 = images.flip(-1)
    outs = [run(images), run(images), run(x2), run(images)]  # 2nd call captures, then replays
    assert run.describe()["captured_shapes"] == [[1, 3, 32, 64]] and not run.notes
    ref1, ref2 = eager(images), eager(x2)
    for o, r in ((outs[1], ref1), (outs[2], ref2), (outs[3], ref1)):
        assert max(max_abs_diff(o, r).values()) <= 1e-3 * max(1.0, float(r.depth.abs().max()))
    assert not torch.equal(outs[1].depth, outs[2].depth)  # a replay does not overwrite returned tensors


def test_graph_bookkeeping_with_a_stand_in_graph(monkeypatch):
    """Capture on the second call of a shape, replay after, LRU of max_graphs shapes, returned tensors
    not overwritten by later replays, and a capture failure falling back to eager: with a CPU stand-in
    for the CUDA graph that, like a replay, writes into the same output buffers every time."""
    import twohded.fast.runner as runner_module
    from twohded.models import DefocusModel, ModelOutput

    class Net(DefocusModel):
        outputs = ("depth", "aif")

        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 1, 3, padding=1)

        def forward(self, x):
            return ModelOutput(depth=self.conv(x), aif=x.flip(1))

    class StandIn:
        """Like :class:`twohded.cuda_graph.CapturedGraph`: static inputs, one output written in place per replay."""

        made: list = []

        def __init__(self, fn, example, **kwargs):
            x = example["x"]
            if x.shape[-1] == 13:
                raise RuntimeError("operation not permitted when stream is capturing")
            StandIn.made.append(tuple(x.shape))
            self.fn, self.static_in = fn, {"x": x.clone()}
            self.static_out = fn(self.static_in)

        def __call__(self, inputs):
            self.static_in["x"].copy_(inputs["x"])
            for buf, new in zip(self.static_out, self.fn(self.static_in)):
                buf.copy_(new)
            return self.static_out

    monkeypatch.setattr(runner_module, "CapturedGraph", StandIn)
    run = prepare_inference(Net(), "cpu", InferenceSettings(max_graphs=2))
    run._graphs_on = True  # the CPU has no CUDA graphs: drive the bookkeeping directly

    def call(x):
        with torch.inference_mode():
            out, static = run._graph_call(x)
            return runner_module._as_float(out, clone=static), static

    a, b = torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8)
    assert call(a)[1] is False and StandIn.made == []  # first call of a shape: eager
    first, static = call(a)
    assert static and StandIn.made == [(1, 3, 8, 8)]  # second: captured
    second, _ = call(b)  # replayed into the same buffers
    assert torch.equal(first.aif, a.flip(1)) and torch.equal(second.aif, b.flip(1))  # no aliasing
    for shape in ((1, 3, 8, 16), (1, 3, 16, 8)):
        x = torch.rand(shape)
        call(x), call(x)
    assert run.describe()["captured_shapes"] == [[1, 3, 8, 16], [1, 3, 16, 8]]  # LRU: max_graphs = 2
    x = torch.rand(1, 3, 8, 13)
    call(x)
    out, static = call(x)  # the capture fails: eager from now on, with a note
    assert not static and not run._graphs_on and "CUDA graphs off" in run.notes[0]
    assert torch.equal(out.aif, x.flip(1))


# --- the benchmark's machinery, on the CPU in --quick mode (the script as a user runs it) ---------


def _benchmark(*args: str, env: dict | None = None) -> str:
    cmd = [sys.executable, str(REPO_ROOT / "benchmarks" / "speed_benchmark.py"), "--quick", "--cpu", *args]
    run_env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT / "src"), os.environ.get("PYTHONPATH")])),
               **(env or {})}
    done = subprocess.run(cmd, capture_output=True, text=True, env=run_env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_speed_benchmark_quick_on_cpu(tmp_path):
    text = _benchmark("--out", str(tmp_path), "--scratch", str(tmp_path))
    assert "## summary: fast / baseline" in text and "## goals" in text
    result = json.loads((tmp_path / "speed_benchmark.json").read_text())
    assert result["failures"] == [], result["failures"]
    sec = result["sections"]
    assert set(sec) == {"matmul", "flops", "inference", "train", "epoch", "render", "dfd"}
    inf = sec["inference"]["rows"]
    assert {r["variant"] for r in inf} >= {"fp32 eager (baseline)", "fast path + CUDA graphs (default)"}
    assert all(r["images_per_s"] > 0 for r in inf)
    assert all(r["within_bf16_tolerance"] for r in inf if "within_bf16_tolerance" in r)
    assert all(r["loss_finite"] and r["images_per_s"] > 0 for r in sec["train"]["rows"])
    epochs = sec["epoch"]["rows"]
    assert len(epochs) == 3 and all(r["epoch_s"] > 0 and r["steps_per_epoch"] >= 1 for r in epochs)
    assert epochs[2]["preload"] and epochs[2]["cuda_graphs"]  # the fastest setting (graphs fall back on a CPU)
    assert sec["epoch"]["data_only"]["images_per_s"] > 0
    assert all(r["images_per_s"] > 0 for r in sec["render"]["rows"])
    assert sec["flops"]["per_image"]["forward_32x32"] > 0
    assert not any(p.name.startswith("twohded_speed_") for p in tmp_path.iterdir())  # scratch removed


def test_speed_benchmark_records_a_failing_variant_and_goes_on(tmp_path):
    _benchmark("--out", str(tmp_path), "--sections", "inference", env={"TWOHDED_SPEED_FAIL_VARIANT": "fast path, eager"})
    result = json.loads((tmp_path / "speed_benchmark.json").read_text())
    assert [f["variant"] for f in result["failures"]] == ["fast path, eager"]
    rows = result["sections"]["inference"]["rows"]
    assert any(r.get("error", "").startswith("RuntimeError: simulated") for r in rows)
    assert sum("images_per_s" in r for r in rows) == 8  # the other four variants x two shapes


def test_speed_benchmark_profile_section_classifies_the_time(tmp_path):
    _benchmark("--sections", "profile", "--out", str(tmp_path))
    runs = json.loads((tmp_path / "speed_benchmark.json").read_text())["sections"]["profile"]["runs"]
    assert [r["shape"] for r in runs] == [[32, 64, 2], [32, 64, 1]]  # the largest shape and its batch 1
    for prof in runs:
        assert prof["launches_per_call"] > 10 and prof["top"]
        assert max(prof["classes_ms_per_call"], key=prof["classes_ms_per_call"].get) == "convolution / matmul"


def test_kernel_classes():
    from twohded.profiling import kernel_class

    assert kernel_class("triton_poi_fused_cat_convolution_relu_7") == "fused element-wise (Triton)"
    assert kernel_class("sm90_xmma_fprop_implicit_gemm_bf16") == "convolution / matmul"
    assert kernel_class("CatArrayBatchedCopy_contig") == "concatenation / copies"
    assert kernel_class("vectorized_elementwise_kernel<clamp_min>") == "normalisation / element-wise / pooling"
    assert kernel_class("something_else") == "other"


def _mm_as_float(monkeypatch):
    """Stand in for CUDA's ``torch.mm(a, b, out_dtype=float32)`` on the CPU: a float32 product."""
    real = torch.mm

    def mm(a, b, out_dtype=None):
        return real(a.float(), b.float()) if out_dtype is not None else real(a, b)

    monkeypatch.setattr(torch, "mm", mm)


@pytest.mark.parametrize("out_channels", [1, 3])
def test_gemm_head_is_the_float32_convolution_of_its_bf16_input(monkeypatch, out_channels):
    torch.manual_seed(out_channels)
    conv = nn.Conv2d(16, out_channels, 3, padding=1)
    head = GemmHead(conv)
    x = torch.randn(2, 16, 9, 13).to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
    _mm_as_float(monkeypatch)
    out = head._gemm(x)  # the GPU path's arithmetic, on the CPU
    ref = conv(x.float())
    assert out.dtype == torch.float32 and out.shape == ref.shape
    # hi + lo weights: float32 weights to ~2^-17, the input exactly; only the summation order differs
    assert float((out - ref).abs().max()) <= 1e-5 * float(ref.abs().max())
    assert torch.equal(head(x.float()), conv(x.float()))  # CPU float32 input: the convolution itself
    z = x.permute(0, 2, 3, 1).reshape(-1, 16).float() @ head.taps.float()  # the GEMM, as torch.compile sees it
    fused = head._shift_sum_fused(z, 2, 9, 13)
    assert float((fused - ref).abs().max()) <= 1e-5 * float(ref.abs().max())


def test_gemm_head_refuses_other_convolutions():
    with pytest.raises(InputError, match="3x3"):
        GemmHead(nn.Conv2d(8, 1, 5, padding=2))


def test_conv_relu_fusion_keeps_the_model_output(lively, images):
    folded = copy.deepcopy(lively).eval()
    fold_batchnorm(folded)
    fused = copy.deepcopy(folded)
    assert fuse_conv_relu(fused) == 68  # 58 dense layers + 2 x 5 decoder blocks
    assert _count(fused, ConvReLU) == 68
    with torch.inference_mode():
        a, b = folded(images), fused(images)
    assert max(max_abs_diff(a, b).values()) <= 1e-5 * max(1.0, float(a.depth.abs().max()))
    unfolded = copy.deepcopy(lively).eval()
    assert fuse_conv_relu(unfolded) == 0  # an unfolded BatchNorm sits between conv and ReLU


def test_gemm_heads_replace_both_heads(lively):
    m = copy.deepcopy(lively)
    assert gemm_heads(m) == 2 and isinstance(m.depth_head, GemmHead) and isinstance(m.aif_head, GemmHead)
    assert m.depth_head.conv.weight.dtype == torch.float32


def test_new_fast_parts_resolve_per_device():
    gpu = InferenceSettings(dtype="bf16").resolve("cuda")  # pure logic: no GPU needed
    assert gpu.gemm_heads and gpu.fuse_relu
    assert not InferenceSettings(dtype="fp16").resolve("cuda").gemm_heads  # fp16 GPUs keep float32 conv heads
    compiled = InferenceSettings(dtype="bf16", compile=True).resolve("cuda")
    assert compiled.gemm_heads and not compiled.fuse_relu  # inductor fuses bias + ReLU itself
    cpu = InferenceSettings(fast=True).resolve("cpu")
    assert not cpu.gemm_heads and not cpu.fuse_relu
    ref = InferenceSettings.reference().resolve("cuda")
    assert not ref.gemm_heads and not ref.fuse_relu
    run = prepare_inference(create_model("2hded").eval(), "cpu", InferenceSettings(fast=True, fuse_relu=True))
    assert _count(run.model, ConvReLU) == 68


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gemm_heads_and_fused_relu_on_the_gpu(lively, images):
    plain = prepare_inference(lively, "cuda", InferenceSettings(cuda_graphs=False, gemm_heads=False, fuse_relu=False))
    new = prepare_inference(lively, "cuda", InferenceSettings(cuda_graphs=False))
    assert _count(new.model, GemmHead) == 2 and _count(new.model, ConvReLU) == 68
    a, b = plain(images), new(images)
    for name in ("depth", "aif"):
        assert within_bf16_tolerance(getattr(b, name), getattr(a, name))

"""Speed of 2HDED:NET: the straightforward fp32 path against the project's fast paths, in one run.

Usage (one GPU; the run is budgeted to stay under 9 minutes, see ``--budget-s``)::

    python benchmarks/speed_benchmark.py --out benchmarks/results/speed_h100
    python benchmarks/speed_benchmark.py --out DIR --skip-compile          # no torch.compile variants
    python benchmarks/speed_benchmark.py --out DIR --sections inference,flops,matmul
    torchrun --nproc_per_node 2 benchmarks/speed_benchmark.py --train-only --out DIR   # DDP scaling
    python benchmarks/speed_benchmark.py --quick --out /tmp/speed          # seconds, CPU smoke test

Sections (``--sections``, comma-separated; default all; they run in the order matmul, flops,
render, inference, epoch, dfd, train, so that the time budget cuts the training compile variants first):

``matmul``
    the measured bf16 matmul rate (8192^3, TFLOP/s): the yardstick for "fraction of peak".
``flops``
    FLOPs per image (``torch.utils.flop_counter``): forward at each inference size, forward +
    backward of a training step at the training size.
``inference``
    images/s and latency at 256x256 (batch 1, 16) and 480x640 (batch 1, 8). Baseline: the
    straightforward fp32 eager forward pass (``model.eval()``, ``torch.inference_mode()``; cuDNN's
    default TF32 convolutions). Variants: bf16 autocast + channels-last; the fast path of
    ``twohded.fast`` without and with CUDA graphs (the default of ``twohded predict`` /
    ``evaluate`` on GPUs); with ``torch.compile`` (inductor, weight freezing) + CUDA graphs. Each
    row gives the max |difference| to the baseline's outputs on rendered synthetic scenes,
    relative to the output's range, and whether it is within bf16 tolerance.
``dfd``
    training on real DFD indoor frames through the trainer (``configs/dfd_d3net.yaml``: frames held
    on the GPU, crops / flips / rotations drawn there) at batch 8 and ``--train-large-batch``; needs
    ``--dfd-root`` (skipped otherwise); goal 600 images/s (issue 18).
``train``
    training images/s at 256x256 through the trainer's own step
    (:class:`twohded.training.step.TrainStep`, DDP by :func:`~twohded.training.step.wrap_ddp`):
    the paper's setting (fp32 eager, SGD momentum 0.9, batch 4,
    the hybrid loss) against bf16 autocast + channels-last + fused SGD at batch 4 and at a
    large batch (``--train-large-batch``, default 64), with a CUDA-graph step, and compiled; projected wall
    time of the paper's schedule (500 epochs x 795 images) at each throughput (model only: the
    batches are already on the GPU). Under torchrun: each variant also wrapped in DDP, with
    per-process and global images/s and the scaling over one process.
``epoch``
    the wall time of full epochs of the NYU-sized workload through the project's real training
    loop (``twohded.training.train``): 795 synthetic 256x256 scenes written beforehand as an
    RGB-D folder (generation time reported separately), read by DataLoader workers, defocus
    rendered on the GPU inside the loop (``defocus: deferred``, ``paper`` camera, flips): the
    paper's setting, the fast setting, and the fastest (``train.preload``: the split rendered
    once and held on the GPU; ``train.cuda_graphs``: a captured step). Two epochs each; the
    projection is the whole two-epoch call (set-up, preloading, first epoch) plus 498 epochs at
    the second epoch's rate.
``render``
    ``twohded.render_defocus`` images/s on GPU batches (``paper`` camera, as in training) and
    ``render_batch`` (what the training loop calls).

Every row records the peak GPU memory. A variant that fails (e.g. torch.compile or CUDA graph
capture on a given machine) is recorded as failed in the table and the JSON, and the run goes
on. Timings: warm-up, then CUDA-synchronised wall-clock, median of repeated calls (inference:
per call; training: per block of steps). ``speed_benchmark.json`` is rewritten after every
section, so a run that is stopped keeps what it measured. A script, not a test: the numbers
depend on the machine.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import gc
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import torch

ROOT = Path(__file__).resolve().parents[1]
try:  # a checkout without ``pip install -e .``: use its src/
    import twohded  # noqa: F401
except ImportError:
    sys.path.insert(0, str(ROOT / "src"))
#: testing hook: ``TWOHDED_SPEED_FAIL_VARIANT=NAME`` makes that inference variant fail (tests check
#: that a failing variant is recorded and the run goes on)
FAIL_ENV = "TWOHDED_SPEED_FAIL_VARIANT"
SECTIONS = ("matmul", "flops", "inference", "train", "epoch", "render", "dfd", "profile")
#: sections run when --sections is not given (profile is on request: it slows nothing else
#: but prints a long table)
DEFAULT_SECTIONS = ("matmul", "flops", "inference", "train", "epoch", "render", "dfd")
#: the order they run in: the slow torch.compile variants of training come last, so that the
#: time budget (--budget-s) cuts those first
RUN_ORDER = ("matmul", "flops", "render", "inference", "epoch", "dfd", "train", "profile")
SCHEDULE_EPOCHS = 500
#: --quick: sizes that a 2-core CPU runs in seconds
QUICK_SHAPES = "32x32x1,32x64x2"
QUICK_SIZE = 32
NYU_TRAIN = 795
GOALS = {
    "inference_480x640_b8_images_per_s": 1000.0,
    "inference_480x640_b1_latency_ms": 2.0,
    "paper_schedule_minutes": 10.0,
    "ddp_two_gpu_scaling": 1.8,
    "dfd_training_256_images_per_s": 600.0,  # issue 18: real DFD frames, GPU-resident crops
}


# ---------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------


def parse_shapes(text: str) -> list[tuple[int, int, int]]:
    """``"256x256x1,480x640x8"`` (HEIGHTxWIDTHxBATCH) -> [(256, 256, 1), (480, 640, 8)]."""
    out = []
    for part in text.split(","):
        part = part.strip().lower()
        if not part:
            continue
        nums = [int(v) for v in part.split("x")]
        if len(nums) != 3 or min(nums) < 1:
            raise SystemExit(f"speed_benchmark: bad shape {part!r}: expected HEIGHTxWIDTHxBATCH, e.g. 480x640x8")
        out.append(tuple(nums))
    return out


def shape_name(shape: tuple[int, int, int]) -> str:
    h, w, b = shape
    return f"{h}x{w} b{b}"


def fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if value != 0 and (abs(value) >= 1e5 or abs(value) < 10 ** (-digits)):
            return f"{value:.2e}"
        return f"{value:.{digits}f}"
    return str(value)


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0][:240] if text else ''}"


class Timer:
    """CUDA-synchronised wall-clock timing of a callable (median of repeats)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def measure(self, fn: Callable[[], Any], *, warmup: int, min_iters: int, max_iters: int, seconds: float,
                per_call: int = 1) -> dict[str, float]:
        """Median seconds per call; ``fn`` runs ``per_call`` units of work (reported per unit)."""
        for _ in range(warmup):
            fn()
        self.sync()
        times: list[float] = []
        start = time.perf_counter()
        while len(times) < max_iters and (len(times) < min_iters or time.perf_counter() - start < seconds):
            t0 = time.perf_counter()
            fn()
            self.sync()
            times.append((time.perf_counter() - t0) / per_call)
        times.sort()
        return {
            "median_s": statistics.median(times),
            "p10_s": times[max(0, int(0.1 * (len(times) - 1)))],
            "p90_s": times[int(0.9 * (len(times) - 1))],
            "repeats": len(times),
        }


# ---------------------------------------------------------------------------------------
# --quick: a miniature 2HDED:NET (same classes, far fewer channels), so that a CPU runs it in seconds
# ---------------------------------------------------------------------------------------

TINY_MODEL = "2hded-tiny-speedtest"


def tiny_twohded(**options):
    """2HDED:NET's code (DenseNet encoder, U-Net decoders, both heads) with a few channels: --quick only."""
    from torch import nn

    from twohded.models import DenseNetEncoder, TwoHDEDNet, UNetDecoder, init_weights

    options.setdefault("aif_zero_init", False)
    model = TwoHDEDNet(("depth", "aif"), **options)
    model.encoder = DenseNetEncoder(growth_rate=8, block_config=(2, 2, 2, 2), num_init_features=16, bn_size=2)
    for head, channels in (("depth", 1), ("aif", 3)):
        setattr(model, f"{head}_decoder", UNetDecoder(model.encoder.out_channels, (32, 16, 16, 8, 8), dropout=0.5))
        setattr(model, f"{head}_head", nn.Conv2d(8, channels, 3, padding=1, bias=False))
    init_weights(model)
    return model


def register_tiny_model() -> str:
    """Register :func:`tiny_twohded` (once per process) so that the training loop can build it by name."""
    from twohded.models import list_models, register_model

    if TINY_MODEL not in list_models():
        register_model(TINY_MODEL, outputs=("depth", "aif"), description="speed benchmark --quick only")(tiny_twohded)
    return TINY_MODEL


# ---------------------------------------------------------------------------------------
# Scene generation (CPU), for real-looking inputs and the epoch's data
# ---------------------------------------------------------------------------------------


def scene_tensors(n: int, height: int, width: int, seed0: int = 10_000) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` built-in synthetic scenes: aif (n, 3, H, W) in [0, 1], depth (n, 1, H, W) metres."""
    from twohded.data.synthetic import SceneConfig, make_scene

    cfg = SceneConfig(height=height, width=width)
    scenes = [make_scene(seed0 + i, cfg) for i in range(n)]
    return torch.stack([s.aif for s in scenes]), torch.stack([s.depth for s in scenes])


def _write_scene(task: tuple[str, int, int, int]) -> None:
    """Write scene ``seed`` as ``rgb/<seed>.png`` + ``depth/<seed>.npy`` (metres) under ``root``."""
    from twohded.data.synthetic import SceneConfig, make_scene
    from twohded.io import write_image, write_npy

    root, seed, height, width = task
    s = make_scene(seed, SceneConfig(height=height, width=width))
    write_image(Path(root) / "rgb" / f"scene_{seed:06d}.png", s.aif)
    write_npy(Path(root) / "depth" / f"scene_{seed:06d}.npy", s.depth[0].numpy().astype("float32"))


def _one_thread() -> None:
    torch.set_num_threads(1)


def write_scene_folder(root: Path, n: int, height: int, width: int, processes: int) -> float:
    """An RGB-D folder of ``n`` scenes (twohded's ``folder`` dataset layout); returns seconds taken."""
    (root / "rgb").mkdir(parents=True, exist_ok=True)
    (root / "depth").mkdir(parents=True, exist_ok=True)
    tasks = [(str(root), seed, height, width) for seed in range(n)]
    t0 = time.perf_counter()
    if processes > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(processes, initializer=_one_thread) as pool:
            list(pool.map(_write_scene, tasks, chunksize=max(1, n // (4 * processes))))
    else:
        for task in tasks:
            _write_scene(task)
    return time.perf_counter() - t0


# ---------------------------------------------------------------------------------------
# The benchmark
# ---------------------------------------------------------------------------------------


class Benchmark:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.t_start = time.perf_counter()
        self.dist = self._init_distributed()
        self.rank, self.world = self.dist
        if torch.cuda.is_available() and not args.cpu:
            local = int(os.environ.get("LOCAL_RANK", "0"))
            self.device = torch.device("cuda", local)
            torch.cuda.set_device(self.device)
        else:
            self.device = torch.device("cpu")
        self.cuda = self.device.type == "cuda"
        self.timer = Timer(self.device)
        self.main = self.rank == 0
        self.out = Path(args.out)
        self.results: dict[str, Any] = {
            "format": "twohded-speed-benchmark/1",
            "env": self._env(),
            "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "sections": {},
            "failures": [],
            "goals": [],
        }
        self.q = args.quick
        self._flops: dict[str, float] = {}
        self.bf16_tflops: float | None = None

    # -- plumbing --------------------------------------------------------------------------
    def _init_distributed(self) -> tuple[int, int]:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return 0, 1
        import torch.distributed as dist

        backend = "nccl" if torch.cuda.is_available() and not self.args.cpu else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend=backend)
        return dist.get_rank(), dist.get_world_size()

    def say(self, *parts: Any) -> None:
        if self.rank == 0:
            print(*parts, flush=True)

    def elapsed(self) -> float:
        return time.perf_counter() - self.t_start

    def time_left(self) -> float:
        return self.args.budget_s - self.elapsed()

    def out_of_time(self) -> bool:
        """Too little of --budget-s left for a compile variant (rank 0 decides for every rank)."""
        return bool(self.broadcast(self.time_left() < self.args.compile_reserve_s))

    def _env(self) -> dict[str, Any]:
        import twohded

        env: dict[str, Any] = {
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "host": platform.node(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
            "twohded": twohded.__version__,
            "cpu": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "world_size": self.world,
            "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        }
        try:
            env["git_commit"] = subprocess.run(
                ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10
            ).stdout.strip() or None
            dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout
            env["git_dirty"] = bool(dirty.strip())
        except (OSError, subprocess.SubprocessError):
            env["git_commit"] = None
        if torch.cuda.is_available() and not self.args.cpu:
            p = torch.cuda.get_device_properties(self.device)
            env.update(gpu=p.name, gpu_memory_gib=round(p.total_memory / 2**30, 1), gpu_sm_count=p.multi_processor_count,
                       gpu_capability=f"{p.major}.{p.minor}", gpus_visible=torch.cuda.device_count())
        else:
            env["gpu"] = None
        return env

    def save(self) -> None:
        if not self.main:
            return
        self.results["elapsed_s"] = round(self.elapsed(), 1)
        self.out.mkdir(parents=True, exist_ok=True)
        path = self.out / "speed_benchmark.json"
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(self.results, indent=1, default=str, allow_nan=True))
        os.replace(tmp, path)

    def fail(self, section: str, variant: str, exc: BaseException) -> dict[str, Any]:
        info = {"section": section, "variant": variant, "error": first_line(exc)}
        self.results["failures"].append({**info, "traceback": traceback.format_exc(limit=8)})
        self.say(f"  ! {section} / {variant} failed: {info['error']}")
        return info

    def reset_memory(self) -> None:
        if self.cuda:
            gc.collect()
            torch.cuda.synchronize(self.device)
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)

    def peak_gib(self) -> float | None:
        if not self.cuda:
            return None
        return round(torch.cuda.max_memory_allocated(self.device) / 2**30, 3)

    def set_backend_flags(self) -> None:
        """cuDNN defaults of a plain PyTorch run (TF32 convolutions on), autotuning as chosen."""
        if self.cuda:
            torch.backends.cudnn.benchmark = self.args.cudnn_benchmark == "on"
            torch.backends.cudnn.allow_tf32 = True
            torch.backends.cuda.matmul.allow_tf32 = False

    def new_model(self):
        from twohded.checkpoint import model_from_checkpoint
        from twohded.models import create_model

        torch.manual_seed(0)
        if self.args.checkpoint:
            return model_from_checkpoint(self.args.checkpoint)
        if self.q:
            return tiny_twohded()
        # aif_zero_init=False: a random AiF residual, so that both heads' outputs are compared
        return create_model(self.args.model, aif_zero_init=False)

    def iters(self, kind: str) -> dict[str, Any]:
        if self.q:
            return {"warmup": 0, "min_iters": 1, "max_iters": 1, "seconds": 0.0}
        if kind == "train" and self.world > 1:
            return {"warmup": 0, "min_iters": 8, "max_iters": 8, "seconds": 0.0}  # the same count on every rank
        if kind == "train":
            return {"warmup": 0, "min_iters": 5, "max_iters": 30, "seconds": self.args.seconds}
        return {"warmup": 5, "min_iters": 10, "max_iters": 2000, "seconds": self.args.seconds}

    def frac(self, images_per_s: float | None, flops_per_image: float | None) -> tuple[float | None, float | None]:
        """(achieved TFLOP/s, fraction of the measured bf16 matmul rate)."""
        if not images_per_s or not flops_per_image:
            return None, None
        tflops = images_per_s * flops_per_image / 1e12
        return tflops, (tflops / self.bf16_tflops if self.bf16_tflops else None)

    # -- sections ----------------------------------------------------------------------------
    def run(self) -> int:
        a = self.args
        sections = [s for s in SECTIONS if s in a.sections]
        if self.world > 1:
            dropped = [s for s in sections if s not in ("matmul", "train", "epoch")]
            sections = [s for s in sections if s in ("matmul", "train", "epoch")]
            if dropped:
                self.say(f"(under torchrun only matmul, train and epoch run; skipped: {', '.join(dropped)})")
        env = self.results["env"]
        self.say(f"# twohded speed benchmark, {env['date']}")
        self.say(f"GPU: {env.get('gpu')} x{self.world} | torch {env['torch']} | CUDA {env['cuda']} | cuDNN {env['cudnn']} | "
                 f"twohded {env['twohded']} ({env.get('git_commit')}{'+dirty' if env.get('git_dirty') else ''}) | "
                 f"model {a.checkpoint or a.model + ' (random init)'} | sections {','.join(sections)}"
                 + (" | QUICK MODE (a miniature 2HDED:NET, tiny sizes: a smoke test, not a measurement)" if self.q else ""))
        if not self.cuda and not self.q:
            self.say("(no CUDA GPU: running on the CPU; use --quick for a smoke test)")
        for name in RUN_ORDER:
            if name not in sections:
                continue
            t0 = time.perf_counter()
            self.say(f"\n## {name}")
            try:
                getattr(self, f"section_{name}")()
            except Exception as exc:  # a section that breaks must not stop the others
                self.fail(name, "(section)", exc)
            self.say(f"({name}: {time.perf_counter() - t0:.0f} s; {self.elapsed():.0f} s so far)")
            self.save()
        self.summary()
        self.save()
        if self.main:
            self.say(f"\nwrote {self.out / 'speed_benchmark.json'} ({self.elapsed():.0f} s in all)")
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()
            dist.destroy_process_group()
        return 0

    # profile --------------------------------------------------------------------------------
    def section_profile(self) -> None:
        """Where the fast path's inference time goes: torch.profiler over a few calls without CUDA
        graphs (so that every kernel is seen), eager and compiled, at the largest inference shape
        and at batch 1 of that size.

        Prints, per (variant, shape), the device time per call grouped into classes (convolution /
        matmul, normalisation and element-wise, concatenation and copies, other), the kernel
        launches per call, and the top kernels by device time (CPU time on a CPU).
        """
        from torch.profiler import ProfilerActivity, profile

        from twohded.fast import InferenceSettings, prepare_inference
        from twohded.profiling import kernel_rows

        self.set_backend_flags()
        h, w, b = max(self.inference_shapes(), key=lambda s: s[0] * s[1] * s[2])
        shapes = [(h, w, b)] + ([(h, w, 1)] if b > 1 else [])
        variants = [("fast path, eager", InferenceSettings(cuda_graphs=False))]
        if self.cuda and not self.args.skip_compile and not self.q:
            variants.append(("fast path + compile[default]", InferenceSettings(cuda_graphs=False, compile=True)))
        out = self.results["sections"]["profile"] = {"runs": []}
        model = self.new_model().to(self.device).eval()
        for label, settings in variants:
            runner = prepare_inference(model, self.device, settings)
            for shape in shapes:
                if settings.compile and self.out_of_time():
                    self.say(f"{label}, {shape_name(shape)}: skipped (time budget)")
                    continue
                sh, sw, sb = shape
                aif, _ = scene_tensors(sb, sh, sw)
                x = aif.to(self.device)
                for _ in range(1 if self.q else 3):  # warm-up (cuDNN algorithm choice, compilation)
                    runner(x)
                self.timer.sync()
                calls = 1 if self.q else 5
                activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if self.cuda else [])
                with profile(activities=activities) as prof:
                    for _ in range(calls):
                        runner(x)
                    self.timer.sync()
                rows = kernel_rows(prof.key_averages(), cuda=self.cuda, calls=calls)
                classes: dict[str, float] = {}
                for r in rows:
                    classes[r["class"]] = classes.get(r["class"], 0.0) + r["ms_per_call"]
                total = sum(classes.values()) or float("nan")
                launches = sum(r["count_per_call"] for r in rows)
                out["runs"].append({"variant": label, "shape": list(shape), "calls": calls, "device_time": self.cuda,
                                    "total_ms_per_call": total, "classes_ms_per_call": classes,
                                    "launches_per_call": launches, "top": rows[:25]})
                clock = "device" if self.cuda else "CPU"
                self.say(f"\n{label}, {shape_name(shape)}: {total:.2f} ms of {clock} time per call in "
                         f"{launches:.0f} kernel launches / ops per call ({1e3 * total / max(launches, 1):.1f} us each)")
                self.say("| class | ms / call | share |")
                self.say("|---|---|---|")
                for name, ms in sorted(classes.items(), key=lambda kv: -kv[1]):
                    self.say(f"| {name} | {ms:.3f} | {100 * ms / total:.1f} % |")
                self.say("\n| kernel (top 12) | class | ms / call | calls / call |")
                self.say("|---|---|---|---|")
                for r in rows[:12]:
                    self.say(f"| `{r['name'][:70]}` | {r['class']} | {r['ms_per_call']:.3f} | {r['count_per_call']:.0f} |")
            runner = None
            if settings.compile:
                import torch._dynamo as dynamo

                dynamo.reset()

    # matmul ---------------------------------------------------------------------------------
    def section_matmul(self) -> None:
        n = 512 if self.q else self.args.matmul_size
        dtype = torch.bfloat16 if (self.cuda or self.q) else torch.float32
        g = torch.Generator(device=self.device).manual_seed(0)
        a = torch.randn(n, n, device=self.device, dtype=dtype, generator=g)
        b = torch.randn(n, n, device=self.device, dtype=dtype, generator=g)
        reps = 1 if self.q else 10
        t = self.timer.measure(lambda: [a @ b for _ in range(reps)], warmup=1 if self.q else 3, min_iters=3,
                               max_iters=3 if self.q else 20, seconds=0 if self.q else 2.0, per_call=reps)
        tflops = 2 * n**3 / t["median_s"] / 1e12
        self.bf16_tflops = tflops
        row = {"dtype": str(dtype).replace("torch.", ""), "n": n, "tflops": tflops, **t}
        self.results["sections"]["matmul"] = row
        self.say(f"{row['dtype']} matmul {n}x{n}x{n}: {tflops:.1f} TFLOP/s (median of {t['repeats']})")

    # flops ----------------------------------------------------------------------------------
    def flops_forward(self, model, h: int, w: int) -> float:
        from torch.utils.flop_counter import FlopCounterMode

        x = torch.rand(1, 3, h, w, device=self.device)
        with torch.inference_mode(), FlopCounterMode(display=False) as counter:
            model(x)
        return float(counter.get_total_flops())

    def flops_train(self, model, h: int, w: int) -> float:
        from torch.utils.flop_counter import FlopCounterMode

        from twohded.losses import HybridLoss

        loss_fn = HybridLoss()
        x = torch.rand(2, 3, h, w, device=self.device)
        depth = torch.rand(2, 1, h, w, device=self.device) * 5 + 0.5
        with FlopCounterMode(display=False) as counter:
            out = model(x)
            loss_fn(out, depth=depth, aif=x, mask=depth > 0).total.backward()
        model.zero_grad(set_to_none=True)
        return float(counter.get_total_flops()) / 2

    def section_flops(self) -> None:
        model = self.new_model().to(self.device).eval()
        sizes = sorted({(h, w) for h, w, _ in self.inference_shapes()} | {(self.train_size(), self.train_size())})
        rows = {}
        for h, w in sizes:
            f = self.flops_forward(model, h, w)
            self._flops[f"forward_{h}x{w}"] = f
            rows[f"forward_{h}x{w}"] = f
            self.say(f"forward {h}x{w}: {f / 1e9:.4g} GFLOP per image")
        s = self.train_size()
        f = self.flops_train(model.train(), s, s)
        self._flops[f"train_{s}x{s}"] = f
        rows[f"train_{s}x{s}"] = f
        self.say(f"training step {s}x{s} (forward + loss + backward): {f / 1e9:.4g} GFLOP per image")
        self.results["sections"]["flops"] = {"counter": "torch.utils.flop_counter.FlopCounterMode", "per_image": rows}
        del model
        self.reset_memory()

    def flops_for(self, key: str, make: Callable[[], float]) -> float | None:
        if key not in self._flops and self.q and "flops" not in self.args.sections:
            return None  # a smoke test of one section: skip the (slow to import) FLOP counter
        if key not in self._flops:
            try:
                self._flops[key] = make()
            except Exception:
                return None
        return self._flops[key]

    # inference ------------------------------------------------------------------------------
    def inference_shapes(self) -> list[tuple[int, int, int]]:
        return parse_shapes(QUICK_SHAPES if self.q else self.args.shapes)

    def inference_variants(self) -> list[tuple[str, Any, list[tuple[int, int, int]] | None]]:
        """(name, InferenceSettings or None for the baseline, shapes to run or None for all)."""
        from twohded.fast import InferenceSettings

        a = self.args
        v: list[tuple[str, Any, Any]] = [
            ("fp32 eager (baseline)", None, None),
            ("bf16 autocast + channels-last", InferenceSettings(autocast=True, channels_last=True, fold_bn=False,
                                                              cast_weights=False, cuda_graphs=False, gemm_heads=False,
                                                              fuse_relu=False), None),
            ("fast path, eager", InferenceSettings(autocast=True, channels_last=True, cuda_graphs=False), None),
            ("fast path + CUDA graphs, fp32 conv heads, unfused ReLU", InferenceSettings(
                autocast=True, channels_last=True, gemm_heads=False, fuse_relu=False), None),
            ("fast path + CUDA graphs (default)", InferenceSettings(autocast=True, channels_last=True), None),
        ]
        if not a.skip_compile and not self.q:
            shapes = parse_shapes(a.compile_shapes) if a.compile_shapes else None
            for mode in a.compile_modes.split(","):
                mode = mode.strip() or "default"
                graphs = mode not in ("reduce-overhead", "max-autotune")
                label = f"fast path + compile[{mode}]" + (" + CUDA graphs" if graphs else "")
                v.append((label, InferenceSettings(autocast=True, channels_last=True, compile=True,
                                                   compile_mode=None if mode == "default" else mode), shapes))
                if a.compile_fuse_relu:
                    v.append((label + " + fused conv-ReLU", InferenceSettings(
                        autocast=True, channels_last=True, compile=True, fuse_relu=True,
                        compile_mode=None if mode == "default" else mode), shapes))
        return v

    def section_inference(self) -> None:
        from twohded import render_defocus
        from twohded.fast import BF16_RTOL, max_abs_diff, prepare_inference

        self.set_backend_flags()
        model = self.new_model().to(self.device).eval()
        shapes = self.inference_shapes()
        # real-looking inputs: built-in scenes defocused by the renderer (the paper camera)
        inputs = {}
        for h, w, b in shapes:
            aif, depth = scene_tensors(b, h, w)
            with torch.inference_mode():
                inputs[(h, w, b)] = render_defocus(aif.to(self.device), depth.to(self.device), "paper").clamp_(0, 1)
        baseline: dict[tuple, Any] = {}
        base_ips: dict[tuple, float] = {}
        rows: list[dict[str, Any]] = []
        self.results["sections"]["inference"] = {"rows": rows, "bf16_rtol": BF16_RTOL}
        self.say("| variant | size | images/s | latency ms (p10-p90) | x baseline | peak GiB | TFLOP/s | % bf16 matmul "
                 "| max abs diff depth / aif | rel. to range | first call s |")
        self.say("|---|---|---|---|---|---|---|---|---|---|---|")
        for name, settings, only in self.inference_variants():
            if settings is not None and settings.compile and self.out_of_time():
                rows.append({"variant": name, "skipped": f"time budget ({self.time_left():.0f} s left)"})
                self.say(f"| {name} | all | skipped: time budget | | | | | | | | |")
                continue
            runner = None
            self.reset_memory()
            try:
                if name == os.environ.get(FAIL_ENV):  # testing hook: a variant that fails
                    raise RuntimeError(f"simulated failure of one variant ({FAIL_ENV})")
                if settings is not None:
                    runner = prepare_inference(model, self.device, settings)
            except Exception as exc:
                rows.append({"variant": name, **self.fail("inference", name, exc)})
                continue
            for shape in shapes:
                if only is not None and shape not in only:
                    continue
                x = inputs[shape]
                h, w, b = shape
                row: dict[str, Any] = {"variant": name, "height": h, "width": w, "batch": b}
                try:
                    self.reset_memory()
                    if runner is None:
                        def call(x=x, model=model):
                            with torch.inference_mode():
                                return model(x)
                    else:
                        def call(x=x, runner=runner):
                            return runner(x)
                    t0 = time.perf_counter()
                    out = call()
                    self.timer.sync()
                    row["first_call_s"] = time.perf_counter() - t0
                    t = self.timer.measure(call, **self.iters("inference"))
                    out = call()
                    self.timer.sync()
                    row.update(t)
                    row["images_per_s"] = b / t["median_s"]
                    row["latency_ms"] = t["median_s"] * 1e3
                    row["peak_gib"] = self.peak_gib()
                    flops = self.flops_for(f"forward_{h}x{w}", lambda h=h, w=w: self.flops_forward(model, h, w))
                    row["gflop_per_image"] = flops / 1e9 if flops else None
                    row["achieved_tflops"], row["fraction_of_bf16_matmul"] = self.frac(row["images_per_s"], flops)
                    if runner is None:
                        baseline[shape] = type(out)(*(o.detach().float().clone() if o is not None else None for o in out))
                        base_ips[shape] = row["images_per_s"]
                    elif shape in baseline:
                        ref = baseline[shape]
                        diffs = max_abs_diff(out, ref)
                        spans = {k: max(float(getattr(ref, k).max() - getattr(ref, k).min()), 1e-6) for k in diffs}
                        row["max_abs_diff"] = diffs
                        row["max_rel_diff"] = {k: diffs[k] / spans[k] for k in diffs}
                        row["within_bf16_tolerance"] = all(v <= BF16_RTOL for v in row["max_rel_diff"].values())
                    if shape in base_ips:
                        row["speedup"] = row["images_per_s"] / base_ips[shape]
                    if runner is not None:
                        row["fast_path"] = {k: v for k, v in runner.describe().items()
                                            if k in ("folded_bn", "compiled", "cuda_graphs_active", "notes")}
                        if runner.notes:
                            row["notes"] = list(runner.notes)
                    del out
                except Exception as exc:
                    row.update(self.fail("inference", f"{name} {shape_name(shape)}", exc))
                if runner is not None:
                    runner.release_graphs()  # so that the next shape's peak memory is its own
                rows.append(row)
                self.print_inference_row(row)
            if runner is not None:
                runner.release_graphs()
            del runner
            if settings is not None and settings.compile:
                import torch._dynamo as dynamo  # (a bare "import torch._dynamo" would make torch local here)

                dynamo.reset()  # frees the compiled graphs and their frozen weights
            self.reset_memory()
        if not self.q:
            import torch._inductor.config as inductor_config

            inductor_config.freezing = False  # the fast path's compile sets it; training must not inherit it
        model = inputs = baseline = None  # free them before the next section
        self.reset_memory()

    def print_inference_row(self, r: dict[str, Any]) -> None:
        size = f"{r['height']}x{r['width']} b{r['batch']}"
        if "error" in r:
            self.say(f"| {r['variant']} | {size} | FAILED: {r['error'][:120]} | | | | | | | | |")
            return
        d = r.get("max_abs_diff")
        diff = " / ".join(f"{v:.2e}" for v in d.values()) if d else "(reference)"
        rel = " / ".join(f"{100 * v:.2f}%" for v in r["max_rel_diff"].values()) if d else ""
        if d is not None:
            rel += " ok" if r.get("within_bf16_tolerance") else " OUT OF TOLERANCE"
        frac = r.get("fraction_of_bf16_matmul")
        self.say(
            f"| {r['variant']} | {size} | {fmt(r['images_per_s'])} | {fmt(r['latency_ms'], 2)} "
            f"({fmt(r['p10_s'] * 1e3, 2)}-{fmt(r['p90_s'] * 1e3, 2)}) | {fmt(r.get('speedup'), 2)} | "
            f"{fmt(r['peak_gib'], 2)} | {fmt(r.get('achieved_tflops'))} | {fmt(100 * frac if frac else None)} | "
            f"{diff} | {rel} | {fmt(r['first_call_s'], 1)} |"
            + (f" notes: {'; '.join(r['notes'])}" if r.get("notes") else "")
        )

    # training --------------------------------------------------------------------------------
    def train_size(self) -> int:
        return QUICK_SIZE if self.q else self.args.train_size

    def train_variants(self) -> list[dict[str, Any]]:
        a = self.args
        small = 2 if self.q else 4
        large = 4 if self.q else a.train_large_batch
        v = [
            dict(name=f"paper: fp32 eager, SGD, batch {small}", batch=small, amp=False, channels_last=False, fused=False,
                 compile=False, baseline=True),
            dict(name=f"bf16 + channels-last + fused SGD, batch {small}", batch=small, amp=True, channels_last=True,
                 fused=True, compile=False),
            dict(name=f"bf16 + channels-last + fused SGD, batch {large}", batch=large, amp=True, channels_last=True,
                 fused=True, compile=False),
        ]
        if self.world > 1:  # DDP only: static graph, no BatchNorm buffer broadcast, 100 MB buckets
            v.append(dict(name=f"bf16 + channels-last + fused SGD, batch {large}, tuned DDP", batch=large, amp=True,
                          channels_last=True, fused=True, compile=False, ddp_tuned=True, ddp_only=True))
        if self.cuda:
            v.append(dict(name=f"bf16 + channels-last + fused SGD + CUDA graph, batch {large}", batch=large, amp=True,
                          channels_last=True, fused=True, compile=False, graphs=True))
        if not a.skip_compile and not self.q:
            for batch in sorted({int(b) for b in a.train_compile_batches.split(",") if b.strip()}):
                v.append(dict(name=f"bf16 + channels-last + fused SGD + compile, batch {batch}", batch=batch, amp=True,
                              channels_last=True, fused=True, compile=True))
        return v

    def train_pool(self, batch: int, size: int) -> list[dict[str, torch.Tensor]]:
        """Batches of rendered scenes on the device (image, depth, aif, mask), cycled through."""
        from twohded import render_defocus

        n = min(32, max(batch, 8)) if not self.q else batch
        if getattr(self, "_pool", None) is None or self._pool[0].shape[0] < n or self._pool[0].shape[-1] != size:
            aif, depth = scene_tensors(n, size, size, seed0=20_000)
            aif, depth = aif.to(self.device), depth.to(self.device)
            with torch.no_grad():
                image = render_defocus(aif, depth, "paper").clamp_(0, 1)
            self._pool = (image, depth, aif)
        image, depth, aif = self._pool
        g = torch.Generator().manual_seed(batch)
        out = []
        for _ in range(2 if self.q else 4):
            idx = torch.randint(0, image.shape[0], (batch,), generator=g).to(self.device)
            out.append({"image": image[idx].contiguous(), "depth": depth[idx].contiguous(), "aif": aif[idx].contiguous(),
                        "mask": depth[idx] > 0})
        return out

    def run_train_variant(self, v: dict[str, Any], ddp: bool) -> dict[str, Any]:
        """The trainer's own step (:class:`twohded.training.step.TrainStep`, its DDP settings
        :func:`~twohded.training.step.wrap_ddp`) on batches already on the device."""
        from twohded.losses import HybridLoss
        from twohded.training.step import TrainStep, wrap_ddp

        size = self.train_size()
        self.set_backend_flags()
        self.reset_memory()
        model = self.new_model().to(self.device).train()
        if v["channels_last"]:
            model = model.to(memory_format=torch.channels_last)
        loss_fn = HybridLoss()
        kwargs = {"fused": True} if v["fused"] else {}
        opt = torch.optim.SGD(model.parameters(), lr=2e-4, momentum=0.9, **kwargs)
        fwd = wrap_ddp(model, self.device, find_unused=False, tuned=v.get("ddp_tuned", False)) if ddp else model
        if v["compile"]:
            fwd = torch.compile(fwd)
        data = self.train_pool(v["batch"], size)
        autocast = (lambda: torch.autocast(self.device.type, dtype=torch.bfloat16)) if v["amp"] else contextlib.nullcontext
        graphed = None
        if v.get("graphs"):
            from twohded.training.graphs import GraphedStep, graph_problem

            problem = graph_problem(self.device, ddp, "bf16" if v["amp"] else "none")
            if problem:
                raise RuntimeError(f"CUDA graph step unavailable: {problem}")
            graphed = GraphedStep(model, fwd, loss_fn, torch.bfloat16 if v["amp"] else None, v["channels_last"])
        train_step = TrainStep(model, fwd, loss_fn, opt, autocast=autocast, channels_last=v["channels_last"],
                               graphed=graphed)
        state = {"i": 0, "loss": None}

        def step():
            b = data[state["i"] % len(data)]
            state["i"] += 1
            state["loss"] = train_step(b, step=state["i"])["loss"]

        row: dict[str, Any] = {"variant": v["name"], "batch": v["batch"], "size": size, "ddp": ddp,
                               "world_size": self.world if ddp else 1}
        t0 = time.perf_counter()
        step()
        self.timer.sync()
        row["first_step_s"] = time.perf_counter() - t0
        for _ in range(0 if self.q else 3):
            step()
        block = 1 if self.q else max(2, min(20, 64 // v["batch"]))
        t = self.timer.measure(lambda: [step() for _ in range(block)], **self.iters("train"), per_call=block)
        row.update(t)
        row["loss_finite"] = math.isfinite(state["loss"])  # (TrainStep raises on a non-finite loss)
        row["images_per_s"] = v["batch"] / t["median_s"]  # per process
        row["peak_gib"] = self.peak_gib()
        fwd = model = opt = data = train_step = graphed = None  # free them (the step closure goes with this frame)
        if v["compile"]:
            import torch._dynamo as dynamo

            dynamo.reset()
        self.reset_memory()
        return row

    def section_train(self) -> None:
        rows: list[dict[str, Any]] = []
        self.results["sections"]["train"] = {"rows": rows, "schedule": f"{SCHEDULE_EPOCHS} epochs x {NYU_TRAIN} images"}
        size = self.train_size()
        flops = self._flops.get(f"train_{size}x{size}")
        base = None
        self.say(f"(model only, batches already on the GPU; {size}x{size}; projected: {SCHEDULE_EPOCHS} x {NYU_TRAIN} images)")
        self.say("| variant | DDP | images/s per process | images/s global | x paper | projected schedule min | "
                 "peak GiB | TFLOP/s | % bf16 matmul | first step s |")
        self.say("|---|---|---|---|---|---|---|---|---|---|")
        modes = [False] if self.world == 1 else [False, True]
        single: dict[str, float] = {}
        for v in self.train_variants():
            for ddp in modes:
                label = v["name"] + (" [DDP]" if ddp else "")
                if ddp and v.get("graphs"):
                    continue  # a captured step has no DDP (twohded.training.graphs)
                if not ddp and v.get("ddp_only"):
                    continue
                if v["compile"] and self.out_of_time():
                    rows.append({"variant": label, "skipped": f"time budget ({self.time_left():.0f} s left)"})
                    self.say(f"| {label} | | skipped: time budget | | | | | | | |")
                    continue
                try:
                    row = self.run_train_variant(v, ddp)
                except Exception as exc:
                    row = {"variant": label, **self.fail("train", label, exc)}
                    self.gather(float("nan"))  # keep the ranks' collectives in step
                    rows.append(row)
                    self.say(f"| {label} | {ddp} | FAILED: {row['error'][:120]} | | | | | | | |")
                    continue
                row["variant"] = label
                per = self.gather(row["images_per_s"])
                row["images_per_s_per_process"] = per
                row["images_per_s_global"] = sum(per) if ddp else row["images_per_s"]
                if not ddp:
                    single[v["name"]] = row["images_per_s"]
                elif v.get("ddp_tuned") and single:
                    same = [k for k in single if k.startswith(v["name"].split(", tuned DDP")[0]) and "graph" not in k]
                    if same:
                        row["scaling_vs_one_process"] = row["images_per_s_global"] / single[same[0]]
                elif v["name"] in single:
                    row["scaling_vs_one_process"] = row["images_per_s_global"] / single[v["name"]]
                g = row["images_per_s_global"]
                if v.get("baseline") and not ddp:
                    base = g
                row["x_paper"] = g / base if base else None
                row["projected_schedule_min"] = SCHEDULE_EPOCHS * NYU_TRAIN / g / 60
                row["achieved_tflops"], row["fraction_of_bf16_matmul"] = self.frac(row["images_per_s"], flops)
                rows.append(row)
                frac = row.get("fraction_of_bf16_matmul")
                scaling = f" (x{row['scaling_vs_one_process']:.2f} over 1 process)" if row.get("scaling_vs_one_process") else ""
                self.say(
                    f"| {label} | {'yes' if ddp else 'no'} | {' / '.join(fmt(p) for p in per)} | {fmt(g)}{scaling} | "
                    f"{fmt(row['x_paper'], 2)} | {fmt(row['projected_schedule_min'], 1)} | {fmt(row['peak_gib'], 2)} | "
                    f"{fmt(row.get('achieved_tflops'))} | {fmt(100 * frac if frac else None)} | {fmt(row['first_step_s'], 1)} |"
                    + ("" if row["loss_finite"] else " LOSS NOT FINITE")
                )

    def gather(self, value: float) -> list[float]:
        if self.world == 1:
            return [value]
        import torch.distributed as dist

        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, value)
        return [float(v) for v in out]

    # epoch ------------------------------------------------------------------------------------
    def broadcast(self, obj: Any) -> Any:
        if self.world == 1:
            return obj
        import torch.distributed as dist

        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def section_epoch(self) -> None:
        from twohded.config import config_from_dict
        from twohded.training import train

        a = self.args
        n = 8 if self.q else a.epoch_scenes
        size = QUICK_SIZE if self.q else a.train_size
        scratch = None
        if self.main:
            scratch = Path(tempfile.mkdtemp(prefix="twohded_speed_", dir=a.scratch))
        scratch = Path(self.broadcast(str(scratch) if scratch else None))
        info: dict[str, Any] = {"scenes": n, "size": size, "scratch": str(scratch), "rows": []}
        self.results["sections"]["epoch"] = info
        try:
            if self.main:
                procs = 1 if self.q else max(1, min(16, (os.cpu_count() or 2) - 1))
                gen_s = write_scene_folder(scratch / "scenes", n, size, size, procs)
                info["generation_s"] = gen_s
                info["generation_processes"] = procs
                self.say(f"generated {n} scenes at {size}x{size} (RGB PNG + depth .npy) in {gen_s:.1f} s with {procs} processes")
            if self.world > 1:
                import torch.distributed as dist

                dist.barrier()
            workers_fast = 0 if self.q else (a.epoch_workers or max(2, min(8, (os.cpu_count() or 2) // self.world - 1)))
            small, large = (2, 4) if self.q else (4, a.train_large_batch)
            fast_compile = bool(a.epoch_compile) and not self.q
            settings = [
                dict(name=f"paper: fp32 eager, SGD, batch {small}", batch=small, amp="none", channels_last=False,
                     compile=False, workers=0 if self.q else 4),
                dict(name=f"fast: bf16 + channels-last{' + compile' if fast_compile else ''}, batch {large}",
                     batch=large, amp="bf16" if self.cuda else "none", channels_last=True, compile=fast_compile,
                     workers=workers_fast),
                dict(name=f"fastest: bf16 + channels-last + preload + CUDA graphs{' + compile' if fast_compile else ''}, "
                     f"batch {large}", batch=large, amp="bf16" if self.cuda else "none", channels_last=True,
                     compile=fast_compile, workers=workers_fast, preload=True, cuda_graphs=True),
            ]
            base_s = None
            self.say("| setting | workers | steps / epoch | images / epoch | epoch s (2nd) | images/s | x paper | "
                     "projected 500 epochs min | first epoch s | peak GiB |")
            self.say("|---|---|---|---|---|---|---|---|---|---|")
            for s in settings:
                row: dict[str, Any] = {"setting": s["name"], **{k: v for k, v in s.items() if k != "name"}}
                info["rows"].append(row)
                if s["compile"] and self.out_of_time():
                    row["skipped"] = "time budget"
                    self.say(f"| {s['name']} | skipped: time budget | | | | | | | | |")
                    continue
                try:
                    self.reset_memory()
                    cfg = config_from_dict({
                        "name": "speed_epoch", "seed": 0,
                        "model": {"name": register_tiny_model() if self.q else a.model, "options": {}},
                        "data": {"name": "folder", "root": str(scratch / "scenes"), "train_split": "all", "val_split": None,
                                 "size": size, "defocus": "deferred", "preset": "paper", "flip": True,
                                 "options": {"augment": True}},  # split "all" is not a training split: flip anyway
                        "optim": {"name": "sgd", "lr": 2e-4, "momentum": 0.9},
                        "schedule": {"name": "step", "milestones": [300], "gamma": 0.1},
                        "train": {"epochs": 2, "batch_size": s["batch"], "num_workers": s["workers"],
                                  "device": "cuda" if self.cuda else "cpu", "amp": s["amp"],
                                  "channels_last": s["channels_last"], "compile": s["compile"],
                                  "preload": s.get("preload", False), "cuda_graphs": s.get("cuda_graphs", False),
                                  "checkpoint_every": 1000, "log_every": 1_000_000, "progress": False,
                                  "out_dir": str(scratch / "runs")},
                    }, where="speed benchmark epoch config")
                    run_dir = scratch / "runs" / f"{len(info['rows'])}_{'paper' if not s['channels_last'] else 'fast'}"
                    if self.world > 1:
                        run_dir = Path(self.broadcast(str(run_dir)))
                    t0 = time.perf_counter()
                    result = train(cfg, run_dir=run_dir, progress=False, verbose=False)
                    row["train_call_s"] = time.perf_counter() - t0
                    times = self.epoch_times(run_dir / "log.csv") if self.main else []
                    times = self.broadcast(times)
                    steps = result.step // max(1, result.epoch)
                    imgs = steps * s["batch"] * self.world
                    row.update(steps_per_epoch=steps, images_per_epoch=imgs, epoch_times_s=times)
                    if len(times) >= 2:
                        row["epoch_s"] = times[1] - times[0]
                        row["first_epoch_s"] = times[0]
                    elif times:
                        row["epoch_s"] = row["first_epoch_s"] = times[0]
                    row["images_per_s"] = imgs / row["epoch_s"]
                    # the whole 2-epoch call (set-up, preloading, first epoch with cuDNN tuning / capture /
                    # compilation) plus 498 more epochs at the second epoch's rate, scaled to 795 scenes
                    row["projected_schedule_min"] = (
                        row["train_call_s"] + (SCHEDULE_EPOCHS - 2) * row["epoch_s"]) * (NYU_TRAIN / n) / 60
                    row["peak_gib"] = self.peak_gib()
                    if base_s is None:
                        base_s = row["projected_schedule_min"]
                    row["x_paper"] = base_s / row["projected_schedule_min"] if base_s else None
                    self.say(
                        f"| {s['name']} | {s['workers']} | {steps} | {imgs} | {fmt(row['epoch_s'], 2)} | {fmt(row['images_per_s'])} | "
                        f"{fmt(row['x_paper'], 2)} | {fmt(row['projected_schedule_min'], 1)} | {fmt(row.get('first_epoch_s'), 1)} | "
                        f"{fmt(row['peak_gib'], 2)} |"
                    )
                except Exception as exc:
                    row.update(self.fail("epoch", s["name"], exc))
                    self.say(f"| {s['name']} | FAILED: {row['error'][:120]} | | | | | | | | |")
            self.data_only(scratch / "scenes", size, workers_fast, info)
        finally:
            if self.world > 1:
                import torch.distributed as dist

                dist.barrier()
            if self.main and not a.keep_scratch:
                shutil.rmtree(scratch, ignore_errors=True)

    @staticmethod
    def epoch_times(path: Path) -> list[float]:
        """Cumulative ``time_s`` at each epoch end of a run's log.csv, as per-epoch times from the start."""
        ends = []
        with open(path, newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                if row.get("split") == "train" and row.get("epoch") and abs(float(row["epoch"]) - round(float(row["epoch"]))) < 1e-9:
                    ends.append(float(row["time_s"]))
        return ends

    def data_only(self, root: Path, size: int, workers: int, info: dict[str, Any]) -> None:
        """The data pipeline alone (loader + GPU rendering, no model): can it feed the fast setting?"""
        from torch.utils.data import DataLoader

        from twohded.data import build_dataset, render_batch

        if self.world > 1 and not self.main:
            return
        batch = 4 if self.q else self.args.train_large_batch
        try:
            ds = build_dataset("folder", str(root), "all", size=size, defocus="deferred", preset="paper", flip=True,
                               augment=True)
            loader = DataLoader(ds, batch_size=batch, shuffle=True, num_workers=workers, pin_memory=self.cuda,
                                drop_last=True, persistent_workers=workers > 0)
            count = 0
            for epoch in range(2):
                ds.set_epoch(epoch)
                self.timer.sync()
                t0 = time.perf_counter()
                count = 0
                for b in loader:
                    out = render_batch(b, ds.render_spec, self.device)
                    count += out["image"].shape[0]
                self.timer.sync()
                dt = time.perf_counter() - t0
            row = {"pipeline": f"DataLoader ({workers} workers, persistent) + render_batch on {self.device.type}, batch {batch}",
                   "images": count, "epoch_s": dt, "images_per_s": count / dt}
            info["data_only"] = row
            self.say(f"data pipeline alone ({row['pipeline']}): {count} images in {dt:.2f} s = {row['images_per_s']:.0f} images/s")
        except Exception as exc:
            info["data_only"] = self.fail("epoch", "data pipeline alone", exc)

    # render -----------------------------------------------------------------------------------
    def section_dfd(self) -> None:
        """Training on real DFD indoor through the trainer (configs/dfd_d3net.yaml: frames on the
        GPU, random 256x256 crops, flips and rotations drawn there): images/s at batch 8 and at
        ``--train-large-batch`` (median of the logged rates after the first steps). Needs
        ``--dfd-root``; one process (several trainings sharing a GPU: benchmarks/dfd_training_speed.py)."""
        from twohded.config import load_config
        from twohded.training import train

        a = self.args
        info: dict[str, Any] = {"rows": []}
        self.results["sections"]["dfd"] = info
        if not a.dfd_root or self.world > 1:
            info["skipped"] = "needs --dfd-root (one process)" if not a.dfd_root else "one process only"
            self.say(f"dfd: skipped ({info['skipped']})")
            return
        steps = 8 if self.q else a.dfd_steps
        self.say("| DFD training setting | batch | steps | images/s (median) |\n|---|---|---|---|")
        for batch in (8, a.train_large_batch):
            over = [f"data.root={a.dfd_root}", "data.train_split=cv0-train", "data.val_split=null",
                    "data.options={aif_target: published}", f"train.batch_size={batch}", f"train.max_steps={steps}",
                    f"train.log_every={max(1, steps // 8)}", "train.checkpoint_every_steps=1000000", "train.progress=false",
                    f"train.device={'cuda' if self.cuda else 'cpu'}"]
            if self.q:
                over += [f"model.name={register_tiny_model()}", "data.size=32", "train.cuda_graphs=false"]
            run_dir = Path(tempfile.mkdtemp(prefix="twohded_speed_dfd_", dir=a.scratch))
            row: dict[str, Any] = {"batch": batch, "steps": steps}
            info["rows"].append(row)
            try:
                train(load_config(Path(__file__).parents[1] / "configs" / "dfd_d3net.yaml", over),
                      run_dir=run_dir / "run", progress=False, verbose=False)
                with open(run_dir / "run" / "log.csv", newline="", encoding="utf-8") as fh:
                    rates = [float(r["images_per_s"]) for r in csv.DictReader(fh)
                             if r.get("split") == "train" and r.get("images_per_s") and int(float(r["step"])) > steps // 4]
                row["images_per_s"] = statistics.median(rates) if rates else None
                self.say(f"| dfd_d3net, one process | {batch} | {steps} | {fmt(row['images_per_s'])} |")
            except Exception as exc:  # a failing setting is recorded, the benchmark goes on
                row["error"] = f"{type(exc).__name__}: {exc}"
                self.results["failures"].append({"section": "dfd", "variant": f"batch {batch}", "error": row["error"]})
            finally:
                if not a.keep_scratch:
                    shutil.rmtree(run_dir, ignore_errors=True)

    def section_render(self) -> None:
        from torch.utils.data import default_collate

        from twohded import render_defocus
        from twohded.data import render_batch
        from twohded.data.defocus import filled_depth
        from twohded.render_spec import RenderSpec

        cases = [(QUICK_SIZE, QUICK_SIZE, 2, "paper")] if self.q else [(256, 256, 32, "paper"), (256, 256, 32, "d3net_nyu"), (480, 640, 8, "paper")]
        rows = []
        self.results["sections"]["render"] = {"rows": rows}
        self.say("| call | preset | size | batch | images/s | ms / batch | peak GiB |")
        self.say("|---|---|---|---|---|---|---|")
        for h, w, b, preset in cases:
            aif, depth = scene_tensors(b, h, w, seed0=30_000)
            aif, depth = aif.to(self.device), depth.to(self.device)
            for call in ("render_defocus", "render_batch") if preset == "paper" else ("render_defocus",):
                row = {"call": call, "preset": preset, "height": h, "width": w, "batch": b}
                try:
                    self.reset_memory()
                    if call == "render_defocus":
                        def fn(aif=aif, depth=depth, preset=preset):
                            with torch.no_grad():
                                return render_defocus(aif, depth, preset)
                    else:  # what the training loop calls on a collated "deferred" batch
                        items = [{"image": aif[i].cpu(), "aif": aif[i].cpu(), "depth": depth[i].cpu(),
                                  "render_depth": filled_depth(depth[i].cpu(), "bench"),
                                  "render_seed": torch.tensor(i), "pixel_scale": torch.tensor(1.0, dtype=torch.float64)}
                                 for i in range(b)]
                        collated = default_collate(items)

                        def fn(collated=collated, spec=RenderSpec.resolve(preset)):
                            with torch.no_grad():
                                return render_batch(collated, spec, self.device)["image"]
                    t = self.timer.measure(fn, **self.iters("render"))
                    row.update(t, images_per_s=b / t["median_s"], peak_gib=self.peak_gib())
                    self.say(f"| {call} | {preset} | {h}x{w} | {b} | {fmt(row['images_per_s'])} | {fmt(t['median_s'] * 1e3, 2)} | "
                             f"{fmt(row['peak_gib'], 2)} |")
                except Exception as exc:
                    row.update(self.fail("render", f"{call} {preset} {h}x{w}", exc))
                    self.say(f"| {call} | {preset} | {h}x{w} | {b} | FAILED: {row['error'][:120]} | | |")
                rows.append(row)
            aif = depth = None
            self.reset_memory()

    # summary ----------------------------------------------------------------------------------
    def summary(self) -> None:
        """Ratios fast / baseline, and the issue's goals (met / not met / not measured)."""
        sec = self.results["sections"]
        self.say("\n## summary: fast / baseline")
        self.say("| what | baseline | best fast variant | value | baseline value | ratio |")
        self.say("|---|---|---|---|---|---|")
        inf = [r for r in sec.get("inference", {}).get("rows", []) if "images_per_s" in r]
        best_inf: dict[tuple, dict] = {}
        for r in inf:
            key = (r["height"], r["width"], r["batch"])
            if r["variant"].startswith("fp32"):
                continue
            if r.get("within_bf16_tolerance") is False:
                continue
            if key not in best_inf or r["images_per_s"] > best_inf[key]["images_per_s"]:
                best_inf[key] = r
        base_inf = {(r["height"], r["width"], r["batch"]): r for r in inf if r["variant"].startswith("fp32")}
        for key, r in sorted(best_inf.items()):
            b = base_inf.get(key)
            what = f"inference {key[0]}x{key[1]} batch {key[2]}"
            self.say(f"| {what} images/s | fp32 eager | {r['variant']} | {fmt(r['images_per_s'])} | "
                     f"{fmt(b['images_per_s']) if b else '-'} | {fmt(r['images_per_s'] / b['images_per_s'], 2) if b else '-'} |")
            if key[2] == 1:
                self.say(f"| {what} latency ms | fp32 eager | {r['variant']} | {fmt(r['latency_ms'], 2)} | "
                         f"{fmt(b['latency_ms'], 2) if b else '-'} | {fmt(b['latency_ms'] / r['latency_ms'], 2) if b else '-'} |")
        tr = [r for r in sec.get("train", {}).get("rows", []) if "images_per_s_global" in r]
        base_tr = next((r for r in tr if r["variant"].startswith("paper") and not r["ddp"]), None)
        best_tr = max((r for r in tr if not r["variant"].startswith("paper") and r.get("loss_finite")),
                      key=lambda r: r["images_per_s_global"], default=None)
        if best_tr:
            self.say(f"| training images/s (model only) | paper | {best_tr['variant']} | {fmt(best_tr['images_per_s_global'])} | "
                     f"{fmt(base_tr['images_per_s_global']) if base_tr else '-'} | {fmt(best_tr.get('x_paper'), 2)} |")
        ep = [r for r in sec.get("epoch", {}).get("rows", []) if "epoch_s" in r]
        if len(ep) >= 2:
            self.say(f"| paper schedule, minutes (epochs incl. data) | paper | {ep[-1]['setting']} | "
                     f"{fmt(ep[-1]['projected_schedule_min'], 1)} | {fmt(ep[0]['projected_schedule_min'], 1)} | "
                     f"{fmt(ep[-1].get('x_paper'), 2)} |")

        goals = self.results["goals"]

        def goal(name: str, value: float | None, target: float, better: str, note: str = "") -> None:
            met = None if value is None else (value >= target if better == "higher" else value <= target)
            goals.append({"goal": name, "value": value, "target": target, "better": better, "met": met, "note": note})

        if inf:
            r8 = best_inf.get((480, 640, 8))
            goal("inference 480x640 batch 8 images/s", r8["images_per_s"] if r8 else None,
                 GOALS["inference_480x640_b8_images_per_s"], "higher", r8["variant"] if r8 else "")
            r1 = best_inf.get((480, 640, 1))
            lat = min((r["latency_ms"] for r in inf if (r["height"], r["width"], r["batch"]) == (480, 640, 1)
                       and not r["variant"].startswith("fp32") and r.get("within_bf16_tolerance") is not False), default=None)
            goal("inference 480x640 batch 1 latency ms", lat, GOALS["inference_480x640_b1_latency_ms"], "lower",
                 r1["variant"] if r1 else "")
            tol = [r.get("within_bf16_tolerance") for r in inf if "within_bf16_tolerance" in r]
            goals.append({"goal": "fast outputs within bf16 tolerance of fp32", "value": sum(map(bool, tol)),
                          "target": len(tol), "better": "all", "met": all(tol) if tol else None,
                          "note": "rows within tolerance / rows compared"})
        if len(ep) >= 2:
            goal("paper schedule (500 x 795 at 256x256, data included) minutes", ep[-1]["projected_schedule_min"],
                 GOALS["paper_schedule_minutes"], "lower", ep[-1]["setting"])
        dfd = [r for r in sec.get("dfd", {}).get("rows", []) if r.get("images_per_s")]
        if dfd:
            best = max(dfd, key=lambda r: r["images_per_s"])
            goal("DFD training at 256x256 images/s (one process)", best["images_per_s"],
                 GOALS["dfd_training_256_images_per_s"], "higher", f"batch {best['batch']}")
        if self.world > 1:
            sc = [r for r in tr if r.get("scaling_vs_one_process")]
            best = max(sc, key=lambda r: r["images_per_s_global"], default=None)
            goal(f"DDP scaling on {self.world} GPUs (global / one process)", best["scaling_vs_one_process"] if best else None,
                 GOALS["ddp_two_gpu_scaling"], "higher", best["variant"] if best else "")
        if goals:
            self.say("\n## goals (issue 7)")
            self.say("| goal | value | target | met |")
            self.say("|---|---|---|---|")
            for g in goals:
                met = {True: "yes", False: "NO", None: "not measured"}[g["met"]]
                value = fmt(g["value"], 2) if isinstance(g["value"], float) else g["value"]
                self.say(f"| {g['goal']} | {value} | {g['target']} | {met} |" + (f" ({g['note']})" if g["note"] else ""))
        if self.results["failures"]:
            self.say(f"\n{len(self.results['failures'])} variant(s) failed; see 'failures' in the JSON:")
            for f in self.results["failures"]:
                self.say(f"  - {f['section']} / {f['variant']}: {f['error']}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, type=Path, help="folder for speed_benchmark.json")
    p.add_argument("--sections", default=",".join(DEFAULT_SECTIONS),
                   help=f"comma-separated subset of {','.join(SECTIONS)} (default: all but profile)")
    p.add_argument("--train-only", action="store_true", help="only the train and epoch sections (for torchrun)")
    p.add_argument("--quick", action="store_true", help="tiny sizes and few repeats: a smoke test that runs in seconds on a CPU")
    p.add_argument("--cpu", action="store_true", help="run on the CPU even if a GPU is present")
    p.add_argument("--model", default="2hded", help="model name (default 2hded; random init unless --checkpoint)")
    p.add_argument("--checkpoint", default=None, help="use this checkpoint's weights (real outputs for the differences)")
    p.add_argument("--shapes", default="256x256x1,256x256x16,480x640x1,480x640x8",
                   help="inference HEIGHTxWIDTHxBATCH list (default 256x256x1,256x256x16,480x640x1,480x640x8)")
    p.add_argument("--compile-shapes", default="480x640x1,480x640x8",
                   help="shapes for the torch.compile inference variants (each compiles once; '' = all shapes)")
    p.add_argument("--compile-modes", default="default",
                   help="torch.compile modes for inference, comma-separated: default, max-autotune-no-cudagraphs, "
                   "reduce-overhead, max-autotune (default: default)")
    p.add_argument("--skip-compile", action="store_true", help="no torch.compile variants")
    p.add_argument("--compile-fuse-relu", action="store_true",
                   help="also compile with the cuDNN convolution + ReLU fusion (off by default under compile)")
    p.add_argument("--train-size", type=int, default=256, help="training image side (default 256, the paper's)")
    p.add_argument("--train-large-batch", type=int, default=64, help="the fast training setting's batch (default 64)")
    p.add_argument("--train-compile-batches", default="",
                   help="batches of the compiled training variants, comma-separated (default: none; about 2.5 min "
                   "of compilation each on an H100)")
    p.add_argument("--epoch-scenes", type=int, default=NYU_TRAIN, help=f"scenes in the epoch workload (default {NYU_TRAIN})")
    p.add_argument("--epoch-workers", type=int, default=None, help="DataLoader workers of the fast epoch (default min(8, CPUs-1))")
    p.add_argument("--epoch-compile", action="store_true", help="train.compile=true in the fast epoch (adds its compile time)")
    p.add_argument("--scratch", default=None, help="where the epoch's scenes are written (default: the system temp folder)")
    p.add_argument("--keep-scratch", action="store_true", help="keep the epoch's scenes and runs")
    p.add_argument("--dfd-root", default=None, help="DFD indoor folder: adds the dfd section (real-data training speed)")
    p.add_argument("--dfd-steps", type=int, default=300, help="steps per DFD training setting (default 300)")
    p.add_argument("--seconds", type=float, default=1.0, help="timed seconds per measurement, at least (default 1.0)")
    p.add_argument("--matmul-size", type=int, default=8192, help="matmul side for the bf16 rate (default 8192)")
    p.add_argument("--cudnn-benchmark", choices=("on", "off"), default="on",
                   help="torch.backends.cudnn.benchmark for every variant, baseline included (default on)")
    p.add_argument("--budget-s", type=float, default=540.0,
                   help="seconds for the whole run: a torch.compile variant starts only while more than "
                   "--compile-reserve-s of it is left (default 540)")
    p.add_argument("--compile-reserve-s", type=float, default=120.0, help="see --budget-s (default 120)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = [s for s in sections if s not in SECTIONS]
    if unknown:
        raise SystemExit(f"speed_benchmark: unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    if args.train_only:
        sections = ["train", "epoch"]
    args.sections = sections
    threads = torch.get_num_threads()
    if args.quick:
        # a smoke test of tiny tensors: one thread (several spin-waiting threads on a busy small CPU
        # make it many times slower)
        torch.set_num_threads(1)
    try:
        return Benchmark(args).run()
    finally:
        torch.set_num_threads(threads)


if __name__ == "__main__":
    sys.exit(main())

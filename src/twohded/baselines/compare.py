"""Every baseline next to 2HDED:NET, on the same data, through the same evaluation.

``python benchmarks/compare_baselines.py --dfd-root DFD --runs runs --out OUT`` (this
module's :func:`main`) evaluates, with :func:`twohded.evaluate.evaluate_model` (the code
behind ``twohded evaluate``, standard protocol):

* on the **DFD indoor validation split** (11 scenes, real f/2.8 input, f/8 target, whole
  645x432 frames, depth capped at 10 m), and
* on **held-out built-in synthetic scenes** (the ``test`` split: seeds 2,000,000 on, never
  seen in training; 256x256, ``paper`` camera, rendered on the evaluation device),

these methods (a trained method whose checkpoint is missing is skipped, with a note):

================================  ==========================================================
key                               what
================================  ==========================================================
``2hded``                         2HDED:NET (``configs/dfd_real.yaml``, ``configs/synthetic.yaml``)
``2hded-depth``                   depth-only 2HDED:NET, D3-Net-like (``configs/dfd_real_depth.yaml``, ``configs/baselines/2hded_depth_synthetic.yaml``)
``dncnn``, ``ircnn``              retrained deblurring CNNs (``configs/baselines/{dncnn,ircnn}_*.yaml``)
``deconv-wiener-oracle``          ground-truth depth, then layered Wiener deconvolution
``deconv-cg-oracle``              ground-truth depth, then occlusion-aware CG deconvolution
``deconv-wiener-2hded-depth``     ``2hded-depth``'s depth, then layered Wiener deconvolution
``deconv-cg-2hded-depth``         ``2hded-depth``'s depth, then CG deconvolution
``trivial``                       mean training depth; the defocused input as its own deblurring
================================  ==========================================================

For every method: depth metrics (depth methods), PSNR / SSIM (deblurring methods), the
number of parameters, and images/s on the device in use (batch ``--speed-batch``, after
warm-up, synchronised; the fast path of ``twohded predict``: bf16 autocast and channels-last
on CUDA). The deconvolution's regularisation weight is chosen per dataset on training items
with the oracle depth (:func:`~twohded.baselines.deconvolution.tune_regularisation`), never on
the evaluation set. Writes ``OUT/comparison.md``, ``OUT/comparison.json`` and every method's
``OUT/<dataset>/<method>/metrics.{json,md}``.

``--quick`` runs everything at tiny sizes on a couple of images, with randomly initialised
networks where no checkpoint exists: a plumbing check for CI, not results.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import logging
import math
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import InputError, TwohdedError

log = logging.getLogger("twohded.compare")

FORMAT = "twohded-comparison/1"

#: config file of each trained method, per dataset (the run folder is ``RUNS/<config name>``)
TRAINED = {
    "2hded": {"dfd": "dfd_real.yaml", "synthetic": "synthetic.yaml"},
    "2hded-depth": {"dfd": "dfd_real_depth.yaml", "synthetic": "baselines/2hded_depth_synthetic.yaml"},
    "dncnn": {"dfd": "baselines/dncnn_dfd.yaml", "synthetic": "baselines/dncnn_synthetic.yaml"},
    "ircnn": {"dfd": "baselines/ircnn_dfd.yaml", "synthetic": "baselines/ircnn_synthetic.yaml"},
}
#: registry name of each trained method's model
MODEL_NAME = {"2hded": "2hded", "2hded-depth": "2hded-depth", "dncnn": "dncnn", "ircnn": "ircnn"}
DECONV_METHODS = ("wiener", "cg")
ALL_METHODS = (
    "2hded",
    "2hded-depth",
    "dncnn",
    "ircnn",
    "deconv-wiener-oracle",
    "deconv-cg-oracle",
    "deconv-wiener-2hded-depth",
    "deconv-cg-2hded-depth",
    "trivial",
)
LABELS = {
    "2hded": "2HDED:NET",
    "2hded-depth": "2HDED:NET depth only (D3-Net-like)",
    "dncnn": "DnCNN, retrained",
    "ircnn": "IRCNN, retrained",
    "deconv-wiener-oracle": "true depth + layered Wiener deconvolution (oracle)",
    "deconv-cg-oracle": "true depth + occlusion-aware CG deconvolution (oracle)",
    "deconv-wiener-2hded-depth": "2hded-depth depth + layered Wiener deconvolution",
    "deconv-cg-2hded-depth": "2hded-depth depth + occlusion-aware CG deconvolution",
    "mean-depth": "mean training depth",
    "input": "defocused input as its own deblurring",
    "trivial": "trivial references",
}
DATASETS = ("dfd", "synthetic")
DEPTH_COLUMNS = (("rmse", "RMSE (m) ↓", 3), ("abs_rel", "AbsRel ↓", 3), ("delta1", "δ<1.25 ↑", 3))
IMAGE_COLUMNS = (("psnr", "PSNR (dB) ↑", 2), ("ssim", "SSIM ↑", 4))


@dataclass
class Settings:
    """What :func:`run` does; :func:`parse_args` fills it from the command line."""

    out: Path
    runs: Path = Path("runs")
    dfd_root: Path | None = None
    datasets: tuple[str, ...] = DATASETS
    methods: tuple[str, ...] = ALL_METHODS
    device: str = "auto"
    fast: bool = True
    dfd_preset: str = "d3net_nyu"
    synthetic_preset: str = "paper"
    synthetic_n: int = 200
    synthetic_size: int = 256
    mean_depth_items: int = 2000
    tune_items: int = 8
    reg: dict[str, float] = field(default_factory=dict)  # fixed deconvolution weights (no tuning)
    cg_iterations: int = 30
    batch_size: int = 4
    speed_batch: int = 1
    warmup: int = 3
    speed_iters: int = 10
    checkpoints: dict[tuple[str, str], Path] = field(default_factory=dict)  # (method, dataset) -> path
    quick: bool = False
    seed: int = 0
    configs: Path | None = None  # the repository's configs/ folder: names the run folders (see checkpoint_path)


# ---------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------


@dataclass
class DataSpec:
    """One evaluation set: held-out items, training items (mean depth, tuning) and the camera."""

    key: str
    title: str
    evaluation: Any
    training: Any
    preset: str
    depth_clamp_m: tuple[float, float]
    description: str


def _subset(dataset, n: int | None):
    if n is None or n >= len(dataset):
        return dataset
    return torch.utils.data.Subset(dataset, range(n))


def build_data(key: str, s: Settings) -> DataSpec:
    """The evaluation and training sets of ``key`` (``"dfd"`` or ``"synthetic"``)."""
    from ..data import DFDIndoor, SyntheticScenes

    if key == "dfd":
        if s.dfd_root is None:
            raise InputError("dfd: --dfd-root is not set")
        common = {"size": (64, 64), "resize": "crop"} if s.quick else {}
        val = DFDIndoor(s.dfd_root, "val", augment=False, **common)
        train = DFDIndoor(s.dfd_root, "train", augment=False, **common)
        n_val = 2 if s.quick else None
        frame = "64x64 centre crops" if s.quick else "whole 645x432 frames"
        return DataSpec(
            "dfd", "DFD indoor, validation split", _subset(val, n_val), train, s.dfd_preset, (0.1, 10.0),
            f"DFD indoor (Carvalho et al. 2018) validation split: {len(_subset(val, n_val))} scenes of places not in "
            f"train, real f/2.8 photo in, f/8 photo as the target, {frame}; depth capped at 10 m. "
            f"Deconvolution camera: preset `{s.dfd_preset}`.",
        )
    if key == "synthetic":
        size = 32 if s.quick else int(s.synthetic_size)
        n = 2 if s.quick else int(s.synthetic_n)
        scenes = {"height": size, "width": size, "size": (size, size), "preset": s.synthetic_preset, "defocus": "deferred", "augment": False}
        test = SyntheticScenes(None, "test", n=n, **scenes)
        n_train = 4 if s.quick else int(s.mean_depth_items)
        train = SyntheticScenes(None, "train", n=n_train, **scenes)
        far = float(test.config.depth_range_m[1])
        return DataSpec(
            "synthetic", "built-in synthetic scenes, held-out test split", test, train, s.synthetic_preset, (0.1, far),
            f"Built-in synthetic scenes, `test` split (seeds 2,000,000 to {2_000_000 + n - 1:,}, never used in training): "
            f"{n} scenes at {size}x{size}, `{s.synthetic_preset}` camera, rendered on the evaluation device; "
            f"depth range {test.config.depth_range_m[0]}-{far} m.",
        )
    raise InputError(f"unknown dataset {key!r}; choose from {', '.join(DATASETS)}")


# ---------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------


def checkpoint_path(method: str, dataset: str, s: Settings) -> Path:
    """Where ``method``'s checkpoint for ``dataset`` is expected: ``--checkpoint`` or ``RUNS/<config name>``.

    The config name is read from ``s.configs`` (the repository's ``configs/`` folder) when it
    holds the config; otherwise it is the config file's stem (what every shipped config uses).
    """
    if (method, dataset) in s.checkpoints:
        return s.checkpoints[(method, dataset)]
    from ..config import load_config

    config = Path(s.configs or ".") / TRAINED[method][dataset]
    if s.configs is None or not config.exists():
        return s.runs / config.stem
    overrides = ["data.root=."] if dataset == "dfd" else []
    return s.runs / load_config(config, overrides).name


def load_trained(method: str, dataset: str, s: Settings) -> tuple[nn.Module | None, str]:
    """The trained model (or None) and a note: the checkpoint used, or why it is missing."""
    from ..checkpoint import model_from_checkpoint
    from ..models import create_model

    path = checkpoint_path(method, dataset, s)
    found = path.is_file() or (path.is_dir() and any((path / n).exists() for n in ("best.pt", "last.pt")))
    if found:
        model = model_from_checkpoint(path, expect_name=MODEL_NAME[method])
        used = path if path.is_file() else next(path / n for n in ("best.pt", "last.pt") if (path / n).exists())
        return model, f"checkpoint `{used}`"
    if s.quick:
        torch.manual_seed(s.seed)
        return create_model(MODEL_NAME[method]).eval(), "untrained (random weights: --quick, no checkpoint)"
    config = TRAINED[method][dataset]
    return None, (f"no checkpoint at `{path}` (train it: `twohded train --config configs/{config}"
                  + (" data.root=DFD_ROOT" if dataset == "dfd" else "") + "`)")


# ---------------------------------------------------------------------------------------
# Speed
# ---------------------------------------------------------------------------------------


def _sample_batch(dataset, n: int, device: torch.device) -> dict:
    from torch.utils.data import default_collate

    from ..data import render_batch, render_spec_of

    items = [dataset[i % len(dataset)] for i in range(n)]
    return render_batch(default_collate(items), render_spec_of(dataset), device)


def inference_settings(model: nn.Module, fast: bool):
    """The evaluation's fast-path settings for ``model`` (:mod:`twohded.fast`).

    ``fast``: the default fast path (on CUDA: BatchNorm folding, bf16 autocast, channels-last,
    CUDA graphs; plain fp32 on the CPU) or, if False, the fp32 reference path. A
    depth-then-deconvolution pipeline is never captured in CUDA graphs (its layer count
    depends on the depth map: data-dependent shapes and host synchronisation).
    """
    from dataclasses import replace

    from ..baselines import DepthThenDeconvolution
    from ..fast import InferenceSettings

    settings = InferenceSettings.from_flags(None if fast else False)
    if isinstance(model, DepthThenDeconvolution):
        settings = replace(settings, cuda_graphs=False)
    return settings


def measure_speed(model: nn.Module, batch: dict, device: torch.device, fast: bool, warmup: int, iters: int) -> dict:
    """Images per second of ``model`` on ``batch['image']`` (and its depth, for oracles), run as
    the evaluation and ``twohded predict`` run it (:func:`twohded.fast.prepare_inference`)."""
    from ..fast import prepare_inference

    runner = prepare_inference(model, device, inference_settings(model, fast))
    x = batch["image"].float()
    depth = batch.get("render_depth", batch["depth"]).float()
    def step():
        return runner(x, depth=depth) if model.needs_depth else runner(x)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(max(0, warmup)):
        step()
    sync()
    t0 = time.perf_counter()
    for _ in range(max(1, iters)):
        step()
    sync()
    elapsed = time.perf_counter() - t0
    n = x.shape[0] * max(1, iters)
    return {"images_per_s": n / elapsed, "batch": int(x.shape[0]), "iterations": max(1, iters),
            "size": list(x.shape[-2:]), "inference": {k: v for k, v in runner.describe().items()
                                                      if k in ("fast", "autocast", "dtype", "channels_last", "cuda_graphs")}}


# ---------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------


def _git_commit(where: Path) -> str | None:
    """The checkout's commit (``where``: a folder inside it), or None outside a git checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], check=False, cwd=where, capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda})"
    import platform

    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def run(s: Settings, progress: bool = True) -> dict:
    """Run the comparison; returns the ``comparison.json`` content (also written to ``s.out``)."""
    from ..devices import resolve_device

    unknown = sorted(set(s.methods) - set(ALL_METHODS))
    if unknown:
        raise InputError(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(ALL_METHODS)}")
    device = resolve_device(s.device)
    s.out.mkdir(parents=True, exist_ok=True)
    say = print if progress else (lambda *a, **k: None)
    report = _report_header(s, device)
    for key in s.datasets:
        if key == "dfd" and s.dfd_root is None:
            say("dfd: skipped (no --dfd-root)")
            report["datasets"][key] = {"skipped": "no --dfd-root given"}
            continue
        report["datasets"][key] = _run_dataset(key, s, device, say)
    write(report, s.out)
    return report


def _report_header(s: Settings, device: torch.device) -> dict[str, Any]:
    """The report's fields other than the datasets' (which :func:`run` fills in)."""
    return {
        "format": FORMAT,
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "device": _device_name(device),
        "torch": torch.__version__,
        "commit": _git_commit(s.configs or Path(__file__).parent),
        "quick": s.quick,
        "command": ("python " + " ".join(sys.argv)) if sys.argv and sys.argv[0] else None,
        "settings": {
            "protocol": "standard",
            "speed": {"batch": s.speed_batch, "warmup": 1 if s.quick else s.warmup,
                      "iterations": 2 if s.quick else s.speed_iters, "fast": s.fast},
            "cg_iterations": s.cg_iterations,
            "tune_items": s.tune_items,
            "mean_depth_items": s.mean_depth_items,
        },
        "datasets": {},
    }


def _run_dataset(key: str, s: Settings, device: torch.device, say) -> dict[str, Any]:
    """Every asked method on one evaluation set: the report's ``datasets[key]`` entry."""
    data = build_data(key, s)
    say(f"== {data.title}: {len(data.evaluation)} images")
    entry: dict[str, Any] = {"title": data.title, "description": data.description, "count": len(data.evaluation),
                             "preset": data.preset, "methods": {}, "skipped": {}}
    speed_batch = _sample_batch(data.evaluation, s.speed_batch, device)
    models = _load_models(key, s, entry, say)
    regs = _deconvolution_weights(data, s, models, entry, device, say)
    for method in s.methods:
        for name, model, note, params in _method_models(method, data, s, models, regs, entry, say):
            _evaluate_method(key, name, model, note, params, data, s, device, speed_batch, entry, say)
        if device.type == "cuda":
            torch.cuda.empty_cache()
    entry["summary"] = summary_lines(entry)
    return entry


def _load_models(key: str, s: Settings, entry: dict, say) -> dict[str, tuple[nn.Module, str]]:
    """The trained networks the asked methods need: method -> (model, note); missing ones in ``entry["skipped"]``."""
    models: dict[str, tuple[nn.Module, str]] = {}
    for method in ("2hded", "2hded-depth", "dncnn", "ircnn"):
        needed = method in s.methods or (method == "2hded-depth" and any(m.endswith("-2hded-depth") for m in s.methods))
        if not needed:
            continue
        model, note = load_trained(method, key, s)
        if model is None:
            entry["skipped"][method] = note
            say(f"  {method}: skipped: {note}")
        else:
            models[method] = (model, note)
    return models


def _deconvolution_weights(data: DataSpec, s: Settings, models: dict, entry: dict, device: torch.device,
                           say) -> dict[str, float]:
    """The regularisation weight of each runnable deconvolution (``--reg``, or tuned on training items)."""
    from ..baselines import tune_regularisation

    regs: dict[str, float] = {}
    limit = 1 if s.quick else s.tune_items
    for m in DECONV_METHODS:
        runnable = [x for x in s.methods if x.startswith(f"deconv-{m}-") and (x.endswith("-oracle") or "2hded-depth" in models)]
        if not runnable:
            continue
        if m in s.reg:
            regs[m] = s.reg[m]
            entry.setdefault("deconv_tuning", {})[m] = {"reg": regs[m], "chosen": "fixed (--reg)"}
            continue
        opts = {"method": m, "iterations": _cg_iterations(s)} if m == "cg" else {"method": m}
        if s.quick:
            opts["grid"] = (1e-4, 1e-2)
        t0 = time.perf_counter()
        best, scores = tune_regularisation(data.training, data.preset, limit=limit, device=device, **opts)
        regs[m] = best
        entry.setdefault("deconv_tuning", {})[m] = {
            "reg": best, "chosen": f"best mean PSNR of the oracle on {min(len(data.training), limit)} training item(s)",
            "psnr_by_reg": {f"{k:g}": v for k, v in scores.items()}, "seconds": time.perf_counter() - t0,
        }
        say(f"  deconvolution {m}: reg {best:g} (tuned on training items: " + ", ".join(f"{k:g}: {v:.2f} dB" for k, v in scores.items()) + ")")
    return regs


def _cg_iterations(s: Settings) -> int:
    return 5 if s.quick else s.cg_iterations


def _method_models(method: str, data: DataSpec, s: Settings, models: dict, regs: dict[str, float], entry: dict,
                   say) -> list[tuple[str, nn.Module, str, int]]:
    """(name, model, note, parameters) to evaluate for ``method`` (``[]`` if it cannot run: noted in ``entry``)."""
    from ..baselines import DepthThenDeconvolution, TrivialBaseline, mean_depth
    from ..models import count_parameters

    if method in MODEL_NAME:
        if method not in models:
            return []
        model, note = models[method]
        return [(method, model, note, count_parameters(model))]
    if method == "trivial":
        limit = 4 if s.quick else s.mean_depth_items
        depth_m = mean_depth(data.training, limit=limit)
        return [("trivial", TrivialBaseline(depth_m), f"mean depth of {min(len(data.training), limit)} training items: {depth_m:.3f} m", 0)]
    if not method.startswith("deconv-"):
        return []
    _, m, source = method.split("-", 2)
    if m not in regs or (source != "oracle" and "2hded-depth" not in models):  # not runnable: no depth model
        entry["skipped"][method] = "needs the 2hded-depth checkpoint: " + entry["skipped"].get("2hded-depth", "missing")
        say(f"  {method}: skipped (no 2hded-depth checkpoint)")
        return []
    iterations = _cg_iterations(s)
    opts: dict[str, Any] = {"method": m, "reg": regs[m]}
    if m == "cg":
        opts["iterations"] = iterations
    how = f"{m}, reg {regs[m]:g}" + (f", {iterations} iterations" if m == "cg" else "")
    if source == "oracle":
        return [(method, DepthThenDeconvolution("oracle", data.preset, **opts), f"ground-truth depth; {how}", 0)]
    depth_model, depth_note = models["2hded-depth"]
    model = DepthThenDeconvolution(depth_model, data.preset, depth_clamp_m=data.depth_clamp_m, **opts)
    return [(method, model, f"depth from 2hded-depth ({depth_note}); {how}", count_parameters(depth_model))]


def _evaluate_method(key: str, name: str, model: nn.Module, note: str, params: int, data: DataSpec, s: Settings,
                     device: torch.device, speed_batch: dict, entry: dict, say) -> None:
    """Evaluate and time one method; its entry goes into ``entry["methods"][name]``."""
    from ..evaluate import evaluate_model

    t0 = time.perf_counter()
    result = evaluate_model(model, data.evaluation, dataset_name=key, batch_size=s.batch_size, device=device,
                            settings=inference_settings(model, s.fast), out_dir=s.out / key / name,
                            info={"model_name": name, "note": note})
    eval_s = time.perf_counter() - t0
    speed = measure_speed(model, speed_batch, device, s.fast, 1 if s.quick else s.warmup, 2 if s.quick else s.speed_iters)
    entry["methods"][name] = {
        "label": LABELS.get(name, name),
        "outputs": list(model.outputs),
        "note": note,
        "parameters": int(params),
        "depth": result.depth,
        "aif": result.aif,
        "input": result.input,
        "gain": result.gain,
        "speed": speed,
        "eval_seconds": eval_s,
    }
    shown = [f"depth RMSE {result.depth['rmse']:.3f} m" if result.depth else "",
             f"PSNR {result.aif['psnr']:.2f} dB" if result.aif else ""]
    shown = ", ".join(x for x in shown if x) or "no metric"
    say(f"  {name}: {shown}; {speed['images_per_s']:.1f} images/s ({eval_s:.1f} s)")


# ---------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------


def _rows(entry: dict) -> list[tuple[str, str, dict | None, dict | None, int, float, str]]:
    """(key, label, depth, aif, params, images/s, note) per table row; ``trivial`` gives two."""
    rows = []
    for name, m in entry["methods"].items():
        ips = m["speed"]["images_per_s"]
        if name == "trivial":
            depth_m = m["note"].rsplit(": ", 1)[-1]
            rows.append(("mean-depth", f"{LABELS['mean-depth']} ({depth_m})", m["depth"], None, 0, ips, m["note"]))
            rows.append(("input", LABELS["input"], None, m["input"] or None, 0, ips, "the defocused input itself"))
            continue
        outputs = m["outputs"]
        depth = m["depth"] if "depth" in outputs and not name.startswith("deconv-") else None
        aif = m["aif"] if "aif" in outputs else None
        rows.append((name, m["label"], depth or None, aif or None, m["parameters"], ips, m["note"]))
    return rows


def _cell(metrics: dict | None, key: str, digits: int) -> str:
    if not metrics or metrics.get(key) is None:
        return ""
    return f"{metrics[key]:.{digits}f}"


def table(entry: dict) -> str:
    """The Markdown comparison table of one dataset."""
    head = ["method"] + [c[1] for c in DEPTH_COLUMNS] + [c[1] for c in IMAGE_COLUMNS] + ["parameters", "images/s"]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for _, label, depth, aif, params, ips, _ in _rows(entry):
        cells = [label] + [_cell(depth, k, d) for k, _, d in DEPTH_COLUMNS] + [_cell(aif, k, d) for k, _, d in IMAGE_COLUMNS]
        cells += [f"{params:,}", f"{ips:.1f}" if ips < 1000 else f"{ips:,.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summary_lines(entry: dict) -> list[str]:
    """Where 2HDED:NET wins and where it does not, against the non-oracle methods (and the oracle, apart)."""
    rows = {key: (depth, aif) for key, _, depth, aif, *_ in _rows(entry)}
    if "2hded" not in rows:
        return ["2HDED:NET was not evaluated (no checkpoint): no verdict."]
    _ours_depth, _ours_aif = rows["2hded"]
    lines = []
    for group, idx, metrics in (("depth", 0, DEPTH_COLUMNS), ("deblurring", 1, IMAGE_COLUMNS)):
        ours = rows["2hded"][idx]
        if not ours:
            continue
        for key, title, digits in metrics:
            higher = "↑" in title
            name = title.split(" ")[0]
            others = {k: v[idx][key] for k, v in rows.items() if k != "2hded" and v[idx] and v[idx].get(key) is not None}
            fair = {k: v for k, v in others.items() if "oracle" not in k}
            if not fair:
                continue
            best_key = max(fair, key=fair.get) if higher else min(fair, key=fair.get)
            a, b = round(ours[key], digits), round(fair[best_key], digits)
            verdict = "ties" if a == b else "wins" if (a > b if higher else a < b) else "does not win"
            line = (f"{group} {name}: 2HDED:NET {verdict} ({ours[key]:.{digits}f} vs the best other non-oracle method, "
                    f"{LABELS.get(best_key, best_key)}: {fair[best_key]:.{digits}f})")
            oracle = {k: v for k, v in others.items() if "oracle" in k}
            if oracle:
                ok = max(oracle, key=oracle.get) if higher else min(oracle, key=oracle.get)
                line += f"; the oracle upper bound ({LABELS.get(ok, ok)}): {oracle[ok]:.{digits}f}"
            lines.append(line + ".")
    return lines


def markdown(report: dict) -> str:
    lines = ["# Baselines compared with 2HDED:NET", ""]
    lines.append(f"{report['date']}, {report['device']}, torch {report['torch']}"
                 + (f", commit {report['commit']}" if report.get("commit") else "") + ".")
    if report.get("quick"):
        lines += ["", ("**--quick run: tiny sizes, a couple of images, random weights where no checkpoint exists. "
                  "A plumbing check, not results.**")]
    sp = report["settings"]["speed"]
    lines += ["", f"Standard protocol (`twohded evaluate`), metrics per image averaged over images. images/s: batch "
              f"{sp['batch']} at the evaluation size, {sp['warmup']} warm-up + {sp['iterations']} timed passes, "
              + ("the fast path of `twohded evaluate` / `twohded predict` (`twohded.fast`: on CUDA BatchNorm folding, "
                 "bf16 autocast, channels-last, CUDA graphs for the networks; fp32 on the CPU)" if sp["fast"] else "fp32 (--no-fast)")
              + ", synchronised. Depth columns for depth methods, PSNR / SSIM for deblurring methods; "
              "the oracle rows use the ground-truth depth (an upper bound, not a competitor).", ""]
    for key, entry in report["datasets"].items():
        if "skipped" in entry and "methods" not in entry:
            lines += [f"## {key}", "", f"Skipped: {entry['skipped']}.", ""]
            continue
        lines += [f"## {entry['title']}", "", entry["description"], "", table(entry), ""]
        if entry.get("deconv_tuning"):
            lines.append("Deconvolution regularisation (gradient prior), chosen on training items with the true depth: "
                         + "; ".join(f"{m}: {t['reg']:g} ({t['chosen']})" for m, t in entry["deconv_tuning"].items()) + ".")
            lines.append("")
        if entry["skipped"]:
            lines.append("Not evaluated:")
            lines.append("")
            lines += [f"- {LABELS.get(k, k)}: {v}" for k, v in entry["skipped"].items()]
            lines.append("")
        lines.append("Sources: " + "; ".join(f"{LABELS.get(k, k)}: {m['note']}" for k, m in entry["methods"].items()) + ".")
        lines.append("")
        if entry.get("summary"):
            lines.append("Where 2HDED:NET wins and where it does not:")
            lines.append("")
            lines += [f"- {x}" for x in entry["summary"]]
            lines.append("")
    if report.get("command"):
        lines += ["Command:", "", f"    {report['command']}", ""]
    return "\n".join(lines)


def write(report: dict, out: Path) -> tuple[Path, Path]:
    from ..io import atomic_write

    def clean(x):
        if isinstance(x, float) and not math.isfinite(x):
            return None
        if isinstance(x, dict):
            return {str(k): clean(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [clean(v) for v in x]
        return x

    js, md = out / "comparison.json", out / "comparison.md"
    with atomic_write(js) as tmp:
        tmp.write_text(json.dumps(clean(report), indent=1, allow_nan=False) + "\n")
    with atomic_write(md) as tmp:
        tmp.write_text(markdown(report) + "\n")
    return js, md


# ---------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None, default_configs: Path | None = None) -> Settings:
    """The command line -> :class:`Settings`; ``default_configs``: ``--configs`` when not given."""
    p = argparse.ArgumentParser(
        prog="compare_baselines.py",
        description="Evaluate 2HDED:NET and every baseline on the DFD validation set and on held-out synthetic "
        "scenes, through the same evaluation; write comparison.md and comparison.json.",
    )
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--runs", type=Path, default=Path("runs"), help="folder of the training runs, one per config name (default runs)")
    p.add_argument("--dfd-root", type=Path, default=None, help="the DFD indoor folder (dfd_dataset_indoor_N2_8/, _N8/); without it DFD is skipped")
    p.add_argument("--datasets", default=",".join(DATASETS), help=f"comma-separated subset of {','.join(DATASETS)}")
    p.add_argument("--methods", default=",".join(ALL_METHODS), help="comma-separated subset of: " + ", ".join(ALL_METHODS))
    p.add_argument("--checkpoint", action="append", default=[], metavar="METHOD@DATASET=PATH",
                   help="use this checkpoint (file or run folder) instead of RUNS/<config name>, e.g. 2hded@dfd=runs/dfd/best.pt")
    p.add_argument("--dfd-preset", default="d3net_nyu",
                   help="camera of the deconvolution on DFD (default d3net_nyu: D3-Net's simulation of the DFD camera, f=15 mm f/2.8, focus 2 m)")
    p.add_argument("--synthetic-preset", default="paper", help="camera of the synthetic scenes (default paper, as configs/synthetic.yaml)")
    p.add_argument("--synthetic-n", type=int, default=200, help="held-out synthetic scenes (default 200)")
    p.add_argument("--synthetic-size", type=int, default=256, help="synthetic scene size in pixels (default 256)")
    p.add_argument("--mean-depth-items", type=int, default=2000, help="training items averaged for the mean-depth baseline (default 2000)")
    p.add_argument("--tune-items", type=int, default=8, help="training items used to choose the deconvolution's regularisation (default 8)")
    p.add_argument("--reg", action="append", default=[], metavar="METHOD=VALUE",
                   help="fix the deconvolution's regularisation instead of tuning it, e.g. cg=1e-3")
    p.add_argument("--cg-iterations", type=int, default=30, help="conjugate-gradient iterations (default 30)")
    p.add_argument("--batch-size", type=int, default=4, help="evaluation batch size (default 4)")
    p.add_argument("--speed-batch", type=int, default=1, help="batch size of the images/s measurement (default 1)")
    p.add_argument("--warmup", type=int, default=3, help="warm-up passes before timing (default 3)")
    p.add_argument("--speed-iters", type=int, default=10, help="timed passes (default 10)")
    p.add_argument("--device", default="auto", help="cuda, cpu or auto (default)")
    p.add_argument("--no-fast", action="store_true", help="fp32 everywhere (default: bf16 autocast + channels-last on CUDA)")
    p.add_argument("--configs", type=Path, default=default_configs,
                   help="the repository's configs/ folder, to name the run folders (default: "
                   + (f"{default_configs}" if default_configs else "none: run folders are named after the config files") + ")")
    p.add_argument("--quick", action="store_true", help="CI plumbing check: tiny sizes, 2 images, random weights without checkpoints")
    a = p.parse_args(argv)

    def split(text: str) -> tuple[str, ...]:
        return tuple(x.strip() for x in text.split(",") if x.strip())

    checkpoints = {}
    for spec in a.checkpoint:
        try:
            left, path = spec.split("=", 1)
            method, dataset = left.split("@", 1)
        except ValueError:
            raise InputError(f"--checkpoint {spec!r}: expected METHOD@DATASET=PATH") from None
        if method not in TRAINED or dataset not in DATASETS:
            raise InputError(f"--checkpoint {spec!r}: METHOD in {', '.join(TRAINED)}, DATASET in {', '.join(DATASETS)}")
        checkpoints[(method, dataset)] = Path(path)
    regs = {}
    for spec in a.reg:
        try:
            m, v = spec.split("=", 1)
            regs[m] = float(v)
        except ValueError:
            raise InputError(f"--reg {spec!r}: expected METHOD=VALUE, e.g. cg=1e-3") from None
        if m not in DECONV_METHODS or not (math.isfinite(regs[m]) and regs[m] > 0):
            raise InputError(f"--reg {spec!r}: METHOD in {', '.join(DECONV_METHODS)}, VALUE > 0")
    datasets = split(a.datasets)
    if set(datasets) - set(DATASETS):
        raise InputError(f"--datasets: choose from {', '.join(DATASETS)}")
    return Settings(
        out=a.out, runs=a.runs, dfd_root=a.dfd_root, datasets=datasets, methods=split(a.methods), device=a.device,
        fast=not a.no_fast, dfd_preset=a.dfd_preset, synthetic_preset=a.synthetic_preset, synthetic_n=a.synthetic_n,
        synthetic_size=a.synthetic_size, mean_depth_items=a.mean_depth_items, tune_items=a.tune_items, reg=regs,
        cg_iterations=a.cg_iterations, batch_size=a.batch_size, speed_batch=a.speed_batch, warmup=a.warmup,
        speed_iters=a.speed_iters, checkpoints=checkpoints, quick=a.quick, configs=a.configs,
    )


def main(argv: list[str] | None = None, default_configs: Path | None = None) -> int:
    """The command line of ``benchmarks/compare_baselines.py`` (which passes its checkout's ``configs/``)."""
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    try:
        s = parse_args(argv, default_configs)
        from ..optics import get_preset

        get_preset(s.dfd_preset)
        get_preset(s.synthetic_preset)
        run(s)
    except TwohdedError as exc:
        print(f"compare_baselines: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {s.out / 'comparison.md'} and {s.out / 'comparison.json'}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())

"""``twohded demo``: the whole pipeline on the built-in synthetic scenes, with no download.

1. renders defocus for procedural RGB-D scenes (the ``paper`` camera);
2. trains 2HDED:NET briefly (both heads);
3. evaluates it on held-out scenes, next to the trivial baselines: the mean training depth
   as a depth map, and the defocused input as its own deblurring;
4. predicts on a few held-out inputs, as ``twohded predict`` would;
5. writes ``OUT/report.md`` with the numbers and figures.

Sizes are chosen to finish in under 10 minutes on a 2-core CPU (``DemoSettings.cpu``), with a
larger setting when a GPU is present (``DemoSettings.gpu``) and a tiny one for CI
(``DemoSettings.quick``).
"""

from __future__ import annotations

import json
import platform
import time
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path

import torch
from torch import nn

from .errors import InputError
from .io import atomic_write


@dataclass(frozen=True)
class DemoSettings:
    """Sizes of one demo run (pixels, scene counts, epochs)."""

    size: int = 64
    n_train: int = 192
    n_val: int = 16
    n_test: int = 32
    epochs: int = 14
    batch_size: int = 8
    lr: float = 1e-3
    n_predict: int = 3
    figures: int = 4
    preset: str = "paper"
    amp: str = "auto"
    ema_decay: float | None = None

    @staticmethod
    def cpu() -> "DemoSettings":
        return DemoSettings()

    @staticmethod
    def gpu() -> "DemoSettings":
        return DemoSettings(size=128, n_train=1024, n_val=64, n_test=64, epochs=12, batch_size=16, lr=1e-3)

    @staticmethod
    def quick() -> "DemoSettings":
        return DemoSettings(size=32, n_train=8, n_val=4, n_test=4, epochs=1, batch_size=4, n_predict=1, figures=1)


def demo_config(settings: DemoSettings, device: str, seed: int = 0):
    """The demo's experiment configuration (an :class:`~twohded.config.ExperimentConfig`)."""
    from .config import config_from_dict

    s = settings
    return config_from_dict(
        {
            "name": "demo",
            "seed": seed,
            "model": {"name": "2hded"},
            "data": {
                "name": "synthetic",
                "train_split": "train",
                "val_split": "val",
                "size": s.size,
                "preset": s.preset,
                "defocus": "deferred",
                "options": {"n": s.n_train, "height": s.size, "width": s.size},
                "val_options": {"n": s.n_val},
            },
            "optim": {"name": "adam", "lr": s.lr, "betas": [0.9, 0.999]},
            "schedule": {"name": "cosine", "warmup_epochs": 0},
            "train": {
                "epochs": s.epochs,
                "batch_size": s.batch_size,
                "num_workers": 0,
                "device": device,
                "amp": s.amp,
                "ema_decay": s.ema_decay,
                "val_every": max(1, s.epochs // 3),
            },
        },
        where="twohded.demo",
    )


class TrivialBaseline(nn.Module):
    """Predicts a constant depth (metres) and returns the input as the all-in-focus image."""

    outputs = ("depth", "aif")

    def __init__(self, depth_m: float) -> None:
        super().__init__()
        self.register_buffer("depth_m", torch.tensor(float(depth_m)))

    def forward(self, image: torch.Tensor):
        from .models import ModelOutput

        depth = self.depth_m.to(image.dtype).expand(image.shape[0], 1, *image.shape[-2:]).clone()
        return ModelOutput(depth=depth, aif=image)


def mean_depth(dataset) -> float:
    """Mean of the valid depth pixels (metres) over a dataset's items."""
    total, count = 0.0, 0
    for i in range(len(dataset)):
        item = dataset[i]
        d = item["depth"][item["mask"]]
        total += float(d.double().sum())
        count += d.numel()
    if count == 0:
        raise InputError("demo: the training scenes have no valid depth")
    return total / count


def run_demo(out: str | Path, settings: DemoSettings | None = None, device: str = "auto", overwrite: bool = False) -> Path:
    """Run the demo into folder ``out``; returns the report's path."""
    from .checkpoint import model_from_checkpoint
    from .data import SyntheticScenes
    from .evaluate import evaluate_model
    from .predict import Predictor
    from .training.trainer import train

    out = Path(out)
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise InputError(f"{out}: output folder is not empty (use --overwrite or another --out)")
        import shutil

        shutil.rmtree(out)
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    device = "cuda" if use_cuda else "cpu"
    settings = settings or (DemoSettings.gpu() if use_cuda else DemoSettings.cpu())
    timings: dict[str, float] = {}

    t0 = time.perf_counter()
    cfg = demo_config(settings, device)
    result = train(cfg, run_dir=out / "train", progress=False)
    timings["train_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    checkpoint = result.best_checkpoint or result.last_checkpoint
    model = model_from_checkpoint(checkpoint)
    size = (settings.size, settings.size)
    test = SyntheticScenes(
        None, "test", n=settings.n_test, height=settings.size, width=settings.size, size=size, preset=settings.preset, defocus="render"
    )
    train_set = SyntheticScenes(
        None, "train", n=settings.n_train, height=settings.size, width=settings.size, size=size, preset=settings.preset, defocus="render", augment=False
    )
    trained = evaluate_model(
        model, test, dataset_name="synthetic", device=device, figures=settings.figures, out_dir=out / "eval", batch_size=settings.batch_size
    )
    baseline_depth = mean_depth(train_set)
    trivial = evaluate_model(TrivialBaseline(baseline_depth), test, dataset_name="synthetic", device=device, batch_size=settings.batch_size)
    timings["evaluate_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    predictor = Predictor(model, device=device)
    written = []
    for i in range(min(settings.n_predict, len(test))):
        item = test[i]
        pred = predictor.predict(item["image"])
        written += pred.save(out / "predict", f"test_{item['name']}", overwrite=True, depth_range=(0.7, 10.0))
    timings["predict_s"] = time.perf_counter() - t0

    summary = {
        "date": date.today().isoformat(),
        "device": torch.cuda.get_device_name(0) if use_cuda else f"CPU ({platform.machine()}, {torch.get_num_threads()} threads)",
        "torch": torch.__version__,
        "settings": asdict(settings),
        "checkpoint": str(checkpoint),
        "mean_training_depth_m": baseline_depth,
        "model": {"depth": trained.depth, "aif": trained.aif},
        "baselines": {"mean_depth": trivial.depth, "input_as_deblurred": trivial.input},
        "timings_s": timings,
        "beats_baselines": {
            "depth_rmse": trained.depth.get("rmse", float("inf")) < trivial.depth["rmse"],
            "depth_abs_rel": trained.depth.get("abs_rel", float("inf")) < trivial.depth["abs_rel"],
            "aif_psnr": trained.aif.get("psnr", float("-inf")) > trivial.input["psnr"],
        },
    }
    with atomic_write(out / "summary.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=1))
    report = out / "report.md"
    with atomic_write(report) as tmp:
        tmp.write_text(_report_text(summary, out, written))
    return report


def _report_text(s: dict, out: Path, written: list[Path]) -> str:
    m, b = s["model"], s["baselines"]
    st = s["settings"]
    lines = [
        "# twohded demo report",
        "",
        f"{s['date']}, {s['device']}, torch {s['torch']}. Built-in synthetic scenes at "
        f"{st['size']}x{st['size']} (paper camera), {st['n_train']} training / {st['n_val']} validation / "
        f"{st['n_test']} held-out test scenes; 2HDED:NET trained for {st['epochs']} epochs "
        f"(batch {st['batch_size']}, Adam, lr {st['lr']}, cosine) in {s['timings_s']['train_s']:.0f} s.",
        "",
        "## Held-out test scenes",
        "",
        "| method | RMSE (m) | AbsRel | delta < 1.25 | PSNR (dB) | SSIM |",
        "|---|---|---|---|---|---|",
        f"| 2HDED:NET (this run) | {m['depth']['rmse']:.3f} | {m['depth']['abs_rel']:.3f} | {m['depth']['delta1']:.3f} "
        f"| {m['aif']['psnr']:.2f} | {m['aif']['ssim']:.4f} |",
        f"| mean training depth ({s['mean_training_depth_m']:.2f} m) | {b['mean_depth']['rmse']:.3f} | "
        f"{b['mean_depth']['abs_rel']:.3f} | {b['mean_depth']['delta1']:.3f} | | |",
        f"| defocused input as its own deblurring | | | | {b['input_as_deblurred']['psnr']:.2f} | "
        f"{b['input_as_deblurred']['ssim']:.4f} |",
        "",
        "Beats the trivial baselines: "
        + ", ".join(f"{k}: {'yes' if v else 'no'}" for k, v in s["beats_baselines"].items())
        + ".",
        "",
        "## Figures (input, true depth, predicted depth, error, target, deblurred)",
        "",
    ]
    for fig in sorted((out / "eval" / "figures").glob("*.png")):
        lines.append(f"![{fig.stem}](eval/figures/{fig.name})")
    lines += ["", "## Predictions (as `twohded predict` writes them)", ""]
    lines += [f"- `{p.relative_to(out)}`" for p in written]
    lines += [
        "",
        f"Training run (config, checkpoints, log.csv): `{Path(s['checkpoint']).parent.relative_to(out)}`. "
        f"Timings: " + ", ".join(f"{k} {v:.0f} s" for k, v in s["timings_s"].items()) + ".",
        "",
    ]
    return "\n".join(lines)

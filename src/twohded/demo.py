"""``twohded demo``: the whole pipeline on the built-in synthetic scenes, with no download.

1. renders defocus for procedural RGB-D scenes (the ``paper`` camera);
2. trains 2HDED:NET briefly (both heads);
3. evaluates it on held-out scenes, next to the trivial baselines: the mean training depth
   as a depth map, and the defocused input as its own deblurring;
4. predicts on a few held-out inputs, as ``twohded predict`` would;
5. writes ``OUT/report.md`` with the numbers and figures.

Sizes are chosen to finish in under 10 minutes on a 2-core CPU (``DemoSettings.cpu``; a GPU
runs the same recipe, ``DemoSettings.gpu``) and a tiny one for CI (``DemoSettings.quick``).
"""

from __future__ import annotations

import json
import platform
import time
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path

import torch

from .baselines.trivial import TrivialBaseline, mean_depth  # the trivial references (also in the comparison)
from .errors import InputError
from .io import atomic_write


#: The demo's loss: mean squared errors of depth (metres^2) and of the image, the quantities
#: its report scores (RMSE, PSNR). The paper's L1 + gradient + Charbonnier + SSIM loss pulls a
#: short run towards the median depth and towards SSIM, which the mean-depth and the
#: input-as-output baselines beat on RMSE and PSNR; ``configs/synthetic.yaml`` keeps it.
DEMO_LOSS = (
    ("l1", False), ("gradient", False), ("depth_mse", True),
    ("charbonnier", False), ("ssim", False), ("mse", True), ("lam", 1.0),
)


@dataclass(frozen=True)
class DemoSettings:
    """Sizes and recipe of one demo run (pixels, scene counts, epochs).

    The recipe (chosen with ``scripts/demo_sweep.py``, docs/results/demo_sweep*.md): 2HDED:NET
    with the depth head's bias started at the mean training depth (``depth_bias_m``), no
    decoder dropout, :data:`DEMO_LOSS`, and 1,344 distinct scenes seen twice (192 scenes seen
    14 times over-fit: validation RMSE rose after ~200 steps).
    """

    size: int = 64
    n_train: int = 1344
    n_val: int = 16
    n_test: int = 32
    epochs: int = 2
    batch_size: int = 8
    lr: float = 1e-3
    n_predict: int = 3
    figures: int = 4
    preset: str = "paper"
    amp: str = "none"
    ema_decay: float | None = None
    decoder_dropout: float = 0.0
    depth_bias_from_mean: bool = True
    scene_options: tuple = ()
    val_every: int | None = 1  # epochs between validations (None: a third of the run)
    loss_options: tuple = DEMO_LOSS  # (key, value) pairs of LossConfig (empty: the paper's loss)

    @staticmethod
    def cpu() -> "DemoSettings":
        return DemoSettings()

    @staticmethod
    def gpu() -> "DemoSettings":
        """The CPU recipe (the one whose results are documented); a GPU runs it in about 2 minutes."""
        return DemoSettings()

    @staticmethod
    def quick() -> "DemoSettings":
        return DemoSettings(size=32, n_train=8, n_val=4, n_test=4, epochs=1, batch_size=4, n_predict=1, figures=1)


def demo_config(settings: DemoSettings, device: str, seed: int = 0, mean_depth_m: float | None = None):
    """The demo's experiment configuration (an :class:`~twohded.config.ExperimentConfig`).

    ``mean_depth_m``: the training scenes' mean depth (metres), used as the depth head's
    initial bias when ``settings.depth_bias_from_mean``.
    """
    from .config import config_from_dict

    s = settings
    model_options: dict = {"decoder_dropout": s.decoder_dropout}
    if s.depth_bias_from_mean:
        if mean_depth_m is None:
            raise InputError("demo: depth_bias_from_mean needs the training scenes' mean depth")
        model_options["depth_bias_m"] = float(mean_depth_m)
    return config_from_dict(
        {
            "name": "demo",
            "seed": seed,
            "model": {"name": "2hded", "options": model_options},
            "data": {
                "name": "synthetic",
                "train_split": "train",
                "val_split": "val",
                "size": s.size,
                "preset": s.preset,
                "defocus": "deferred",
                "options": {"n": s.n_train, "height": s.size, "width": s.size, "scene_options": dict(s.scene_options) or None},
                "val_options": {"n": s.n_val},
            },
            "loss": dict(s.loss_options),
            "optim": {"name": "adam", "lr": s.lr, "betas": [0.9, 0.999]},
            "schedule": {"name": "cosine", "warmup_epochs": 0},
            "train": {
                "epochs": s.epochs,
                "batch_size": s.batch_size,
                "num_workers": 0,
                "device": device,
                "amp": s.amp,
                "ema_decay": s.ema_decay,
                "val_every": s.val_every or max(1, s.epochs // 3),
            },
        },
        where="twohded.demo",
    )


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

    size = (settings.size, settings.size)
    scenes = dict(height=settings.size, width=settings.size, size=size, preset=settings.preset, scene_options=dict(settings.scene_options) or None)
    train_set = SyntheticScenes(None, "train", n=settings.n_train, defocus="deferred", augment=False, **scenes)
    baseline_depth = mean_depth(train_set)

    t0 = time.perf_counter()
    cfg = demo_config(settings, device, mean_depth_m=baseline_depth)
    result = train(cfg, run_dir=out / "train", progress=False)
    timings["train_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    checkpoint = result.best_checkpoint or result.last_checkpoint
    model = model_from_checkpoint(checkpoint)
    test = SyntheticScenes(None, "test", n=settings.n_test, defocus="render", **scenes)
    trained = evaluate_model(
        model, test, dataset_name="synthetic", device=device, figures=settings.figures, out_dir=out / "eval", batch_size=settings.batch_size
    )
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
        f"(batch {st['batch_size']}, Adam, lr {st['lr']}, cosine) in {s['timings_s']['train_s']:.0f} s"
        + (", with the mean-squared-error losses of `twohded.demo.DEMO_LOSS` (not the paper's loss)" if st.get("loss_options") else "")
        + (", the depth head started at the mean training depth" if st.get("depth_bias_from_mean") else "")
        + ".",
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

"""The training loop: ``train(config) -> RunResult``; ``train(resume=RUN_DIR)`` continues a run.

One call builds the datasets, the model, the loss, the optimizer and the schedule from an
:class:`~twohded.config.ExperimentConfig`, then trains with:

* defocus rendered on the training device inside the loop for RGB-D data
  (``data.defocus: deferred`` + :func:`twohded.data.render_batch`), so the loader only reads
  and crops;
* bf16 autocast on GPUs that support it (``train.amp``), channels_last, optional
  ``torch.compile``, optional EMA of the weights, gradient clipping;
* a seeded, sharded epoch order (:mod:`~twohded.training.sampler`) and saved RNG states, so
  that ``--resume`` continues a killed run *exactly* (also from the middle of an epoch);
* ``RUN_DIR/last.pt`` (atomic, every ``train.checkpoint_every`` epochs and/or
  ``train.checkpoint_every_steps`` steps, and at the end), ``best.pt`` (best validation
  ``train.best_metric``), ``config.yaml``, ``log.csv`` and TensorBoard files in ``tb/``;
* a non-finite loss stops the run with :class:`NonFiniteLossError` before the update;
* DDP when started by ``torchrun`` (see :mod:`~twohded.training.ddp`).

See docs/training.md.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from torch import nn

from ..checkpoint import load_checkpoint, save_checkpoint
from ..config import ExperimentConfig, apply_overrides, config_from_dict, dump_config, load_config
from ..devices import device_type, resolve_device
from ..errors import InputError
from ..io import atomic_write
from ..metrics import DEPTH_KEYS, IMAGE_KEYS
from . import ddp
from .ema import ModelEMA
from .logs import CSVLog, TensorBoardLog
from .optim import LRSchedule, StepScheduler, build_optimizer
from .sampler import ShardedEpochSampler
from .step import NonFiniteLossError, TrainStep, wrap_ddp
from .validation import metric_direction, validate

__all__ = ["train", "RunResult", "NonFiniteLossError", "KILL_ENV"]

log = logging.getLogger("twohded.training")

#: testing hook: ``TWOHDED_KILL_AT_STEP=N`` ends the process abruptly (``os._exit(137)``, no
#: clean-up) right after optimizer step N, as a kill would; used to test ``--resume``.
KILL_ENV = "TWOHDED_KILL_AT_STEP"


@dataclass
class RunResult:
    """What :func:`train` returns (on every rank)."""

    run_dir: Path
    last_checkpoint: Path
    best_checkpoint: Optional[Path]
    step: int
    epoch: int  # epochs completed
    metrics: dict[str, float] = field(default_factory=dict)  # last validation
    best_metric: Optional[str] = None
    best_value: Optional[float] = None
    history: list[dict[str, Any]] = field(default_factory=list)  # one entry per completed epoch


# ------------------------------------------------------------------------------------------
# set-up helpers
# ------------------------------------------------------------------------------------------


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _rng_state(device: torch.device) -> dict[str, Any]:
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
    }


def _set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and state.get("cuda") is not None:
        torch.cuda.set_rng_state(state["cuda"], device)


def _amp(cfg: ExperimentConfig, device: torch.device):
    """(mode, autocast factory, GradScaler or None)."""
    mode = cfg.train.amp
    if mode == "auto":
        mode = "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "none"
    if mode == "fp16" and device.type != "cuda":
        raise InputError("train.amp=fp16 needs a CUDA GPU; use train.amp=bf16 or none on the CPU")
    if mode == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise InputError("train.amp=bf16: this GPU does not support bfloat16; use train.amp=fp16 or none")
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(mode)

    def autocast():
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=dtype)

    scaler = torch.amp.GradScaler("cuda") if mode == "fp16" else None
    return mode, autocast, scaler


def _dataset_kwargs(cfg: ExperimentConfig, val: bool) -> dict[str, Any]:
    d = cfg.data
    kw: dict[str, Any] = {}
    if d.size is not None:
        kw["size"] = d.size
    for key in ("resize", "defocus", "preset"):
        value = getattr(d, key)
        if value is not None:
            kw[key] = value
    kw["flip"] = d.flip
    kw["blur_at"] = d.blur_at
    kw["seed"] = cfg.seed
    kw.update(d.options)
    if val:
        kw.update(d.val_options)
    return kw


def build_datasets(cfg: ExperimentConfig):
    """(train dataset, validation dataset or None) of ``cfg.data``; :class:`InputError` on bad input."""
    from ..data import build_dataset

    d = cfg.data
    root = None
    if d.root:
        root = Path(d.root).expanduser()
        if not root.exists():
            raise InputError(f"data.root: {root} does not exist (set the dataset location with data.root=/path/...)")
        root = str(root)

    def make(split: str, val: bool):
        try:
            return build_dataset(d.name, root, split, **_dataset_kwargs(cfg, val))
        except TypeError as exc:
            if "unexpected keyword argument" in str(exc) or "got multiple values" in str(exc):
                which = "data.val_options" if val and d.val_options else "data.options"
                raise InputError(f"{which}: dataset {d.name!r} does not accept this option: {exc}") from None
            raise

    train_ds = make(d.train_split, False)
    val_ds = make(d.val_split, True) if d.val_split else None
    if val_ds is not None and d.val_limit is not None and d.val_limit < len(val_ds):
        val_ds = torch.utils.data.Subset(val_ds, range(d.val_limit))
    return train_ds, val_ds


def _check_loss_fits(cfg: ExperimentConfig, outputs: tuple[str, ...]) -> None:
    c = cfg.loss
    depth = "depth" in outputs and c.uses_depth
    aif = "aif" in outputs and c.uses_aif
    if not (depth or aif):
        raise InputError(
            f"loss: no enabled term applies to model {cfg.model.name!r} (outputs {', '.join(outputs)}); "
            "switch on loss.depth/l1/gradient or loss.deblur/charbonnier/ssim/mse"
        )


def _best_metric(cfg: ExperimentConfig, outputs: tuple[str, ...]) -> str:
    name = cfg.train.best_metric
    if name == "auto":
        return "rmse" if "depth" in outputs else "psnr"
    known = ["loss"] + (list(DEPTH_KEYS) if "depth" in outputs else []) + (list(IMAGE_KEYS) if "aif" in outputs else [])
    if name not in known:
        raise InputError(f"train.best_metric={name!r}: model {cfg.model.name!r} is validated on {', '.join(known)}")
    return name


def _new_run_dir(cfg: ExperimentConfig, run_dir: str | os.PathLike | None) -> Path:
    if run_dir is not None:
        path = Path(run_dir).expanduser()
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise InputError(
                f"{path}: run folder already exists and is not empty; continue that run with --resume {path} "
                "or choose another --out"
            )
    else:
        base = Path(cfg.train.out_dir).expanduser() / cfg.name
        path, i = base, 2
        while path.exists() and (not path.is_dir() or any(path.iterdir())):
            path = base.with_name(f"{cfg.name}-{i}")
            i += 1
    _check_writable(path, create=True)
    return path


def _check_writable(path: Path, create: bool) -> None:
    try:
        if create:
            path.mkdir(parents=True, exist_ok=True)
        probe = path / ".twohded-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise InputError(f"{path}: cannot write the run folder: {exc.strerror or exc}") from None


def init_from_checkpoint(model: nn.Module, path: str | os.PathLike) -> str:
    """Load a checkpoint's weights into ``model`` for fine-tuning; returns a one-line summary.

    Uses the EMA weights when the checkpoint has them. Keys of modules ``model`` lacks (e.g. a
    dropped head) are skipped; keys ``model`` has but the checkpoint lacks keep their init;
    a shape mismatch is an :class:`InputError` naming the file and the key.
    """
    from ..checkpoint import load_checkpoint

    state = load_checkpoint(path)
    weights = state.get("ema_state") or state["model_state"]
    own = model.state_dict()
    for key, value in weights.items():
        if key in own and tuple(own[key].shape) != tuple(value.shape):
            raise InputError(f"{state['path']}: {key} has shape {tuple(value.shape)}, model {tuple(own[key].shape)}")
    shared = {k: v for k, v in weights.items() if k in own}
    if not shared:
        raise InputError(f"{state['path']}: no weight of this checkpoint ({state['model_name']}) fits the model")
    model.load_state_dict(shared, strict=False)
    fresh = len(own) - len(shared)
    return f"initialised from {state['path']} ({state['model_name']}): {len(shared)} tensors loaded, {fresh} kept fresh"


def _strip_load_only(options: dict[str, Any]) -> dict[str, Any]:
    """Model options without ``encoder_weights`` (the trained weights are in the checkpoint)."""
    return {k: v for k, v in options.items() if k != "encoder_weights"}


def _resolve_resume(resume: str | os.PathLike) -> tuple[Path, dict[str, Any]]:
    path = Path(resume).expanduser()
    if path.is_dir():
        ckpt_path = path / "last.pt"
        if not ckpt_path.exists():
            raise InputError(f"{path}: no last.pt to resume from (is this a twohded run folder?)")
    else:
        ckpt_path = path
    state = load_checkpoint(ckpt_path)
    for key in ("config", "optimizer_state", "trainer_state"):
        if not state.get(key):
            raise InputError(f"{ckpt_path}: checkpoint has no {key}; only a training run's last.pt can be resumed")
    return ckpt_path.parent, state


def _fmt_metrics(metrics: dict[str, float], keys: tuple[str, ...] = ("loss", "rmse", "abs_rel", "delta1", "psnr", "ssim")) -> str:
    return "  ".join(f"{k} {metrics[k]:.4g}" for k in keys if k in metrics)


# ------------------------------------------------------------------------------------------
# the loop
# ------------------------------------------------------------------------------------------


def train(
    config: ExperimentConfig | str | os.PathLike | None = None,
    *,
    resume: str | os.PathLike | None = None,
    run_dir: str | os.PathLike | None = None,
    overrides: list[str] | dict[str, Any] | None = None,
    progress: bool | None = None,
    verbose: bool = True,
) -> RunResult:
    """Train (or, with ``resume=RUN_DIR``, continue) an experiment.

    Args:
        config: an :class:`ExperimentConfig` or a YAML path; with ``resume`` it defaults to
            the config saved in the checkpoint.
        resume: a run folder (its ``last.pt``) or a checkpoint file to continue exactly.
        run_dir: where to write a new run (default ``train.out_dir/<name>``, suffixed ``-2``,
            ``-3``, ... if it exists). Must be empty or absent.
        overrides: ``["train.epochs=3", ...]`` applied on top of ``config``.
        progress: show the progress bar (default ``train.progress``; only on a terminal).
        verbose: print one line per epoch (rank 0).

    Raises:
        InputError: bad config, data path, output folder (before anything is written).
        NonFiniteLossError: the loss became NaN / inf (``last.pt`` holds the last good state).
    """
    ckpt: dict[str, Any] | None = None
    if resume is not None:
        resume_dir, ckpt = _resolve_resume(resume)
        if config is None:
            cfg = config_from_dict(ckpt["config"], where=f"{resume_dir}/last.pt config")
        else:
            cfg = config if isinstance(config, ExperimentConfig) else load_config(config)
        cfg = apply_overrides(cfg, overrides, where=f"{resume_dir}/last.pt config")
    else:
        if config is None:
            raise InputError("train: give a config (or resume=RUN_DIR)")
        cfg = config if isinstance(config, ExperimentConfig) else load_config(config)
        cfg = apply_overrides(cfg, overrides)

    info = ddp.init_distributed(device_type(cfg.train.device))
    try:
        return _Trainer(cfg, info, ckpt, resume_dir if ckpt is not None else None, run_dir, progress, verbose).run()
    finally:
        ddp.shutdown_distributed(info)


class _Trainer:
    def __init__(self, cfg, info, ckpt, resume_dir, run_dir, progress, verbose) -> None:
        self.cfg: ExperimentConfig = cfg
        self.info: ddp.DistInfo = info
        self.ckpt = ckpt
        self.resume_dir = resume_dir
        self.run_dir_arg = run_dir
        self.show_progress = cfg.train.progress if progress is None else bool(progress)
        self.verbose = verbose and info.is_main

    def say(self, text: str) -> None:
        if self.verbose:
            from tqdm import tqdm

            tqdm.write(text, file=sys.stdout)
            sys.stdout.flush()

    # -- set-up --------------------------------------------------------------------------
    def setup(self) -> None:
        cfg, info = self.cfg, self.info
        t = cfg.train
        # under torchrun every process trains on the GPU of its local rank
        name = "cuda" if info.distributed and device_type(t.device) == "cuda" else t.device
        self.device = resolve_device(name, option="train.device", index=info.local_rank)
        if t.deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True, warn_only=True)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = not t.deterministic
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        self.amp_mode, self.autocast, self.scaler = _amp(cfg, self.device)

        # data (all ranks: the same errors everywhere)
        self.train_ds, self.val_ds = build_datasets(cfg)
        self.sampler = ShardedEpochSampler(len(self.train_ds), t.batch_size, info.world_size, info.rank, cfg.seed)
        self.steps_per_epoch = self.sampler.steps_per_epoch
        if self.steps_per_epoch < 1:
            raise InputError(
                f"data: the {cfg.data.train_split!r} split has {len(self.train_ds)} items, fewer than one global batch "
                f"({t.batch_size} x {info.world_size} processes); lower train.batch_size"
            )
        if self.val_ds is not None and len(self.val_ds) == 0:
            raise InputError(f"data: the validation split {cfg.data.val_split!r} is empty")

        # model (same init on every rank), loss
        from ..losses import HybridLoss
        from ..models import count_parameters, create_model

        _seed_all(cfg.seed)
        options = dict(cfg.model.options)
        if self.ckpt is not None:
            options = _strip_load_only(options)
        self.model: nn.Module = create_model(cfg.model.name, **options)
        if self.ckpt is None and cfg.model.init_checkpoint:
            self.init_note = init_from_checkpoint(self.model, cfg.model.init_checkpoint)
        self.outputs = tuple(getattr(self.model, "outputs", ("depth", "aif")))
        _check_loss_fits(cfg, self.outputs)
        self.best_name = _best_metric(cfg, self.outputs) if self.val_ds is not None else None
        self.best_mode = metric_direction(self.best_name) if self.best_name else None
        self.loss_fn = HybridLoss(cfg.loss)
        self.n_params = count_parameters(self.model)
        if self.ckpt is not None:
            if self.ckpt["model_name"] != cfg.model.name:
                raise InputError(f"{self.resume_dir}: checkpoint holds model {self.ckpt['model_name']!r}, config asks for {cfg.model.name!r}")
            self.model.load_state_dict(self.ckpt["model_state"])
        if t.sync_bn and info.distributed and self.device.type == "cuda":
            self.model = nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
        self.model.to(self.device)
        self.channels_last = t.channels_last and self.device.type == "cuda"
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.model.train()
        self.ema = ModelEMA(self.model, t.ema_decay) if t.ema_decay else None

        forward_model: nn.Module = self.model
        if info.distributed:
            loss_uses = {"depth": cfg.loss.uses_depth, "aif": cfg.loss.uses_aif}
            forward_model = wrap_ddp(self.model, self.device, find_unused=any(not loss_uses[o] for o in self.outputs))
        if t.compile:
            forward_model = torch.compile(forward_model)
        self.forward_model = forward_model
        self.graphed = None
        self.notes: list[str] = []
        if t.cuda_graphs:
            from .graphs import GraphedStep, graph_problem

            problem = graph_problem(self.device, info.distributed, self.amp_mode)
            if problem:
                self.notes.append(f"train.cuda_graphs off: {problem}")
            else:
                dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.amp_mode)
                self.graphed = GraphedStep(self.model, forward_model, self.loss_fn, dtype, self.channels_last)

        self.optimizer = build_optimizer(self.model.parameters(), cfg.optim)
        total = t.epochs * self.steps_per_epoch
        self.stop_step = min(total, t.max_steps) if t.max_steps else total
        self.scheduler = StepScheduler(self.optimizer, LRSchedule(cfg.schedule, self.steps_per_epoch, self.stop_step), cfg.optim.lr)
        self.step_fn = TrainStep(
            self.model, forward_model, self.loss_fn, self.optimizer, autocast=self.autocast, scaler=self.scaler,
            channels_last=self.channels_last, grad_clip=cfg.optim.grad_clip, graphed=self.graphed, ema=self.ema,
            scheduler=self.scheduler, info=info, saved_note=self._saved_note, notes=self.notes,
        )

        # progress state
        self.step = 0
        self.epoch = 0  # epochs completed
        self.step_in_epoch = 0
        self.best_value: float | None = None
        self.last_metrics: dict[str, float] = {}
        self.history: list[dict[str, Any]] = []
        self.time_s = 0.0
        self.last_val_step = -1
        self.epoch_sum: dict[str, float] = {}
        if self.ckpt is not None:
            self._restore(self.ckpt)

        # loaders
        pin = self.device.type == "cuda"
        self.loader_gen = torch.Generator()
        self.train_loader = torch.utils.data.DataLoader(
            self.train_ds, batch_size=t.batch_size, sampler=self.sampler, num_workers=t.num_workers,
            pin_memory=pin, drop_last=True, generator=self.loader_gen,
        )
        self.device_data = None
        if cfg.data.rotate_deg and not t.preload:
            raise InputError("data.rotate_deg: random rotations are drawn on the device; set train.preload=true")
        if t.preload:
            from .preload import DeviceData

            t0 = time.perf_counter()
            self.device_data = DeviceData(self.train_ds, self.sampler, self.device, seed=cfg.seed,
                                          load_batch=max(t.batch_size, 8), num_workers=t.num_workers,
                                          rotate_deg=cfg.data.rotate_deg)
            self.notes.append(f"train.preload: {self.device_data.n} training items on {self.device} "
                              f"({self.device_data.nbytes() / 2**30:.2f} GiB, {time.perf_counter() - t0:.1f} s)")
        self.val_loader = None
        if self.val_ds is not None and info.is_main:
            self.val_loader = torch.utils.data.DataLoader(
                self.val_ds, batch_size=t.batch_size, shuffle=False, num_workers=t.num_workers, pin_memory=pin,
                drop_last=False, generator=torch.Generator().manual_seed(cfg.seed),
            )

    def _restore(self, ckpt: dict[str, Any]) -> None:
        cfg, info = self.cfg, self.info
        ts = ckpt["trainer_state"]
        self.step = int(ckpt["step"])
        self.epoch = int(ckpt["epoch"])
        self.step_in_epoch = int(ts.get("step_in_epoch", 0))
        same_layout = ts.get("world_size") == info.world_size and ts.get("batch_size") == cfg.train.batch_size
        if self.step_in_epoch and not same_layout:
            raise InputError(
                f"{self.resume_dir}: this run stopped in the middle of an epoch with {ts.get('world_size')} process(es) x "
                f"batch {ts.get('batch_size')}; resume it with the same (now {info.world_size} x {cfg.train.batch_size})"
            )
        if self.step_in_epoch >= self.steps_per_epoch:  # dataset changed size: start the next epoch
            self.epoch, self.step_in_epoch = self.epoch + 1, 0
        self.optimizer.load_state_dict(ckpt["optimizer_state"])
        if ckpt.get("scheduler_state"):
            self.scheduler.load_state_dict(ckpt["scheduler_state"])
        if self.scaler is not None and ckpt.get("scaler_state"):
            self.scaler.load_state_dict(ckpt["scaler_state"])
        if self.ema is not None:
            if ckpt.get("ema_state"):
                self.ema.load_state_dict(ckpt["ema_state"], ts.get("ema_updates", 0))
            else:
                log.warning("resuming without EMA state: the EMA starts from the current weights")
        self.best_value = ts.get("best_value")
        if ts.get("best_metric") != self.best_name:
            self.best_value = None
        self.last_metrics = dict(ckpt.get("metrics") or {})
        self.history = list(ts.get("history") or [])
        self.time_s = float(ts.get("time_s", 0.0))
        self.last_val_step = int(ts.get("last_val_step", -1))
        self.epoch_sum = dict(ts.get("epoch_sum") or {})
        rng = ckpt.get("rng_state") or {}
        ranks = rng.get("ranks") or []
        self.rng_to_restore = ranks[info.rank] if len(ranks) == info.world_size else None
        if self.rng_to_restore is None:
            log.warning("resuming with a different number of processes: random states are re-seeded (not bit-exact)")

    def _open_run_dir(self) -> None:
        """Rank 0 creates (or checks) the run folder; every rank learns its path or the error."""
        cfg = self.cfg
        outcome: tuple[str | None, str | None] = (None, None)
        if self.info.is_main:
            try:
                if self.resume_dir is not None:
                    path = Path(self.resume_dir)
                    _check_writable(path, create=False)
                else:
                    path = _new_run_dir(cfg, self.run_dir_arg)
                    try:
                        with atomic_write(path / "config.yaml") as tmp:
                            tmp.write_text(dump_config(cfg), encoding="utf-8")
                    except BaseException:
                        with contextlib.suppress(OSError):
                            path.rmdir()
                        raise
                outcome = (str(path), None)
            except InputError as exc:
                outcome = (None, str(exc))
        outcome = ddp.broadcast_object(outcome, self.info)
        if outcome[1] is not None:
            raise InputError(outcome[1])
        self.run_dir = Path(outcome[0])
        if self.resume_dir is not None and self.info.is_main:
            # keep the resolved config current (overrides on resume, e.g. more epochs)
            with atomic_write(self.run_dir / "config.yaml") as tmp:
                tmp.write_text(dump_config(cfg), encoding="utf-8")

    # -- checkpoints -----------------------------------------------------------------------
    def _model_fields(self) -> dict[str, Any]:
        return {
            "model_name": self.cfg.model.name,
            "model_options": _strip_load_only(dict(self.cfg.model.options)),
            "model_state": self.model.state_dict(),
            "ema_state": self.ema.state_dict() if self.ema is not None else None,
            "config": self.cfg.to_dict(),
            "step": self.step,
            "epoch": self.epoch,
            "metrics": dict(self.last_metrics),
        }

    def save_last(self) -> None:
        rng = ddp.all_gather_object(_rng_state(self.device), self.info)  # collective: every rank
        if not self.info.is_main:
            return
        state = self._model_fields()
        state.update(
            optimizer_state=self.optimizer.state_dict(),
            scheduler_state=self.scheduler.state_dict(),
            scaler_state=self.scaler.state_dict() if self.scaler is not None else None,
            rng_state={"world_size": self.info.world_size, "ranks": rng},
            trainer_state={
                "step_in_epoch": self.step_in_epoch,
                "steps_per_epoch": self.steps_per_epoch,
                "world_size": self.info.world_size,
                "batch_size": self.cfg.train.batch_size,
                "global_batch": self.cfg.train.batch_size * self.info.world_size,
                "best_metric": self.best_name,
                "best_value": self.best_value,
                "ema_updates": self.ema.updates if self.ema is not None else 0,
                "time_s": self.time_s,
                "history": self.history,
                "last_val_step": self.last_val_step,
                "epoch_sum": dict(self.epoch_sum) if self.step_in_epoch else {},
            },
        )
        save_checkpoint(self.run_dir / "last.pt", state)

    def save_best(self) -> None:
        if self.info.is_main:
            save_checkpoint(self.run_dir / "best.pt", {**self._model_fields(), "best_metric": self.best_name})

    # -- validation ------------------------------------------------------------------------
    def run_validation(self) -> dict[str, float]:
        metrics: dict[str, float] | None = None
        if self.info.is_main and self.val_loader is not None:
            model = self.ema.module if self.ema is not None else self.model
            metrics = validate(model, self.val_loader, self.loss_fn, self.device, self.autocast, self.channels_last)
        metrics = ddp.broadcast_object(metrics, self.info)
        self.last_metrics = metrics or {}
        self.last_val_step = self.step
        return self.last_metrics

    def improved(self, metrics: dict[str, float]) -> bool:
        value = metrics.get(self.best_name)
        if value is None or not math.isfinite(value):
            return False
        if self.best_value is None:
            return True
        return value < self.best_value if self.best_mode == "min" else value > self.best_value

    # -- one step --------------------------------------------------------------------------
    def _saved_note(self) -> str:
        last = self.run_dir / "last.pt"
        return f"the last good checkpoint is {last}" if last.exists() else "no checkpoint was written yet"

    def train_step(self, batch: dict[str, Any]) -> dict[str, float]:
        from ..data import render_batch

        return self.step_fn(render_batch(batch, device=self.device), step=self.step + 1, epoch=self.epoch + 1)

    # -- main ------------------------------------------------------------------------------
    def run(self) -> RunResult:
        from tqdm import tqdm

        self.setup()
        self._open_run_dir()
        cfg, info, t = self.cfg, self.info, self.cfg.train
        resumed = self.ckpt is not None
        csv_log = tb = None
        if info.is_main:
            csv_log = CSVLog(self.run_dir / "log.csv", resume_step=self.step if resumed else None)
            tb = TensorBoardLog(self.run_dir / "tb", purge_step=self.step + 1 if resumed else None)
            if not resumed:
                tb.text("config", "```\n" + dump_config(cfg) + "\n```")
        gb = t.batch_size * info.world_size
        self.say(
            f"{'resuming' if resumed else 'training'} {cfg.name}: {self.run_dir}\n"
            f"  model {cfg.model.name} ({self.n_params:,} parameters), data {cfg.data.name} "
            f"({len(self.train_ds)} train, {len(self.val_ds) if self.val_ds is not None else 0} val), "
            f"device {self.device}, amp {self.amp_mode}\n"
            f"  {info.world_size} process(es) x batch {t.batch_size} = global batch {gb}, {self.steps_per_epoch} steps/epoch, "
            f"{t.epochs} epochs" + (f", stop at step {self.stop_step}" if t.max_steps else "")
            + (f"; from step {self.step} (epoch {self.epoch + 1}, batch {self.step_in_epoch})" if resumed else "")
            + (f"\n  {self.init_note}" if getattr(self, "init_note", None) and not resumed else "")
            + "".join(f"\n  {note}" for note in self.notes)
        )
        if resumed and self.rng_to_restore is not None:
            _set_rng_state(self.rng_to_restore, self.device)
        else:
            # dropout etc.: a stream per rank, after the (shared) weight init
            _seed_all((cfg.seed * 1_000_003 + 7919 * self.step + 1 + info.rank) % 2**63)
        kill_at = int(os.environ.get(KILL_ENV, "0") or 0)

        try:
            while self.step < self.stop_step and self.epoch < t.epochs:
                self._run_epoch(tqdm, csv_log, tb, kill_at)
        finally:
            if tb is not None:
                tb.close()
        last = self.run_dir / "last.pt"
        best = self.run_dir / "best.pt"
        if self.best_value is not None:
            self.say(f"done: step {self.step}, best {self.best_name} {self.best_value:.4g}; checkpoints in {self.run_dir}")
        else:
            self.say(f"done: step {self.step}; checkpoint {last}")
        return RunResult(
            run_dir=self.run_dir,
            last_checkpoint=last,
            best_checkpoint=best if best.exists() else None,
            step=self.step,
            epoch=self.epoch,
            metrics=dict(self.last_metrics),
            best_metric=self.best_name,
            best_value=self.best_value,
            history=list(self.history),
        )

    def _run_epoch(self, tqdm, csv_log, tb, kill_at: int) -> None:
        cfg, info, t = self.cfg, self.info, self.cfg.train
        epoch = self.epoch
        start = self.step_in_epoch
        self.train_ds.set_epoch(epoch)
        self.sampler.set_epoch(epoch, start)
        self.loader_gen.manual_seed((cfg.seed * 1_000_003 + epoch) % 2**63)
        bar = tqdm(
            total=self.steps_per_epoch, initial=start, desc=f"epoch {epoch + 1}/{t.epochs}", leave=False,
            disable=True if not (info.is_main and self.show_progress) else None, dynamic_ncols=True,
        )
        window: dict[str, float] = {}
        window_n = 0
        window_time = 0.0  # data wait + step time of the window (no validation / checkpoint time)
        # running sums of this epoch (restored on a mid-epoch resume)
        epoch_sum: dict[str, float] = self.epoch_sum if start else {}
        self.epoch_sum = epoch_sum
        epoch_n = start
        try:
            it = self.device_data.batches(epoch, start) if self.device_data is not None else iter(self.train_loader)
            for k in range(start, self.steps_per_epoch):
                t0 = time.perf_counter()
                batch = next(it)
                parts = self.train_step(batch)
                self.step += 1
                self.step_in_epoch = k + 1
                took = time.perf_counter() - t0
                self.time_s += took
                window_time += took
                for key, v in parts.items():
                    window[key] = window.get(key, 0.0) + v
                    epoch_sum[key] = epoch_sum.get(key, 0.0) + v
                window_n += 1
                epoch_n += 1
                bar.update(1)
                bar.set_postfix({key: f"{v / epoch_n:.4g}" for key, v in epoch_sum.items() if key in ("loss", "depth", "deblur")}, refresh=False)

                epoch_end = self.step_in_epoch == self.steps_per_epoch
                final = self.step >= self.stop_step
                lr = self.scheduler.get_last_lr()[0]
                if info.is_main and (self.step % t.log_every == 0 or epoch_end or final):
                    row = {key: v / window_n for key, v in window.items()}
                    row["images_per_s"] = window_n * t.batch_size * info.world_size / max(window_time, 1e-9)
                    csv_log.write({"split": "train", "step": self.step, "epoch": self.step / self.steps_per_epoch,
                                   "lr": lr, "time_s": self.time_s, **row})
                    tb.scalars("train", {**row, "lr": lr}, self.step)
                    window, window_n, window_time = {}, 0, 0.0

                if epoch_end:
                    self.epoch = epoch + 1
                    self.step_in_epoch = 0
                    self._end_of_epoch(epoch_sum, epoch_n, final, csv_log, tb, lr)
                elif final and self.val_ds is not None:
                    self._validate_and_log(csv_log, tb, lr)  # a max_steps run ends mid-epoch

                due_steps = t.checkpoint_every_steps and self.step % t.checkpoint_every_steps == 0
                due_epoch = epoch_end and (self.epoch % t.checkpoint_every == 0 or self.epoch >= t.epochs)
                if due_steps or due_epoch or final:
                    self.save_last()
                if kill_at and self.step == kill_at:
                    os._exit(137)  # testing hook: die like a killed process, no clean-up
                if final:
                    break
        finally:
            bar.close()

    def _validate_and_log(self, csv_log, tb, lr) -> tuple[dict[str, float], bool]:
        metrics = self.run_validation()
        if self.info.is_main and metrics:
            csv_log.write({"split": "val", "step": self.step, "epoch": self.step / self.steps_per_epoch, "lr": lr,
                           "time_s": self.time_s, **metrics})
            tb.scalars("val", metrics, self.step)
            tb.flush()
        is_best = bool(metrics) and self.improved(metrics)
        if is_best:
            self.best_value = metrics[self.best_name]
            self.save_best()
        return metrics, is_best

    def _end_of_epoch(self, epoch_sum, epoch_n, final, csv_log, tb, lr) -> None:
        t = self.cfg.train
        train_loss = epoch_sum.get("loss", float("nan")) / max(1, epoch_n)
        entry: dict[str, Any] = {"epoch": self.epoch, "step": self.step, "loss": train_loss}
        text = f"epoch {self.epoch}/{t.epochs}  step {self.step}  loss {train_loss:.4g}  lr {lr:.3g}"
        if self.val_ds is not None and (self.epoch % t.val_every == 0 or self.epoch >= t.epochs or final):
            val, best = self._validate_and_log(csv_log, tb, lr)
            if val:
                entry["val"] = dict(val)
                text += f"  | val {_fmt_metrics(val)}" + ("  (best)" if best else "")
        self.history.append(entry)
        self.say(text)

"""What a training run trains with: :func:`build_components` -> :class:`Components`.

One function builds, from an :class:`~twohded.config.ExperimentConfig`, the device settings
(autocast, GradScaler, channels-last), the datasets, sampler and loaders (or the preloaded
split), the model (same init on every rank; DDP, compile), EMA, loss, optimizer, schedule
and the training step (:class:`~twohded.training.step.TrainStep`, CUDA-graphed if asked).
Bad settings raise :class:`InputError` here, before the run folder is written.
"""

from __future__ import annotations

import contextlib
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import numpy as np
import torch
from torch import nn

from ..checkpoint import load_checkpoint
from ..config import ExperimentConfig
from ..devices import device_type, resolve_device
from ..errors import InputError
from ..metrics import DEPTH_KEYS, IMAGE_KEYS
from . import ddp
from .ema import ModelEMA
from .optim import LRSchedule, StepScheduler, build_optimizer
from .sampler import ShardedEpochSampler
from .step import TrainStep, wrap_ddp
from .validation import metric_direction

__all__ = ["Components", "TrainingData", "build_components", "build_datasets", "init_from_checkpoint", "seed_all"]


@dataclass
class TrainingData:
    """The datasets and how batches reach the device.

    Attributes:
        train, val: the datasets (``val`` None without a validation split).
        sampler: the seeded, sharded epoch order.
        steps_per_epoch: optimizer steps per epoch (per process).
        loader_gen: the training loader's generator (seeded per epoch by the loop).
        train_loader: the training DataLoader (unused with ``device_data``).
        device_data: the preloaded split (``train.preload``), or None.
        val_loader: the validation DataLoader (rank 0 only), or None.
    """

    train: Any
    val: Any
    sampler: ShardedEpochSampler
    steps_per_epoch: int
    loader_gen: torch.Generator
    train_loader: Any
    device_data: Any = None
    val_loader: Any = None

    def batches(self, epoch: int, start: int) -> Iterator[dict]:
        """The batches of ``epoch`` from step ``start`` on (CPU tensors from the loader, or on the device)."""
        if self.device_data is not None:
            return self.device_data.batches(epoch, start)
        return iter(self.train_loader)


@dataclass
class Components:
    """Everything :func:`build_components` made for one run.

    Attributes:
        device: where this process trains.
        amp_mode: ``"bf16"``, ``"fp16"`` or ``"none"``; ``autocast``: its context factory.
        channels_last: the model and its inputs are channels-last.
        data: :class:`TrainingData`.
        model: the module trained (not wrapped); ``ema``: its average, or None.
        outputs: the model's outputs, e.g. ``("depth", "aif")``; ``n_params``: its size.
        loss_fn: the :class:`~twohded.losses.HybridLoss`.
        best_metric, best_mode: the validation metric that picks ``best.pt`` and ``"min"`` / ``"max"``
            (None without validation).
        optimizer, scheduler, scaler: the optimisation (``scaler``: fp16 GradScaler or None).
        stop_step: the run ends at this step (``train.epochs`` or ``train.max_steps``).
        train_step: the training step.
        notes: what was switched off or set up, for the run's first lines.
        init_note: where the weights came from (``model.init_checkpoint``), or None.
    """

    device: torch.device
    amp_mode: str
    autocast: Callable[[], contextlib.AbstractContextManager]
    channels_last: bool
    data: TrainingData
    model: nn.Module
    ema: Optional[ModelEMA]
    outputs: tuple[str, ...]
    n_params: int
    loss_fn: Any
    best_metric: Optional[str]
    best_mode: Optional[str]
    optimizer: torch.optim.Optimizer
    scheduler: StepScheduler
    scaler: Any
    stop_step: int
    train_step: TrainStep
    notes: list[str] = field(default_factory=list)
    init_note: Optional[str] = None


def build_components(cfg: ExperimentConfig, info: ddp.DistInfo, model_state: dict[str, Any] | None = None,
                     saved_note: Callable[[], str] = lambda: "no checkpoint was written yet") -> Components:
    """Build everything a run of ``cfg`` trains with on this process.

    Args:
        model_state: resuming: the checkpoint's weights (then ``encoder_weights`` and
            ``model.init_checkpoint`` are not loaded). The optimizer, schedule and EMA states
            are restored by the caller.
        saved_note: what the step says about the last checkpoint when the loss is not finite.
    """
    t = cfg.train
    device = _configure_device(cfg, info)
    amp_mode, autocast, scaler = _amp(cfg, device)
    channels_last = t.channels_last and device.type == "cuda"
    train_ds, val_ds, sampler = _datasets_and_sampler(cfg, info)
    model, init_note = _build_model(cfg, model_state, device, info, channels_last)
    outputs = tuple(model.outputs)
    _check_loss_fits(cfg, outputs)
    best = _best_metric(cfg, outputs) if val_ds is not None else None
    from ..losses import HybridLoss
    from ..models import count_parameters

    loss_fn = HybridLoss(cfg.loss)
    ema = ModelEMA(model, t.ema_decay) if t.ema_decay else None
    notes: list[str] = []
    forward = _forward_model(cfg, info, model, device, outputs)
    graphed = _graphed_step(cfg, info, model, forward, loss_fn, device, amp_mode, channels_last, notes)
    optimizer = build_optimizer(model.parameters(), cfg.optim)
    total = t.epochs * sampler.steps_per_epoch
    stop_step = min(total, t.max_steps) if t.max_steps else total
    scheduler = StepScheduler(optimizer, LRSchedule(cfg.schedule, sampler.steps_per_epoch, stop_step), cfg.optim.lr)
    step = TrainStep(model, forward, loss_fn, optimizer, autocast=autocast, scaler=scaler, channels_last=channels_last,
                     grad_clip=cfg.optim.grad_clip, graphed=graphed, ema=ema, scheduler=scheduler, info=info,
                     saved_note=saved_note, notes=notes)
    data = _training_data(cfg, info, device, train_ds, val_ds, sampler, notes)
    return Components(
        device=device, amp_mode=amp_mode, autocast=autocast, channels_last=channels_last, data=data, model=model,
        ema=ema, outputs=outputs, n_params=count_parameters(model), loss_fn=loss_fn, best_metric=best,
        best_mode=metric_direction(best) if best else None, optimizer=optimizer, scheduler=scheduler, scaler=scaler,
        stop_step=stop_step, train_step=step, notes=notes, init_note=init_note,
    )


def _configure_device(cfg: ExperimentConfig, info: ddp.DistInfo) -> torch.device:
    """``train.device`` resolved (under torchrun: the GPU of the local rank); determinism and TF32 flags set."""
    t = cfg.train
    # under torchrun every process trains on the GPU of its local rank
    name = "cuda" if info.distributed and device_type(t.device) == "cuda" else t.device
    device = resolve_device(name, option="train.device", index=info.local_rank)
    if t.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = not t.deterministic
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return device


def _datasets_and_sampler(cfg: ExperimentConfig, info: ddp.DistInfo):
    """(train dataset, validation dataset or None, sampler), built on all ranks (the same errors everywhere)."""
    t = cfg.train
    train_ds, val_ds = build_datasets(cfg)
    sampler = ShardedEpochSampler(len(train_ds), t.batch_size, info.world_size, info.rank, cfg.seed)
    if sampler.steps_per_epoch < 1:
        raise InputError(
            f"data: the {cfg.data.train_split!r} split has {len(train_ds)} items, fewer than one global batch "
            f"({t.batch_size} x {info.world_size} processes); lower train.batch_size"
        )
    if val_ds is not None and len(val_ds) == 0:
        raise InputError(f"data: the validation split {cfg.data.val_split!r} is empty")
    return train_ds, val_ds, sampler


def seed_all(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _build_model(cfg: ExperimentConfig, model_state: dict[str, Any] | None, device: torch.device, info: ddp.DistInfo,
                 channels_last: bool) -> tuple[nn.Module, str | None]:
    """The model (seeded: the same init on every rank; ``model_state`` loaded if given), on
    ``device`` in train mode; and the init note."""
    from ..models import create_model

    seed_all(cfg.seed)
    options = dict(cfg.model.options)
    if cfg.model.encoder_weights is not None:
        options["encoder_weights"] = cfg.model.encoder_weights
    if model_state is not None:
        options = strip_load_only(options)
    model: nn.Module = create_model(cfg.model.name, **options)
    init_note = None
    if model_state is None and cfg.model.init_checkpoint:
        init_note = init_from_checkpoint(model, cfg.model.init_checkpoint)
    if model_state is not None:
        model.load_state_dict(model_state)
    if cfg.train.sync_bn and info.distributed and device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    model.train()
    return model, init_note


def _forward_model(cfg: ExperimentConfig, info: ddp.DistInfo, model: nn.Module, device: torch.device,
                   outputs: tuple[str, ...]) -> nn.Module:
    """What the images go through: the model, in DDP under torchrun, compiled with ``train.compile``."""
    forward: nn.Module = model
    if info.distributed:
        loss_uses = {"depth": cfg.loss.uses_depth, "aif": cfg.loss.uses_aif}
        forward = wrap_ddp(model, device, find_unused=any(not loss_uses[o] for o in outputs))
    if cfg.train.compile:
        forward = torch.compile(forward)
    return forward


def _graphed_step(cfg: ExperimentConfig, info: ddp.DistInfo, model: nn.Module, forward: nn.Module, loss_fn,
                  device: torch.device, amp_mode: str, channels_last: bool, notes: list[str]):
    """The CUDA-graph step of ``train.cuda_graphs`` (None: off, or not possible here, with a note why)."""
    if not cfg.train.cuda_graphs:
        return None
    from .graphs import GraphedStep, graph_problem

    problem = graph_problem(device, info.distributed, amp_mode)
    if problem:
        notes.append(f"train.cuda_graphs off: {problem}")
        return None
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp_mode)
    return GraphedStep(model, forward, loss_fn, dtype, channels_last)


def _training_data(cfg: ExperimentConfig, info: ddp.DistInfo, device: torch.device, train_ds, val_ds,
                   sampler: ShardedEpochSampler, notes: list[str]) -> TrainingData:
    """The loaders (validation on rank 0 only) and, with ``train.preload``, the split on the device."""
    t = cfg.train
    pin = device.type == "cuda"
    loader_gen = torch.Generator()
    train_loader = torch.utils.data.DataLoader(
        train_ds, batch_size=t.batch_size, sampler=sampler, num_workers=t.num_workers,
        pin_memory=pin, drop_last=True, generator=loader_gen,
    )
    device_data = None
    if cfg.data.rotate_deg and not t.preload:
        raise InputError("data.rotate_deg: random rotations are drawn on the device; set train.preload=true")
    if t.preload:
        from .preload import DeviceData

        t0 = time.perf_counter()
        device_data = DeviceData(train_ds, sampler, device, seed=cfg.seed,
                                 load_batch=max(t.batch_size, 8), num_workers=t.num_workers,
                                 rotate_deg=cfg.data.rotate_deg)
        notes.append(f"train.preload: {device_data.n} training items on {device} "
                     f"({device_data.nbytes() / 2**30:.2f} GiB, {time.perf_counter() - t0:.1f} s)")
    val_loader = None
    if val_ds is not None and info.is_main:
        val_loader = torch.utils.data.DataLoader(
            val_ds, batch_size=t.batch_size, shuffle=False, num_workers=t.num_workers, pin_memory=pin,
            drop_last=False, generator=torch.Generator().manual_seed(cfg.seed),
        )
    return TrainingData(train_ds, val_ds, sampler, sampler.steps_per_epoch, loader_gen, train_loader,
                        device_data, val_loader)


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
        which = "data.val_options" if val and d.val_options else "data.options"
        return build_dataset(d.name, root, split, where=which, **_dataset_kwargs(cfg, val))

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


def init_from_checkpoint(model: nn.Module, path: str | os.PathLike) -> str:
    """Load a checkpoint's weights into ``model`` for fine-tuning; returns a one-line summary.

    Uses the EMA weights when the checkpoint has them. Keys of modules ``model`` lacks (e.g. a
    dropped head) are skipped; keys ``model`` has but the checkpoint lacks keep their init;
    a shape mismatch is an :class:`InputError` naming the file and the key.
    """
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


def strip_load_only(options: dict[str, Any]) -> dict[str, Any]:
    """Model options without ``encoder_weights`` (the trained weights are in the checkpoint)."""
    return {k: v for k, v in options.items() if k != "encoder_weights"}

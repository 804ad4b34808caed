"""Optimizers and learning-rate schedules built from :mod:`twohded.config`.

The schedule is a pure function of the optimizer step (:class:`LRSchedule`), applied before
every step by :class:`StepScheduler`; its state is just the step count, so a resumed run, or
one whose ``train.epochs`` was extended on resume, follows the schedule of its config.
"""

from __future__ import annotations

import math
from typing import Iterable

import torch

from ..config import OptimConfig, ScheduleConfig

__all__ = ["build_optimizer", "LRSchedule", "StepScheduler"]


def build_optimizer(params: Iterable[torch.nn.Parameter], cfg: OptimConfig) -> torch.optim.Optimizer:
    """``sgd`` (momentum, nesterov), ``adam`` or ``adamw`` with the config's lr / weight decay."""
    params = [p for p in params if p.requires_grad]
    if cfg.name == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0,
                               weight_decay=cfg.weight_decay)
    if cfg.name == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, weight_decay=cfg.weight_decay)
    if cfg.name == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, weight_decay=cfg.weight_decay)
    raise ValueError(f"unknown optimizer {cfg.name!r}")  # the config checks this


class LRSchedule:
    """Learning-rate factor (times ``optim.lr``) of optimizer step ``step`` (0-based).

    ``epoch = step / steps_per_epoch`` (fractional). ``step``: ``gamma ** (number of
    milestones <= epoch)`` (the paper: lr / 10 from epoch 300 on); ``cosine``: from 1 after
    the warm-up to ``min_lr_ratio`` at ``total_steps``; ``constant``: 1. A linear warm-up
    ``(step + 1) / warmup_steps`` multiplies the first ``warmup_epochs`` epochs.
    """

    def __init__(self, cfg: ScheduleConfig, steps_per_epoch: int, total_steps: int) -> None:
        self.cfg = cfg
        self.steps_per_epoch = max(1, int(steps_per_epoch))
        self.total_steps = max(1, int(total_steps))
        self.warmup_steps = int(round(cfg.warmup_epochs * self.steps_per_epoch))

    def __call__(self, step: int) -> float:
        c = self.cfg
        epoch = step / self.steps_per_epoch
        if c.name == "step":
            factor = c.gamma ** sum(1 for m in c.milestones if epoch >= m)
        elif c.name == "cosine":
            span = max(1, self.total_steps - self.warmup_steps)
            progress = min(1.0, max(0.0, (step - self.warmup_steps) / span))
            factor = c.min_lr_ratio + (1.0 - c.min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
        else:
            factor = 1.0
        if step < self.warmup_steps:
            factor *= (step + 1) / self.warmup_steps
        return factor


class StepScheduler:
    """Sets every param group's lr to ``base_lr * schedule(step)``; ``step()`` after each optimizer step."""

    def __init__(self, optimizer: torch.optim.Optimizer, schedule: LRSchedule, base_lr: float) -> None:
        self.optimizer = optimizer
        self.schedule = schedule
        self.base_lr = float(base_lr)
        self.last_step = 0
        self._apply()

    def _apply(self) -> None:
        lr = self.base_lr * self.schedule(self.last_step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def step(self) -> None:
        self.last_step += 1
        self._apply()

    def get_last_lr(self) -> list[float]:
        return [g["lr"] for g in self.optimizer.param_groups]

    def state_dict(self) -> dict:
        return {"last_step": self.last_step}

    def load_state_dict(self, state: dict) -> None:
        self.last_step = int(state["last_step"])
        self._apply()

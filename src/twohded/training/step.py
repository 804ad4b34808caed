"""One optimizer step of training: :class:`TrainStep` (the trainer's, and the speed benchmark's).

Forward under autocast (channels-last input if asked), the loss, backward (through the fp16
GradScaler if one is given), or all three replayed from a CUDA graph
(:class:`~twohded.training.graphs.GraphedStep`); then the loss parts averaged over the
processes and checked: a non-finite loss (or gradient norm) raises
:class:`NonFiniteLossError` *before* the update is applied. Then gradient clipping, the
optimizer step, EMA and the learning-rate schedule.
"""

from __future__ import annotations

import contextlib
import logging
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import torch
from torch import nn

from ..errors import InputError, TwohdedError
from . import ddp

__all__ = ["NonFiniteLossError", "TrainStep", "wrap_ddp"]

log = logging.getLogger("twohded.training")


class NonFiniteLossError(TwohdedError):
    """The loss became NaN or infinite; the run stopped before applying that update."""


def wrap_ddp(model: nn.Module, device: torch.device, find_unused: bool, tuned: bool = True) -> nn.Module:
    """``model`` in :class:`~torch.nn.parallel.DistributedDataParallel` as the trainer runs it.

    ``tuned`` (the trainer's): static graph (unless some output is unused by the loss), no
    per-step BatchNorm buffer broadcast (only rank 0's statistics are saved and validated),
    100 MB buckets: 1.93x one process on two H200s, against 1.70-1.80x with DDP's defaults
    (docs/speed.md). ``tuned=False``: DDP's defaults (the benchmark's comparison). Both use
    the gradients as bucket views.
    """
    from torch.nn.parallel import DistributedDataParallel as DDP

    kw: dict[str, Any] = {}
    if tuned:
        kw = dict(static_graph=not find_unused, broadcast_buffers=False, bucket_cap_mb=100)
    return DDP(model, device_ids=[device.index] if device.type == "cuda" else None,
               find_unused_parameters=find_unused, gradient_as_bucket_view=True, **kw)


@dataclass
class TrainStep:
    """``step(batch, step=, epoch=) -> {"loss": ..., loss parts...}`` (floats, averaged over ranks).

    Attributes:
        model: the module being trained (its parameters are clipped and updated).
        forward: what the image goes through (the model, its DDP wrapper or compiled form).
        loss_fn: ``loss_fn(output, depth=, aif=, mask=) -> LossOutput`` (``.total``, ``.parts``).
        optimizer: the optimizer.
        autocast: a factory of the autocast context (``contextlib.nullcontext`` for fp32).
        scaler: the fp16 GradScaler, or None.
        channels_last: feed the image channels-last.
        grad_clip: clip the gradient norm to this (None: no clipping).
        graphed: a CUDA-graph step doing forward, loss and backward (None: eager). If its
            first capture fails, the step trains eagerly from then on, with a note.
        ema: weight averaging updated after each step, or None.
        scheduler: the learning-rate schedule stepped after each step, or None.
        info: the processes (loss parts are averaged over them).
        saved_note: what to say about the last checkpoint when a step fails.
        notes: where notes go (e.g. a failed capture).
    """

    model: nn.Module
    forward: Callable
    loss_fn: Callable
    optimizer: torch.optim.Optimizer
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext
    scaler: Optional[Any] = None
    channels_last: bool = False
    grad_clip: Optional[float] = None
    graphed: Optional[Any] = None
    ema: Optional[Any] = None
    scheduler: Optional[Any] = None
    info: ddp.DistInfo = field(default_factory=ddp.DistInfo)
    saved_note: Callable[[], str] = lambda: "no checkpoint was written yet"
    notes: list[str] = field(default_factory=list)

    def _graphed(self, batch: dict[str, Any]) -> dict[str, torch.Tensor] | None:
        """Forward + loss + backward replayed (None: no graph, or its capture just failed)."""
        try:
            return self.graphed(batch)
        except (InputError, NonFiniteLossError):
            raise
        except Exception as exc:  # a capture this model / torch cannot do: train eagerly
            if self.graphed.graph is not None:
                raise
            self.graphed = None
            self.optimizer.zero_grad(set_to_none=True)
            text = str(exc).splitlines()[0][:200] if str(exc) else ""
            note = f"train.cuda_graphs off: the capture failed ({type(exc).__name__}: {text})"
            self.notes.append(note)
            log.warning(note)
            return None

    def _eager(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        image = batch["image"]
        if self.channels_last:
            image = image.contiguous(memory_format=torch.channels_last)
        with self.autocast():
            out = self.forward(image)
        loss = self.loss_fn(out, depth=batch["depth"], aif=batch["aif"], mask=batch["mask"])
        if self.scaler is not None:
            self.scaler.scale(loss.total).backward()
        else:
            loss.total.backward()
        return loss.parts

    def _check(self, parts: dict[str, float], step: int, epoch: int) -> None:
        if all(math.isfinite(v) for v in parts.values()):
            return
        if self.graphed is None:
            self.optimizer.zero_grad(set_to_none=True)
        shown = ", ".join(f"{k}={v:.4g}" for k, v in parts.items())
        raise NonFiniteLossError(
            f"step {step} (epoch {epoch}): the loss is not finite ({shown}); training stopped before applying this "
            f"update, {self.saved_note()}. Try a lower optim.lr, optim.grad_clip, train.amp=none, or check the data"
        )

    def _update(self, step: int) -> None:
        if self.grad_clip is not None:
            if self.scaler is not None:
                self.scaler.unscale_(self.optimizer)
            norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
            if self.scaler is None and not bool(torch.isfinite(norm)):
                raise NonFiniteLossError(
                    f"step {step}: the gradient norm is {float(norm)}; training stopped before applying this update"
                )
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        if self.graphed is None:  # a replayed graph overwrites its gradient tensors
            self.optimizer.zero_grad(set_to_none=True)
        if self.ema is not None:
            self.ema.update(self.model)
        if self.scheduler is not None:
            self.scheduler.step()

    def __call__(self, batch: dict[str, Any], step: int = 0, epoch: int = 0) -> dict[str, float]:
        """Train on ``batch`` (tensors on the device); ``step`` / ``epoch``: 1-based, for messages."""
        loss_parts = self._graphed(batch) if self.graphed is not None else None
        if loss_parts is None:
            loss_parts = self._eager(batch)
        keys = list(loss_parts)
        values = ddp.all_reduce_mean(torch.stack([loss_parts[k].float() for k in keys]), self.info).tolist()
        parts = dict(zip(keys, values))
        self._check(parts, step, epoch)
        self._update(step)
        parts["loss"] = parts.pop("total")
        return parts

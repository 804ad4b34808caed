"""Validation during training: the loss and the evaluation metrics on the validation split.

Per image, with :func:`twohded.metrics.depth_metrics` (``rmse``, ``abs_rel``, ``sq_rel``,
``rmse_log``, ``log10``, ``delta1..3``, over the item's ``mask``) and
:func:`twohded.metrics.image_metrics` (``psnr``, ``ssim`` of the all-in-focus image), averaged
over images; ``loss`` is the training loss averaged over images. This is the quick check the
trainer runs every ``train.val_every`` epochs (on the model in eval mode, EMA weights if
enabled); ``twohded evaluate`` is the full protocol (crops, depth caps, per-dataset rules).
"""

from __future__ import annotations

import contextlib
from typing import Callable

import torch
from torch import nn

from ..data import render_batch, render_spec_of
from ..metrics import HIGHER_IS_BETTER, depth_metrics, image_metrics

__all__ = ["validate", "metric_direction"]


def metric_direction(name: str) -> str:
    """``"max"`` for metrics where larger is better (psnr, ssim, delta*), else ``"min"``."""
    return "max" if name in HIGHER_IS_BETTER else "min"


@torch.no_grad()
def validate(
    model: nn.Module,
    loader,
    loss_fn: Callable,
    device: torch.device,
    autocast: Callable[[], contextlib.AbstractContextManager] | None = None,
    channels_last: bool = False,
) -> dict[str, float]:
    """Average loss and metrics of ``model`` over ``loader`` (deferred defocus rendered on ``device``)."""
    was_training = model.training
    model.eval()
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    loss_sum, n_images = 0.0, 0

    def add(values: dict | None) -> None:
        if values is None:
            return
        for k, v in values.items():
            if k == "pixels":
                continue
            v = float(v)
            if v != v:  # NaN
                continue
            sums[k] = sums.get(k, 0.0) + v
            counts[k] = counts.get(k, 0) + 1

    spec = render_spec_of(loader.dataset)
    try:
        for batch in loader:
            batch = render_batch(batch, spec, device)
            image = batch["image"]
            if channels_last:
                image = image.contiguous(memory_format=torch.channels_last)
            with autocast() if autocast is not None else contextlib.nullcontext():
                out = model(image)
            depth = out.depth.float() if out.depth is not None else None
            aif = out.aif.float() if out.aif is not None else None
            b = image.shape[0]
            loss = loss_fn(type(out)(depth=depth, aif=aif), depth=batch["depth"], aif=batch["aif"], mask=batch["mask"])
            loss_sum += float(loss.total) * b
            n_images += b
            for i in range(b):
                if depth is not None:
                    add(depth_metrics(depth[i], batch["depth"][i], batch["mask"][i]))
                if aif is not None:
                    add(image_metrics(aif[i], batch["aif"][i]))
    finally:
        model.train(was_training)
    out_metrics = {"loss": loss_sum / max(1, n_images)}
    out_metrics.update({k: sums[k] / counts[k] for k in sums})
    return out_metrics

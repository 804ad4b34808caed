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

from ..data import render_batch

__all__ = ["validate", "metric_direction"]


def _metrics_module():
    try:
        from .. import metrics

        return metrics
    except ImportError:  # pragma: no cover - metrics.py is part of the package
        return None


def metric_direction(name: str) -> str:
    """``"max"`` for metrics where larger is better (psnr, ssim, delta*), else ``"min"``."""
    m = _metrics_module()
    higher = getattr(m, "HIGHER_IS_BETTER", None) or {"psnr", "ssim", "delta1", "delta2", "delta3"}
    return "max" if name in higher else "min"


def _fallback_depth(pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor) -> dict | None:
    valid = mask.bool() & torch.isfinite(gt) & (gt > 0)
    if not bool(valid.any()):
        return None
    d = (pred.double() - gt.double())[valid]
    return {"rmse": float(d.pow(2).mean().sqrt()), "abs_rel": float((d.abs() / gt.double()[valid]).mean())}


def _fallback_image(pred: torch.Tensor, target: torch.Tensor) -> dict:
    mse = float((pred.double().clamp(0, 1) - target.double().clamp(0, 1)).pow(2).mean())
    return {"psnr": 10.0 * torch.log10(torch.tensor(1.0 / max(mse, 1e-10))).item()}


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
    m = _metrics_module()
    depth_fn = m.depth_metrics if m is not None else _fallback_depth
    image_fn = m.image_metrics if m is not None else _fallback_image
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

    try:
        for batch in loader:
            batch = render_batch(batch, device=device)
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
                    add(depth_fn(depth[i], batch["depth"][i], batch["mask"][i]))
                if aif is not None:
                    add(image_fn(aif[i], batch["aif"][i]))
    finally:
        model.train(was_training)
    out_metrics = {"loss": loss_sum / max(1, n_images)}
    out_metrics.update({k: sums[k] / counts[k] for k in sums})
    return out_metrics

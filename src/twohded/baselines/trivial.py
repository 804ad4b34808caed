"""The trivial references: the mean training depth, and the input as its own deblurring.

Any depth method has to beat a constant (the training set's mean depth) and any deblurring
method has to beat doing nothing (the defocused input scored against the sharp target). Both
come out of one model, :class:`TrivialBaseline`, evaluated by
:func:`twohded.evaluate.evaluate_model` like any network (its ``input`` metrics are the
"input as its own deblurring" reference, equal to its ``aif`` metrics). Used by ``twohded
demo`` and ``benchmarks/compare_baselines.py``.
"""

from __future__ import annotations

import torch

from ..errors import InputError
from ..models.base import DefocusModel, ModelOutput

__all__ = ["TrivialBaseline", "mean_depth"]


class TrivialBaseline(DefocusModel):
    """Predicts a constant depth (metres) and returns the input as the all-in-focus image."""

    outputs = ("depth", "aif")

    def __init__(self, depth_m: float) -> None:
        super().__init__()
        self.register_buffer("depth_m", torch.tensor(float(depth_m)))

    def forward(self, image: torch.Tensor) -> ModelOutput:
        depth = self.depth_m.to(image.dtype).expand(image.shape[0], 1, *image.shape[-2:]).clone()
        return ModelOutput(depth=depth, aif=image)


def mean_depth(dataset, limit: int | None = None) -> float:
    """Mean of the valid depth pixels (metres) over a dataset's items (the first ``limit`` if given)."""
    total, count = 0.0, 0
    n = len(dataset) if limit is None else min(int(limit), len(dataset))
    for i in range(n):
        item = dataset[i]
        d = item["depth"][item["mask"]]
        total += float(d.double().sum())
        count += d.numel()
    if count == 0:
        raise InputError("mean depth: the training items have no valid depth")
    return total / count

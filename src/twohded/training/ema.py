"""Exponential moving average (EMA) of the model weights.

``ema = d * ema + (1 - d) * weights`` after every optimizer step, with the warm-up
``d = min(decay, (1 + n) / (10 + n))`` (n = updates so far) so that early averages are not
dominated by the random init. Buffers (BatchNorm statistics) are averaged too; integer
buffers are copied. The EMA copy's ``state_dict`` has the model's keys, so the checkpoint's
``ema_state`` loads straight into the model (``model_from_checkpoint`` prefers it).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

__all__ = ["ModelEMA"]


class ModelEMA:
    def __init__(self, model: nn.Module, decay: float) -> None:
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay = float(decay)
        self.updates = 0

    def current_decay(self) -> float:
        return min(self.decay, (1.0 + self.updates) / (10.0 + self.updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = self.current_decay()
        src = model.state_dict()
        for key, value in self.module.state_dict().items():
            new = src[key].detach()
            if value.dtype.is_floating_point:
                value.mul_(d).add_(new.to(value.dtype), alpha=1.0 - d)
            else:
                value.copy_(new)

    def state_dict(self) -> dict:
        return self.module.state_dict()

    def load_state_dict(self, state: dict, updates: int) -> None:
        self.module.load_state_dict(state)
        self.updates = int(updates)

"""Where a run stands: :class:`Progress`, saved in ``last.pt`` and restored on ``--resume``."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Optional

__all__ = ["Progress"]


@dataclass
class Progress:
    """The training loop's counters and records (everything ``--resume`` needs besides the
    weights, optimizer, schedule and random states).

    Attributes:
        step: optimizer steps done.
        epoch: epochs completed.
        metrics: the last validation's metrics.
        step_in_epoch: steps done in the current epoch (a mid-epoch checkpoint resumes there).
        best_value: best validation value of the best metric so far (None: none yet).
        time_s: seconds spent in data loading and steps (no validation / checkpoint time).
        history: one entry per completed epoch (``epoch``, ``step``, ``loss``, ``val``).
        last_val_step: step of the last validation (-1: none).
        epoch_sum: running sums of the loss parts over the current epoch.
    """

    step: int = 0
    epoch: int = 0
    metrics: dict[str, float] = field(default_factory=dict)
    step_in_epoch: int = 0
    best_value: Optional[float] = None
    time_s: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)
    last_val_step: int = -1
    epoch_sum: dict[str, float] = field(default_factory=dict)

    #: fields stored at the top level of a checkpoint (the rest go into its ``trainer_state``)
    TOP_LEVEL: ClassVar[tuple[str, ...]] = ("step", "epoch", "metrics")

    def state_dict(self) -> dict[str, Any]:
        """Every field, copied (``epoch_sum`` only in the middle of an epoch)."""
        state = {f.name: copy.deepcopy(getattr(self, f.name)) for f in fields(self)}
        if not self.step_in_epoch:
            state["epoch_sum"] = {}
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Set the fields ``state`` has (other keys ignored); values cast to each field's type."""
        for f in fields(self):
            if f.name not in state:
                continue
            value, default = state[f.name], getattr(type(self)(), f.name)
            if default is not None and value is not None:
                value = type(default)(value)  # int, float, dict or list: a copy
            elif default is not None:
                value = default
            setattr(self, f.name, value)

    def split(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """(the checkpoint's top-level fields, the ``trainer_state`` fields) of :meth:`state_dict`."""
        state = self.state_dict()
        return {k: state.pop(k) for k in self.TOP_LEVEL}, state

    @classmethod
    def from_checkpoint(cls, ckpt: dict[str, Any]) -> "Progress":
        """The progress a ``last.pt`` recorded (its top-level fields and ``trainer_state``)."""
        progress = cls()
        progress.load_state_dict({**(ckpt.get("trainer_state") or {}), **{k: ckpt.get(k) for k in cls.TOP_LEVEL}})
        return progress

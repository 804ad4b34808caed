"""Training: ``train(config) -> RunResult`` (``twohded train``); see docs/training.md.

Modules: :mod:`.trainer` (the loop), :mod:`.components` (everything a run trains with, built
by one function), :mod:`.progress` (where a run stands, saved for ``--resume``), :mod:`.step`
(one optimizer step), :mod:`.run_dir` (the run folder), :mod:`.optim` (optimizers, lr schedules), :mod:`.ema`
(weight averaging), :mod:`.sampler` (seeded, sharded, resumable epoch order), :mod:`.ddp`
(torchrun / DDP plumbing), :mod:`.logs` (log.csv, TensorBoard), :mod:`.validation`,
:mod:`.preload` (``train.preload``: the split on the device) and :mod:`.graphs`
(``train.cuda_graphs``: the captured training step).
"""

from __future__ import annotations

from .trainer import KILL_ENV, NonFiniteLossError, RunResult, train

__all__ = ["train", "RunResult", "NonFiniteLossError", "KILL_ENV"]

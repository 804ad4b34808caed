"""Which items each step sees: a seeded, sharded, resumable epoch order.

Epoch ``e`` uses the permutation ``randperm(n, generator=seed(seed, e))``; its first
``steps * batch_size * world_size`` entries are used (the rest, fewer than one global batch,
is dropped, as ``drop_last=True``) and rank ``r`` takes every ``world_size``-th of them from
position ``r``. The order depends only on (seed, epoch, world size, batch size), never on
the global RNG, so a run resumed in the middle of an epoch skips exactly the batches it
already trained on (``set_epoch(e, start_step=k)``) without loading them.
"""

from __future__ import annotations

import torch
from torch.utils.data import Sampler

__all__ = ["ShardedEpochSampler"]


class ShardedEpochSampler(Sampler[int]):
    """Indices of this rank's items for one epoch (use with ``batch_size`` and ``drop_last=True``).

    Args:
        n: dataset length.
        batch_size: per-process batch size.
        world_size, rank: the process's place (1, 0 without DDP).
        seed: base seed.
        shuffle: random order (else 0, 1, 2, ...).
    """

    def __init__(self, n: int, batch_size: int, world_size: int = 1, rank: int = 0, seed: int = 0, shuffle: bool = True) -> None:
        self.n = int(n)
        self.batch_size = int(batch_size)
        self.world_size = int(world_size)
        self.rank = int(rank)
        self.seed = int(seed)
        self.shuffle = shuffle
        self.steps_per_epoch = self.n // (self.batch_size * self.world_size)
        self.epoch = 0
        self.start_step = 0

    def set_epoch(self, epoch: int, start_step: int = 0) -> None:
        """Select epoch ``epoch``'s order and skip its first ``start_step`` batches."""
        if not 0 <= start_step <= self.steps_per_epoch:
            raise ValueError(f"start_step {start_step} outside 0..{self.steps_per_epoch}")
        self.epoch = int(epoch)
        self.start_step = int(start_step)

    def order(self, epoch: int) -> list[int]:
        """All of this rank's indices of ``epoch``, in order (no skipping)."""
        if self.shuffle:
            g = torch.Generator()
            g.manual_seed((self.seed * 1_000_003 + self.epoch_key(epoch)) % (2**63))
            perm = torch.randperm(self.n, generator=g)
        else:
            perm = torch.arange(self.n)
        used = perm[: self.steps_per_epoch * self.batch_size * self.world_size]
        return used[self.rank :: self.world_size].tolist()

    @staticmethod
    def epoch_key(epoch: int) -> int:
        return int(epoch) * 7919 + 17

    def __iter__(self):
        return iter(self.order(self.epoch)[self.start_step * self.batch_size :])

    def __len__(self) -> int:
        return (self.steps_per_epoch - self.start_step) * self.batch_size

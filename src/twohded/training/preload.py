"""``train.preload``: the whole training split on the training device, rendered once.

A NYU-sized training split (795 images at 256x256: image, depth, all-in-focus image and
mask, 1.5 GB in float32) fits on one GPU. Loading it once and drawing every batch on the
device removes the DataLoader and the per-step rendering from the training loop (on an H100
the loop with them ran at 215 images/s, the model alone at 425). What changes:

* **Rendering once.** Every item is loaded without augmentation and its defocus rendered
  once (for ``defocus: deferred``, on the device; ``real`` / ``render`` / ``none`` as the
  dataset gives it). A preset whose camera is drawn at random per item keeps the first draw
  for the whole run instead of a new one every epoch.
* **Flips on the device.** Horizontal flips are drawn per item and epoch from a seeded
  generator and applied to all four tensors (a flipped rendering equals the rendering of the
  flipped scene: the blur kernels are symmetric; a test checks it). Random crops cannot be
  drawn from a preloaded split: ``data.resize: crop`` (or ``fit`` with a random window) with
  augmentation is refused.
* **The same batches.** The order comes from the same :class:`ShardedEpochSampler` as the
  DataLoader path (seeded, sharded over DDP ranks, resumable mid-epoch).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from ..errors import InputError
from .sampler import ShardedEpochSampler

__all__ = ["DeviceData", "preload_problem"]

#: the tensors of a training batch
KEYS = ("image", "depth", "aif", "mask")


def preload_problem(dataset) -> str | None:
    """Why ``dataset`` cannot be preloaded (None if it can)."""
    geometry = getattr(dataset, "geometry", None)
    if geometry is None:
        return f"{type(dataset).__name__} has no geometry (not a twohded DefocusDataset)"
    if getattr(dataset, "augment", False) and geometry.resize in ("crop", "fit") and geometry.size is not None:
        return (f"data.resize={geometry.resize!r} draws a random crop per item and epoch, which a split "
                "rendered once cannot do; use data.resize=resize (or none), or train.preload=false")
    return None


class DeviceData:
    """The training split on ``device``; :meth:`batches` yields one epoch's batches.

    Args:
        dataset: a :class:`~twohded.data.base.DefocusDataset` (its training split).
        sampler: the run's :class:`ShardedEpochSampler` (order, sharding, batch size).
        device: where the tensors live and the batches are drawn.
        seed: seed of the per-epoch flips.
        load_batch: items per loading batch (rendering batch size).
        num_workers: DataLoader workers for the one pass over the split.

    Memory: ``len(dataset) x H x W x 8`` float32 values (about 1.5 GB for 795 at 256x256).
    """

    def __init__(self, dataset, sampler: ShardedEpochSampler, device: torch.device, seed: int = 0,
                 load_batch: int = 32, num_workers: int = 0) -> None:
        problem = preload_problem(dataset)
        if problem:
            raise InputError(f"train.preload: {problem}")
        self.sampler = sampler
        self.device = torch.device(device)
        self.seed = int(seed)
        self.flip = bool(getattr(dataset, "augment", False) and dataset.geometry.flip)
        self.tensors = self._load(dataset, load_batch, num_workers)
        self.n = self.tensors["image"].shape[0]

    def _load(self, dataset, load_batch: int, num_workers: int) -> dict[str, torch.Tensor]:
        from ..data import render_batch

        was = dataset.augment
        dataset.augment = False  # the stored items are unflipped, centred; flips are drawn per epoch
        try:
            loader = torch.utils.data.DataLoader(dataset, batch_size=load_batch, shuffle=False, num_workers=num_workers,
                                                 drop_last=False)
            parts: dict[str, list[torch.Tensor]] = {k: [] for k in KEYS}
            with torch.no_grad():
                for batch in loader:
                    batch = render_batch(batch, device=self.device)
                    for k in KEYS:
                        parts[k].append(batch[k].to(self.device))
        finally:
            dataset.augment = was
        out = {k: torch.cat(v) for k, v in parts.items()}
        out["image"] = out["image"].float().clamp_(0, 1)
        return out

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.tensors.values())

    def _flips(self, epoch: int) -> torch.Tensor | None:
        if not self.flip:
            return None
        g = torch.Generator().manual_seed((self.seed * 1_000_003 + 104_729 * int(epoch) + 5) % 2**63)
        return (torch.rand(self.n, generator=g) < 0.5).to(self.device)

    def batches(self, epoch: int, start_step: int = 0) -> Iterator[dict[str, torch.Tensor]]:
        """Epoch ``epoch``'s batches from step ``start_step`` on: dicts of ``image (B, 3, H, W)``
        in [0, 1], ``depth (B, 1, H, W)`` metres, ``aif (B, 3, H, W)``, ``mask (B, 1, H, W)`` bool."""
        order = self.sampler.order(epoch)
        b = self.sampler.batch_size
        flips = self._flips(epoch)
        for k in range(start_step, self.sampler.steps_per_epoch):
            idx = torch.tensor(order[k * b:(k + 1) * b], dtype=torch.long).pin_memory() if self.device.type == "cuda" \
                else torch.tensor(order[k * b:(k + 1) * b], dtype=torch.long)
            idx = idx.to(self.device, non_blocking=True)
            batch = {key: t.index_select(0, idx) for key, t in self.tensors.items()}
            if flips is not None:
                f = flips.index_select(0, idx).view(-1, 1, 1, 1)
                batch = {key: torch.where(f, t.flip(-1), t) for key, t in batch.items()}
            yield batch

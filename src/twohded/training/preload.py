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
* **Random crops, rotations on the device.** With ``data.resize: crop`` the whole frames are
  stored (they must share one size, as DFD's 645x432 do) and every epoch draws, per item, a
  crop window of ``data.size`` (integer offsets, uniform over the frame), a flip and, with
  ``data.rotate_deg: A``, a rotation by an angle uniform in [-A, A] degrees about the crop's
  centre (D3-Net's "small random rotations"; the window is kept inside the frame). Without
  rotation a crop is an exact copy of the stored pixels; with it, images are resampled
  bilinearly and depth and mask by nearest neighbour (no depth is averaged across an edge).
  Real DFD frames held this way: 81 x 432 x 645 x 8 float32 values, 0.7 GiB.
* **The same batches.** The order comes from the same :class:`ShardedEpochSampler` as the
  DataLoader path (seeded, sharded over DDP ranks, resumable mid-epoch); crops, flips and
  angles come from a generator seeded by (seed, epoch), so a resumed run draws the same.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from ..data.transforms import Geometry
from ..errors import InputError
from .sampler import ShardedEpochSampler

__all__ = ["DeviceData", "preload_problem", "crop_batch"]

#: the tensors of a training batch
KEYS = ("image", "depth", "aif", "mask")


def preload_problem(dataset) -> str | None:
    """Why ``dataset`` cannot be preloaded (None if it can)."""
    geometry = getattr(dataset, "geometry", None)
    if geometry is None:
        return f"{type(dataset).__name__} has no geometry (not a twohded DefocusDataset)"
    if getattr(dataset, "augment", False) and geometry.resize == "fit" and geometry.size is not None:
        return ("data.resize='fit' draws a random crop of a resized frame per item and epoch, which a split "
                "rendered once cannot do; use data.resize=crop, resize (or none), or train.preload=false")
    return None


def crop_window_margin(size: tuple[int, int], rotate_deg: float) -> tuple[int, int]:
    """Extra pixels (rows, cols) a ``size`` (h, w) window needs on each side to stay inside the
    frame when rotated by up to ``rotate_deg`` degrees about its centre."""
    import math

    h, w = size
    a = math.radians(abs(rotate_deg))
    c, s = math.cos(a), math.sin(a)
    half_h = 0.5 * (h * c + w * s)
    half_w = 0.5 * (w * c + h * s)
    return math.ceil(half_h - h / 2), math.ceil(half_w - w / 2)


def crop_batch(frames: dict[str, torch.Tensor], top: torch.Tensor, left: torch.Tensor, size: tuple[int, int],
               flip: torch.Tensor | None = None, angle_deg: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Crop windows out of a batch of frames, optionally flipped and rotated, on their device.

    Args:
        frames: key -> ``(B, C, H, W)`` tensors of one frame size (``mask`` bool, others float).
        top, left: ``(B,)`` integer window offsets in pixels.
        size: window ``(h, w)`` in pixels.
        flip: ``(B,)`` bool, horizontal flip of the window.
        angle_deg: ``(B,)`` rotation of the window about its centre, degrees (None: none).

    Returns:
        key -> ``(B, C, h, w)``. Without rotation the values are exact copies; with it images
        are bilinear and ``depth`` / ``mask`` nearest-neighbour samples.
    """
    import torch.nn.functional as F

    h, w = size
    any_frame = next(iter(frames.values()))
    dev = any_frame.device
    B, _, H, W = any_frame.shape
    top, left = top.to(dev).long(), left.to(dev).long()
    if angle_deg is None or not bool((angle_deg != 0).any()):
        rows = (top[:, None] + torch.arange(h, device=dev))[:, :, None]  # (B, h, 1)
        cols = (left[:, None] + torch.arange(w, device=dev))[:, None, :]  # (B, 1, w)
        if flip is not None:
            cols = torch.where(flip.to(dev).view(-1, 1, 1), cols.flip(-1), cols)
        b = torch.arange(B, device=dev)[:, None, None]
        return {k: t[b, :, rows, cols].permute(0, 3, 1, 2).contiguous() for k, t in frames.items()}
    # pixel coordinates of the window, about its centre, rotated, flipped, then placed
    v = torch.arange(h, device=dev, dtype=torch.float32) - (h - 1) / 2
    u = torch.arange(w, device=dev, dtype=torch.float32) - (w - 1) / 2
    vv, uu = torch.meshgrid(v, u, indexing="ij")  # (h, w)
    uu = uu.expand(B, h, w)
    if flip is not None:
        uu = torch.where(flip.to(dev).view(-1, 1, 1), -uu, uu)
    a = torch.deg2rad(angle_deg.to(dev).float()).view(-1, 1, 1)
    x = torch.cos(a) * uu - torch.sin(a) * vv + (left.float() + (w - 1) / 2).view(-1, 1, 1)
    y = torch.sin(a) * uu + torch.cos(a) * vv + (top.float() + (h - 1) / 2).view(-1, 1, 1)
    grid = torch.stack([x / (W - 1) * 2 - 1, y / (H - 1) * 2 - 1], dim=-1)  # (B, h, w, 2), align_corners
    out = {}
    for k, t in frames.items():
        nearest = k in ("depth", "mask")
        src = t.float() if t.dtype == torch.bool else t
        o = F.grid_sample(src, grid.to(src.dtype), mode="nearest" if nearest else "bilinear",
                          padding_mode="border", align_corners=True)
        out[k] = o > 0.5 if t.dtype == torch.bool else o
    return out


class DeviceData:
    """The training split on ``device``; :meth:`batches` yields one epoch's batches.

    Args:
        dataset: a :class:`~twohded.data.base.DefocusDataset` (its training split).
        sampler: the run's :class:`ShardedEpochSampler` (order, sharding, batch size).
        device: where the tensors live and the batches are drawn.
        seed: seed of the per-epoch flips.
        load_batch: items per loading batch (rendering batch size).
        num_workers: DataLoader workers for the one pass over the split.
        rotate_deg: largest random rotation of the crop windows, degrees (``data.resize: crop``).

    Memory: ``len(dataset) x H x W x 8`` float32 values (about 1.5 GB for 795 at 256x256),
    H x W the whole frame when cropping.
    """

    def __init__(self, dataset, sampler: ShardedEpochSampler, device: torch.device, seed: int = 0,
                 load_batch: int = 32, num_workers: int = 0, rotate_deg: float = 0.0) -> None:
        problem = preload_problem(dataset)
        if problem:
            raise InputError(f"train.preload: {problem}")
        self.sampler = sampler
        self.device = torch.device(device)
        self.seed = int(seed)
        augment = bool(getattr(dataset, "augment", False))
        self.flip = augment and dataset.geometry.flip
        geometry = dataset.geometry
        self.crop = geometry.size if geometry.resize == "crop" and geometry.size is not None else None
        self.rotate_deg = float(rotate_deg) if augment else 0.0
        if self.rotate_deg < 0 or self.rotate_deg >= 45:
            raise InputError(f"data.rotate_deg={rotate_deg}: give an angle in [0, 45) degrees")
        if self.rotate_deg and self.crop is None:
            raise InputError("data.rotate_deg needs data.resize=crop with a data.size (the rotated window is cut "
                             "out of the whole frame)")
        self.random_crop = self.crop is not None and augment
        self.tensors = self._load(dataset, load_batch, num_workers)
        self.n = self.tensors["image"].shape[0]
        if self.crop is not None:
            self._check_window()

    def _check_window(self) -> None:
        H, W = self.tensors["image"].shape[-2:]
        mh, mw = crop_window_margin(self.crop, self.rotate_deg)
        if self.crop[0] + 2 * mh > H or self.crop[1] + 2 * mw > W:
            raise InputError(f"data.size={self.crop[1]}x{self.crop[0]} (WxH) with data.rotate_deg={self.rotate_deg:g} "
                             f"does not fit in the {W}x{H} frames")
        self.margin = (mh, mw)

    def _load(self, dataset, load_batch: int, num_workers: int) -> dict[str, torch.Tensor]:
        from ..data import render_batch

        was, geometry = dataset.augment, dataset.geometry
        dataset.augment = False  # the stored items are unflipped, centred; flips are drawn per epoch
        if self.crop is not None:  # whole frames; windows are cut per epoch
            dataset.geometry = Geometry(size=None, flip=geometry.flip)
        try:
            loader = torch.utils.data.DataLoader(dataset, batch_size=load_batch, shuffle=False, num_workers=num_workers,
                                                 drop_last=False)
            parts: dict[str, list[torch.Tensor]] = {k: [] for k in KEYS}
            with torch.no_grad():
                for batch in loader:
                    batch = render_batch(batch, dataset.render_spec, self.device)
                    for k in KEYS:
                        parts[k].append(batch[k].to(self.device))
        except RuntimeError as exc:
            if self.crop is not None and "stack" in str(exc):
                raise InputError(f"train.preload with data.resize=crop: the frames differ in size ({exc}); "
                                 "use train.preload=false") from None
            raise
        finally:
            dataset.augment, dataset.geometry = was, geometry
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

    def _windows(self, epoch: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Per item: window top, left (pixels) and angle (degrees, or None) of ``epoch``."""
        H, W = self.tensors["image"].shape[-2:]
        h, w = self.crop
        mh, mw = self.margin
        if not self.random_crop:  # centred, as the DataLoader path's validation crops
            top = torch.full((self.n,), (H - h) // 2, dtype=torch.long)
            left = torch.full((self.n,), (W - w) // 2, dtype=torch.long)
            return top.to(self.device), left.to(self.device), None
        g = torch.Generator().manual_seed((self.seed * 1_000_003 + 104_729 * int(epoch) + 11) % 2**63)
        top = torch.randint(mh, H - h - mh + 1, (self.n,), generator=g)
        left = torch.randint(mw, W - w - mw + 1, (self.n,), generator=g)
        angle = (torch.rand(self.n, generator=g) * 2 - 1) * self.rotate_deg if self.rotate_deg else None
        return top.to(self.device), left.to(self.device), angle.to(self.device) if angle is not None else None

    def batches(self, epoch: int, start_step: int = 0) -> Iterator[dict[str, torch.Tensor]]:
        """Epoch ``epoch``'s batches from step ``start_step`` on: dicts of ``image (B, 3, H, W)``
        in [0, 1], ``depth (B, 1, H, W)`` metres, ``aif (B, 3, H, W)``, ``mask (B, 1, H, W)`` bool."""
        order = self.sampler.order(epoch)
        b = self.sampler.batch_size
        flips = self._flips(epoch)
        windows = self._windows(epoch) if self.crop is not None else None
        for k in range(start_step, self.sampler.steps_per_epoch):
            idx = torch.tensor(order[k * b:(k + 1) * b], dtype=torch.long).pin_memory() if self.device.type == "cuda" \
                else torch.tensor(order[k * b:(k + 1) * b], dtype=torch.long)
            idx = idx.to(self.device, non_blocking=True)
            batch = {key: t.index_select(0, idx) for key, t in self.tensors.items()}
            if windows is not None:
                top, left, angle = (w.index_select(0, idx) if w is not None else None for w in windows)
                f = flips.index_select(0, idx) if flips is not None else None
                yield crop_batch(batch, top, left, self.crop, f, angle)
                continue
            if flips is not None:
                f = flips.index_select(0, idx).view(-1, 1, 1, 1)
                batch = {key: torch.where(f, t.flip(-1), t) for key, t in batch.items()}
            yield batch

"""Several processes (``torchrun --nproc_per_node N``): PyTorch DDP plumbing.

``torchrun`` sets ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE``; :func:`init_distributed`
reads them and starts the process group (NCCL on GPUs, gloo on CPU). Every process runs the
same config; each takes its own shard of every epoch (see
:class:`~twohded.training.sampler.ShardedEpochSampler`), so the **global batch** is
``train.batch_size x WORLD_SIZE``. Only rank 0 writes (run folder, checkpoints, logs) and
validates.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

__all__ = ["DistInfo", "dist_info_from_env", "init_distributed", "shutdown_distributed", "broadcast_object", "all_gather_object", "barrier", "all_reduce_mean"]


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: ``rank`` of ``world_size``, ``local_rank`` on its host."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    initialized_here: bool = False  # we started the process group (and must end it)

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def dist_info_from_env(env: dict[str, str] | None = None) -> DistInfo:
    """Rank, world size and local rank from torchrun's variables (1 process without them)."""
    env = os.environ if env is None else env

    def read(name: str, default: int) -> int:
        text = env.get(name)
        if text is None or text == "":
            return default
        try:
            return int(text)
        except ValueError:
            from ..errors import InputError

            raise InputError(f"environment variable {name}={text!r} is not an integer") from None

    world = read("WORLD_SIZE", 1)
    rank = read("RANK", 0)
    local = read("LOCAL_RANK", rank)
    if world < 1 or not 0 <= rank < world:
        from ..errors import InputError

        raise InputError(f"bad torchrun environment: RANK={rank}, WORLD_SIZE={world}")
    return DistInfo(rank=rank, world_size=world, local_rank=local)


def init_distributed(device_type: str, env: dict[str, str] | None = None) -> DistInfo:
    """Start the process group if torchrun asked for several processes; returns :class:`DistInfo`.

    Backend: NCCL when training on CUDA, gloo otherwise. ``MASTER_ADDR`` / ``MASTER_PORT``
    come from torchrun (``env://`` initialisation).
    """
    info = dist_info_from_env(env)
    if not info.distributed:
        return info
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), info.local_rank, False)
    backend = "nccl" if device_type == "cuda" else "gloo"
    if device_type == "cuda":
        torch.cuda.set_device(info.local_rank)
    dist.init_process_group(backend=backend, init_method="env://")
    return DistInfo(info.rank, info.world_size, info.local_rank, True)


def shutdown_distributed(info: DistInfo) -> None:
    if info.initialized_here and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.distributed:
        dist.barrier()


def broadcast_object(obj: Any, info: DistInfo, src: int = 0) -> Any:
    """``obj`` of rank ``src`` on every rank."""
    if not info.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_gather_object(obj: Any, info: DistInfo) -> list[Any]:
    """Every rank's ``obj``, in rank order."""
    if not info.distributed:
        return [obj]
    out: list[Any] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def all_reduce_mean(tensor: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Mean over ranks (in place on a copy)."""
    if not info.distributed:
        return tensor
    tensor = tensor.clone()
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor / info.world_size

"""One process or many: the same code runs plainly and under ``torchrun``.

``torchrun`` sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; :func:`init` reads them and joins the
process group (NCCL on CUDA, gloo on CPU). Without them everything here is a no-op for one process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def check_device(name: str) -> str:
    """``name`` if this machine has that device, else one clear ``ValueError`` (instead of a CUDA driver
    traceback on the first tensor moved there)."""
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ValueError(f"device {name!r} is not a device: use cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r}: CUDA is not available on this machine; use device=cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device {name!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif device.type != "cpu":
        raise ValueError(f"device {name!r}: only cpu and cuda are supported")
    return name


def init(device: str = "cpu") -> DistInfo:
    """Join the process group when launched by ``torchrun`` (idempotent); return this process's place."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistInfo()
    info = DistInfo(int(os.environ["RANK"]), world_size, int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        backend = "nccl" if device.startswith("cuda") and dist.is_nccl_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(info.local_rank)
        dist.init_process_group(backend=backend)
    return info


def current() -> DistInfo:
    """This process's place, from the initialized process group (one process when there is none)."""
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
    return DistInfo()


def barrier() -> None:
    if current().enabled:
        dist.barrier()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over all processes (in place) and return it; unchanged for one process."""
    if current().enabled:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


T = TypeVar("T")


def all_gather_objects(obj: T) -> list[T]:
    """Every process's ``obj``, in rank order (``[obj]`` for one process)."""
    info = current()
    if not info.enabled:
        return [obj]
    gathered: list[Any] = [None] * info.world_size
    dist.all_gather_object(gathered, obj)
    return gathered


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()

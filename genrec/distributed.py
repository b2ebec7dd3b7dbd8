"""Data-parallel training and evaluation over processes with ``torch.distributed``.

Launch with ``torchrun`` (part of PyTorch, so no further dependency; ``accelerate launch`` sets the
same environment and works too): every process reads ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK``,
joins one process group (NCCL on CUDA, gloo on CPU) and trains the same model on its share of every
batch, with gradients averaged by :class:`~torch.nn.parallel.DistributedDataParallel`. A batch is the
same *global* batch for any process count (``batch_size`` counts all processes together) and each
process's loss is weighted by its share of the batch's targets, so one optimizer step follows the
gradient of the whole batch however it was split, and a checkpoint resumes under another process
count. Evaluation shards users over processes and gathers the ranked lists, so metrics are exact.
Only rank 0 writes files.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from genrec.errors import ConfigError


@dataclass(frozen=True)
class ProcessGroup:
    """This process's place among the data-parallel processes (one process: rank 0 of 1)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        """Rank 0: the one that writes files and prints."""
        return self.rank == 0

    def shard(self, rows: np.ndarray) -> np.ndarray:
        """This process's contiguous part of ``rows`` (parts differ in size by at most one)."""
        return np.array_split(np.asarray(rows), self.world)[self.rank] if self.active else np.asarray(rows)

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    def sum(self, value: float) -> float:
        """``value`` summed over processes (every process gets the total)."""
        if not self.active:
            return value
        total = torch.tensor([value], dtype=torch.float64)
        dist.all_reduce(total)
        return float(total.item())

    def broadcast(self, value: Any) -> Any:
        """Rank 0's ``value`` on every process."""
        if not self.active:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, value: Any) -> list[Any]:
        """Every process's ``value``, in rank order."""
        if not self.active:
            return [value]
        values: list[Any] = [None] * self.world
        dist.all_gather_object(values, value)
        return values


def process_group(device: torch.device | None = None) -> ProcessGroup:
    """Join the process group ``torchrun`` described in the environment (once per process), or
    return the single-process group when there is none."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return ProcessGroup()
    try:
        rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", os.environ["RANK"]))
    except (KeyError, ValueError):
        raise ConfigError("WORLD_SIZE > 1 but RANK is missing: launch data-parallel runs with torchrun") from None
    if not dist.is_initialized():
        cuda = device is not None and device.type == "cuda"
        if cuda:
            torch.cuda.set_device(local_rank)
        dist.init_process_group("nccl" if cuda else "gloo", rank=rank, world_size=world)
    if rank > 0:  # one process reports; the others only warn
        logging.getLogger("genrec").setLevel(logging.WARNING)
    return ProcessGroup(rank, world, local_rank)


def process_device(device: torch.device, group: ProcessGroup) -> torch.device:
    """Each process on its own GPU (``cuda:LOCAL_RANK``); CPU processes share the CPU."""
    return torch.device("cuda", group.local_rank) if device.type == "cuda" and group.active else device


class LossOf(nn.Module):
    """A model's ``batch_loss(...)`` as ``forward``, so that DistributedDataParallel (which
    synchronizes gradients around ``forward``) can wrap models whose training entry point it is."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, *args: Any) -> torch.Tensor:
        return self.model.batch_loss(*args)


def data_parallel(model: nn.Module, group: ProcessGroup, device: torch.device) -> nn.Module:
    """``model``'s loss wrapped for data-parallel training (rank 0's weights broadcast to all);
    unused parameters are allowed (a Latte latent token or a BERT4Rec mask row a batch never reads)."""
    return nn.parallel.DistributedDataParallel(
        LossOf(model), device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=True
    )

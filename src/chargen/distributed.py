"""Data parallelism on PyTorch's own engine: torchrun sets the environment, this module reads it.

``torchrun --nproc_per_node=N -m chargen train ...`` starts N copies; each joins the process
group (NCCL on CUDA, gloo on CPU), reads its own rows of the global batch, and
``DistributedDataParallel`` averages the gradients, so N ranks with B/N rows each take the
same step as one process with B rows. Only rank 0 writes files, logs and samples.
"""

from __future__ import annotations

import gc
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from chargen.errors import TrainingError


@dataclass(frozen=True)
class World:
    """This process's place in the job (rank 0 of 1 when not distributed)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def rows(self, batch_size: int) -> slice:
        """This rank's rows of a global batch (the batch must split evenly)."""
        if batch_size % self.size:
            raise TrainingError(
                f"a batch of {batch_size} streams does not split evenly over {self.size} processes; "
                f"use a --batch-size divisible by {self.size}"
            )
        share = batch_size // self.size
        return slice(self.rank * share, (self.rank + 1) * share)

    def mean(self, value: float, device: torch.device) -> float:
        """Average of ``value`` over all ranks."""
        if not self.enabled:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=device)
        dist.all_reduce(t)
        return float(t[0]) / self.size

    def any(self, *flags: float, device: torch.device) -> list[float]:
        """Element-wise maximum of ``flags`` over all ranks (a stop decision all ranks share)."""
        if not self.enabled:
            return list(flags)
        t = torch.tensor(flags, dtype=torch.float64, device=device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return t.tolist()

    def gather_rows(self, tensor: torch.Tensor, dim: int) -> torch.Tensor:
        """Concatenate every rank's ``tensor`` along ``dim`` (rank order)."""
        if not self.enabled:
            return tensor
        parts = [torch.empty_like(tensor) for _ in range(self.size)]
        dist.all_gather(parts, tensor.contiguous())
        return torch.cat(parts, dim=dim)

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()


def init_world(device_name: str) -> World:
    """Join the process group torchrun describes (WORLD_SIZE > 1), or return a world of one."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() and device_name != "cpu"
    if not dist.is_initialized():
        if use_cuda:
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return World(rank, size, local_rank)


def close_world(world: World, finished: bool) -> None:
    """Leave the process group; after a normal finish together (a rank that left early would
    abort its peers' gloo), after an error at once (the peers may be gone).

    Garbage is collected first, so a finished trainer's DDP reducer (and any gloo work it holds)
    goes while its process group is alive, not during interpreter shutdown, where gloo aborts.
    """
    if world.enabled and dist.is_initialized():
        gc.collect()
        if finished:
            dist.barrier()
        dist.destroy_process_group()

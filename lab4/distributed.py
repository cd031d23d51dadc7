"""Data-parallel training through torchrun (torch.distributed): one run, several processes.

    torchrun --standalone --nproc_per_node 2 -m lab4.train --DR data --save_root runs/ddp ...
    torchrun --nnodes 2 --node_rank R --master_addr HOST --master_port 29500 --nproc_per_node 4 -m lab4.train ...

--batch_size stays the *global* batch: each of the W processes (ranks) takes its B/W sequences of
every step's batch, DistributedDataParallel averages the gradients, and the step is the one a single
process takes on the whole batch (same data order, same teacher-forcing coins, the same noise rows,
BatchNorm statistics over the whole batch), to floating-point rounding. Only rank 0 validates and
writes (checkpoints, metrics, figures, logs); a checkpoint holds nothing per rank, so a run resumes
with any number of processes. gloo on the CPU, NCCL on GPUs (rank r uses cuda:<local rank>).
"""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from .errors import Lab4Error


@dataclass(frozen=True)
class World:
    rank: int = 0            # this process among all of the run's
    size: int = 1            # processes of the run (1: no torch.distributed)
    local_rank: int = 0      # this process among its machine's (its GPU)

    @property
    def main(self) -> bool:
        """The process that validates and writes."""
        return self.rank == 0

    def rows(self, n: int) -> slice:
        """This rank's share of a global batch of n rows (n divisible by size)."""
        k = n // self.size
        return slice(self.rank * k, (self.rank + 1) * k)


def world_from_env() -> World:
    """The torchrun environment (RANK, WORLD_SIZE, LOCAL_RANK), or the single process."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    return World(int(os.environ["RANK"]), size, int(os.environ.get("LOCAL_RANK", "0")))


def start(world: World, device: torch.device) -> None:
    """Join the run's process group (NCCL on CUDA, gloo on the CPU) once per process."""
    if world.size > 1 and not dist.is_initialized():   # rank 0 validates alone: a long timeout
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=datetime.timedelta(hours=2))


def stop() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def check_batch(batch_size: int, world: World, what: str = "--batch_size") -> None:
    if batch_size % world.size:
        raise Lab4Error(f"{what} {batch_size}: the global batch must divide among the {world.size} processes "
                        f"(torchrun --nproc_per_node x nodes); use a multiple of {world.size}")


def mean_over_ranks(values: torch.Tensor, world: World) -> torch.Tensor:
    """The mean of a small tensor over the ranks (the step's loss, MSE and KL for the log)."""
    if world.size > 1:
        values = values.clone()
        dist.all_reduce(values)
        values /= world.size
    return values


def global_noise(like: torch.Tensor, world: World) -> torch.Tensor:
    """N(0, 1) noise for this rank's rows of a global batch: every rank draws the whole batch's noise
    (so the generators stay in step) exactly as torch.randn_like would on the global tensor (same
    shape, dtype and memory format), and keeps its rows."""
    chosen = torch.empty_like(like)                # the layout randn_like(like) draws in (channels_last for a
                                                   # channel slice of a channels_last activation)
    fmt = torch.channels_last if (chosen.dim() == 4 and not chosen.is_contiguous()
                                  and chosen.is_contiguous(memory_format=torch.channels_last)) else torch.contiguous_format
    whole = torch.empty((world.size * like.shape[0], *like.shape[1:]), dtype=like.dtype, device=like.device,
                        memory_format=fmt).normal_()
    return whole[world.rows(len(whole))]


def any_over_ranks(flag: bool, world: World) -> bool:
    """True on every rank when it is True on any (Ctrl-C: all ranks stop at the same step)."""
    if world.size == 1:
        return flag
    t = torch.tensor([float(flag)])
    dist.all_reduce(t)
    return bool(t.item() > 0)


def sum_over_ranks(t: torch.Tensor) -> torch.Tensor:
    """A differentiable all-reduce sum (its backward sums the gradients too): BatchNorm statistics."""
    from torch.distributed.nn.functional import all_reduce
    return all_reduce(t)


def batch_norm_over_ranks(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float):
    """Training-mode batch norm of x (B_rank, K, H, W) with each channel's statistics over every rank's
    rows (a differentiable all-reduce of the sums): the normalisation one process would apply to the
    whole batch. Returns (normed, (mean, unbiased var) of the K channels, detached)."""
    xd = x.double()                                           # E[x^2] - E[x]^2 cancels badly in fp32
    K = xd.shape[1]
    local = torch.cat([xd.sum((0, 2, 3)), (xd * xd).sum((0, 2, 3)),
                       xd.new_full((1,), xd.shape[0] * xd.shape[2] * xd.shape[3])])
    total = sum_over_ranks(local)
    n = total[-1]
    mean = total[:K] / n
    var = (total[K:2 * K] / n - mean * mean).clamp_min(0)     # biased, as batch norm normalises
    scale = (torch.rsqrt(var + eps) * weight.double()).float()
    shift = (bias.double() - mean * torch.rsqrt(var + eps) * weight.double()).float()
    normed = x.float() * scale[None, :, None, None] + shift[None, :, None, None]
    return normed.to(x.dtype), (mean.float().detach(), (var * n / (n - 1).clamp_min(1)).float().detach())

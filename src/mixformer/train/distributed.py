"""``torchrun`` DDP support: process-group setup and the per-rank split of every batch.

Launch with ``torchrun --nproc_per_node N -m mixformer.cli train CONFIG.yaml``; multi-node runs
add ``--nnodes``/``--node_rank``/``--rdzv_endpoint`` as usual. Each rank draws its own part of
every global batch (the samples are a function of their global index, see
:class:`~mixformer.datagen.training.TrainingSamples`), so N processes with batch B compute the same
gradients as one process with batch N*B (BatchNorm statistics aside: they are not synchronised,
as in the reference).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)

__all__ = ["DistInfo", "init_distributed", "shutdown_distributed", "epoch_batches", "all_mean"]


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in the job.

    Attributes:
        rank / world_size / local_rank: as set by ``torchrun`` (0 / 1 / 0 without it).
        device: ``cuda:<local_rank>`` when CUDA is available, else ``cpu``.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        """True on rank 0 (the process that writes checkpoints and logs)."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """True when more than one process takes part."""
        return self.world_size > 1


def init_distributed(device: str | None = None) -> DistInfo:
    """Join the process group described by the ``torchrun`` environment, if any.

    Args:
        device: force ``"cpu"`` or ``"cuda"``; default: CUDA when available.
    Returns:
        The :class:`DistInfo` of this process. Backend: NCCL on CUDA, gloo on the CPU.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() if device is None else device.startswith("cuda")
    dev = torch.device(f"cuda:{local}") if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
        log.info("rank %d/%d joined (%s)", rank, world, dist.get_backend())
    return DistInfo(rank, world, local, dev)


def shutdown_distributed() -> None:
    """Leave the process group (no-op when not distributed)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def epoch_batches(
    num_samples: int, batch_size: int, world_size: int, rank: int, accum_iter: int = 1
) -> list[list[int]]:
    """Sample indices of this rank's micro-batches for one epoch, in order.

    Optimizer step ``k`` consumes ``accum_iter`` consecutive micro-batches; global micro-batch
    ``m`` covers indices ``[m*G, (m+1)*G)`` with ``G = batch_size * world_size``, and rank ``r``
    takes ``[m*G + r*B, m*G + (r+1)*B)``. Incomplete steps are dropped.

    Returns:
        ``steps * accum_iter`` lists of ``batch_size`` indices.
    """
    g = batch_size * world_size
    steps = num_samples // (g * accum_iter)
    out = []
    for m in range(steps * accum_iter):
        start = m * g + rank * batch_size
        out.append(list(range(start, start + batch_size)))
    return out


def all_mean(values: dict[str, float], info: DistInfo) -> dict[str, float]:
    """Average a dict of floats over all ranks (identity without DDP)."""
    if not info.distributed or not values:
        return values
    keys = sorted(values)
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=info.device)
    dist.all_reduce(t)
    t /= info.world_size
    return dict(zip(keys, t.tolist()))


def any_flag(flag: bool, info: DistInfo) -> bool:
    """True when ``flag`` is True on any rank."""
    if not info.distributed:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=info.device)
    dist.all_reduce(t)
    return bool(t.item() > 0)

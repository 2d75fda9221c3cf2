"""Gathering embeddings across processes with gradients, so losses see negatives from every rank.

``torch.distributed.nn.functional.all_gather`` carries gradients back to the rank that produced each slice. When
each rank computes a loss on the gathered global batch, DDP's gradient averaging then gives the gradient of the
single-process loss on the concatenated batch (tests/losses/test_distributed_losses.py shows it on 2 processes).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.distributed as dist

_LOCAL = threading.local()


@contextmanager
def local_only() -> Iterator[None]:
    """Inside this block :func:`world` reports a single process, so losses gather nothing across ranks (used to
    probe memory on each rank alone, with no collective call that a rank running out of memory would miss).

    Example:
        >>> with local_only():
        ...     world()
        (0, 1)
    """
    previous = getattr(_LOCAL, "on", False)
    _LOCAL.on = True
    try:
        yield
    finally:
        _LOCAL.on = previous


def world() -> tuple[int, int]:
    """``(rank, world_size)``; ``(0, 1)`` outside a process group (or inside :func:`local_only`).

    Example:
        >>> world()
        (0, 1)
    """
    if getattr(_LOCAL, "on", False):
        return 0, 1
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _sizes(n: int, device: torch.device) -> list[int]:
    size = world()[1]
    local = torch.tensor([n], device=device)
    parts = [torch.empty_like(local) for _ in range(size)]
    dist.all_gather(parts, local)
    return [int(p) for p in parts]


def gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate ``tensor`` from every rank along dim 0 (in rank order), keeping the autograd path to each
    local slice. Ranks may hold different batch sizes (padded for the collective, trimmed after).

    Single process: returns ``tensor`` itself.

    Example:
        >>> import torch
        >>> gather_with_grad(torch.ones(2, 3)).shape
        torch.Size([2, 3])
    """
    _, size = world()
    if size == 1:
        return tensor
    from torch.distributed.nn.functional import all_gather

    sizes = _sizes(tensor.shape[0], tensor.device)
    longest = max(sizes)
    padded = torch.nn.functional.pad(tensor, (0, 0) * (tensor.dim() - 1) + (0, longest - tensor.shape[0]))
    parts = all_gather(padded.contiguous())
    return torch.cat([part[:n] for part, n in zip(parts, sizes)], dim=0)  # (sum of sizes, ...)


def gather_no_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate ``tensor`` (labels, ids) from every rank along dim 0, without gradients.

    Example:
        >>> import torch
        >>> gather_no_grad(torch.tensor([1, 2])).tolist()
        [1, 2]
    """
    _, size = world()
    if size == 1:
        return tensor
    sizes = _sizes(tensor.shape[0], tensor.device)
    longest = max(sizes)
    padded = torch.zeros((longest, *tensor.shape[1:]), dtype=tensor.dtype, device=tensor.device)
    padded[: tensor.shape[0]] = tensor
    parts = [torch.empty_like(padded) for _ in range(size)]
    dist.all_gather(parts, padded)
    return torch.cat([part[:n] for part, n in zip(parts, sizes)], dim=0)


def rank_offset(n: int, device: torch.device | None = None) -> int:
    """The global row of this rank's first item: the sum of the batch sizes of lower ranks (0 alone).

    Example:
        >>> rank_offset(4)
        0
    """
    rank, size = world()
    if size == 1:
        return 0
    return sum(_sizes(n, device or torch.device("cpu"))[:rank])


def average_gradients(parameters: list[torch.nn.Parameter]) -> None:
    """All-reduce (mean) the gradients of parameters that DDP does not manage (a loss's own weights).

    Example:
        >>> import torch
        >>> p = torch.nn.Parameter(torch.ones(2)); p.grad = torch.ones(2)
        >>> average_gradients([p]); p.grad.tolist()
        [1.0, 1.0]
    """
    _, size = world()
    if size == 1:
        return
    for p in parameters:
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad /= size


def is_sharded(model: Any) -> bool:
    """Whether ``model``'s weights are sharded across ranks (FSDP2's ``fully_shard``: its parameters are
    ``DTensor``s; DeepSpeed ZeRO-3: its parameters carry a ``ds_id``), so that every forward pass is a collective
    call all ranks must make.

    Example:
        >>> is_sharded(torch.nn.Linear(2, 2))
        False
    """
    if not callable(getattr(model, "parameters", None)):
        return False
    from torch.distributed.tensor import DTensor

    return any(isinstance(p, DTensor) or hasattr(p, "ds_id") for p in model.parameters())

"""Helpers for tests that start several CPU processes (gloo), the way torchrun does."""

from __future__ import annotations

import os
import socket


def free_port() -> int:
    """A free TCP port on 127.0.0.1 for the process group's rendezvous."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def become_rank(rank: int, world: int, port: int, home: str) -> None:
    """Set the variables torchrun would set for ``rank`` of ``world`` (CPU, one thread) and the runs folder."""
    import torch

    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_WORLD_SIZE=str(world),
        FINETUNER_HOME=home,
        ACCELERATE_USE_CPU="true",
    )
    torch.set_num_threads(1)

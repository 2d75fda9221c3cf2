"""Helpers for tests that start several CPU processes (gloo), the way torchrun does."""

from __future__ import annotations

import atexit
import gc
import os
import socket
from pathlib import Path


def free_port() -> int:
    """A free TCP port on 127.0.0.1 for the process group's rendezvous."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def become_rank(rank: int, world: int, port: int, home: str) -> None:
    """Set the variables torchrun would set for ``rank`` of ``world`` (CPU, one thread) and the runs folder; at
    exit the process leaves its process group cleanly (:func:`leave_process_group`)."""
    import torch

    atexit.register(leave_process_group)

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


def leave_process_group() -> None:
    """Free what still references the process group (sharded modules, DeepSpeed's engine, autograd graphs of
    gathers: reference cycles that live until the interpreter tears down), then destroy the group, if any. A group
    still referenced while the interpreter finalises aborts the process now and then (SIGABRT, "terminate called
    without an active exception": 2 in 90 runs of tests/training/test_fsdp.py's step tests before this, like the
    loss test in tests/losses/test_distributed_losses.py)."""
    import torch.distributed as dist

    gc.collect()
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def saved_weights(home: Path | str, name: str) -> dict:
    """The weights a run named ``name`` saved under the runs folder ``home`` (its model.safetensors)."""
    from safetensors.torch import load_file

    return load_file(str(Path(home) / "runs" / "default" / name / "models" / "model" / "model.safetensors"))

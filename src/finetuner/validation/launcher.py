"""Checks of how the run was launched: ``accelerate launch`` with FSDP (supported: FSDP2 on GPUs, with the options
that work on a sharded model) or DeepSpeed (refused, naming FSDP), before a model loads."""

from __future__ import annotations

import os
from typing import Any

import torch

from finetuner.config import TrainingConfig

#: callbacks that keep a full copy of the weights on every rank (by class name: validation imports no training code)
_WEIGHT_KEEPING_CALLBACKS = ("BestModelCheckpoint", "WiSEFTCallback")


def _flag(variable: str) -> bool:
    return os.environ.get(variable, "false").lower() in ("1", "true", "yes")


def launcher_problems(config: TrainingConfig, callbacks: Any = None) -> list[str]:
    """What is wrong with running ``fit`` under the launcher's engine (read from accelerate's environment
    variables, which ``accelerate launch`` sets from its config): every problem, each naming the option that fixes it.

    Example:
        >>> launcher_problems(TrainingConfig())
        []
        >>> os.environ['ACCELERATE_USE_DEEPSPEED'] = 'true'
        >>> problems = launcher_problems(TrainingConfig()); del os.environ['ACCELERATE_USE_DEEPSPEED']
        >>> problems[0].split(' (')[0]
        'accelerate is configured for DeepSpeed'
    """
    problems: list[str] = []
    if _flag("ACCELERATE_USE_DEEPSPEED"):
        problems.append(
            f"accelerate is configured for DeepSpeed (ACCELERATE_USE_DEEPSPEED={os.environ['ACCELERATE_USE_DEEPSPEED']}"
            "), which finetuner's fit does not support: its checkpoints, saving and evaluation are written for DDP "
            "and FSDP. For a model larger than one GPU launch with FSDP2 (accelerate launch --use_fsdp "
            "--fsdp_version 2; see docs/distributed.md); otherwise launch without --use_deepspeed"
        )
    if _flag("ACCELERATE_USE_FSDP"):
        problems += _fsdp_problems(config, callbacks)
    return problems


def _fsdp_problems(config: TrainingConfig, callbacks: Any) -> list[str]:
    """FSDP2 on GPUs, without the options that assume whole weights on every rank."""
    problems: list[str] = []
    prefix = "accelerate is configured for FSDP (ACCELERATE_USE_FSDP=true)"
    if config.device_type() == "cpu" or not torch.cuda.is_available():
        problems.append(
            f"{prefix}, but accelerate shards models only on GPUs and this run is on the CPU; launch without "
            "--use_fsdp (every process then holds the whole model) or on a machine with CUDA GPUs"
        )
    version = os.environ.get("FSDP_VERSION", "1")
    if version != "2":
        problems.append(
            f"{prefix} with FSDP version {version}; finetuner supports FSDP2: set fsdp_version: 2 in the accelerate "
            "config (or accelerate launch --fsdp_version 2)"
        )
    refused = {
        "adapter": (config.adapter, "LoRA adapters are not tested under FSDP; fine-tune the whole model"),
        "batch_size": (
            config.batch_size == "auto",
            "'auto' probes each rank alone, but a sharded model's forward pass needs every rank; give a number",
        ),
        "mini_batch_size": (
            config.mini_batch_size,
            "the gradient cache's replayed forward passes are not tested under FSDP; leave it unset and save "
            "activation memory with gradient_checkpointing=True",
        ),
        "compile": (config.compile, "torch.compile is not tested under FSDP; leave it off"),
    }
    for option, (value, why) in refused.items():
        if value:
            problems.append(f"{prefix}: {option}={getattr(config, option)!r} does not work on a sharded model: {why}")
    for i, cb in enumerate(callbacks if isinstance(callbacks, (list, tuple)) else ()):
        names = {klass.__name__ for klass in type(cb).__mro__}
        kept = names.intersection(_WEIGHT_KEEPING_CALLBACKS)
        if kept:
            problems.append(
                f"{prefix}: callbacks[{i}] is a {kept.pop()}, which keeps a full copy of the weights on every rank; "
                "under FSDP use TrainingCheckpoint and the last epoch's model"
            )
    return problems

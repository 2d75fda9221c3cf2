"""Checks of how the run was launched: ``accelerate launch`` with FSDP (FSDP2) or DeepSpeed (ZeRO stages 1-3), both on
GPUs and with the options that work on a sharded model, before a model loads."""

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
        >>> problems = launcher_problems(TrainingConfig(device='cpu')); del os.environ['ACCELERATE_USE_DEEPSPEED']
        >>> problems[0].split(',')[0]
        'accelerate is configured for DeepSpeed (ACCELERATE_USE_DEEPSPEED=true)'
    """
    problems: list[str] = []
    if _flag("ACCELERATE_USE_DEEPSPEED"):
        problems += _sharded_problems(config, callbacks, "DeepSpeed", "ACCELERATE_USE_DEEPSPEED", "--use_deepspeed")
    if _flag("ACCELERATE_USE_FSDP"):
        problems += _sharded_problems(config, callbacks, "FSDP", "ACCELERATE_USE_FSDP", "--use_fsdp")
        version = os.environ.get("FSDP_VERSION", "1")
        if version != "2":
            problems.append(
                f"accelerate is configured for FSDP (ACCELERATE_USE_FSDP=true) with FSDP version {version}; finetuner "
                "supports FSDP2: set fsdp_version: 2 in the accelerate config (or accelerate launch --fsdp_version 2)"
            )
    return problems


def _sharded_problems(config: TrainingConfig, callbacks: Any, engine: str, variable: str, flag: str) -> list[str]:
    """FSDP2 or DeepSpeed on GPUs, without the options that assume whole weights on every rank (or that drive
    backward passes of their own)."""
    problems: list[str] = []
    prefix = f"accelerate is configured for {engine} ({variable}={os.environ[variable]})"
    if config.device_type() == "cpu" or not torch.cuda.is_available():
        problems.append(
            f"{prefix}, but accelerate uses {engine} only on GPUs and this run is on the CPU; launch without "
            f"{flag} (every process then holds the whole model) or on a machine with CUDA GPUs"
        )
    refused = {
        "adapter": (config.adapter, f"LoRA adapters are not tested under {engine}; fine-tune the whole model"),
        "batch_size": (
            config.batch_size == "auto",
            "'auto' probes each rank alone, but a sharded model's forward pass needs every rank; give a number",
        ),
        "mini_batch_size": (
            config.mini_batch_size,
            f"the gradient cache's replayed forward passes are not tested under {engine}; leave it unset and save "
            "activation memory with gradient_checkpointing=True",
        ),
        "compile": (config.compile, f"torch.compile is not tested under {engine}; leave it off"),
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
                f"under {engine} use TrainingCheckpoint and the last epoch's model"
            )
    return problems

"""The optimizers and the learning-rate schedule of a run, built from its :class:`~finetuner.config.TrainingConfig`."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from finetuner.config import TrainingConfig
from finetuner.errors import FinetunerError
from finetuner.models.heads import head_param_groups


def build_optimizer(config: TrainingConfig, model: nn.Module, loss_fn: nn.Module) -> torch.optim.Optimizer:
    """The optimizer named in ``config`` over the trainable model parameters (plus the loss's own, if any)."""
    lr = config.learning_rate_or_default()
    cls = getattr(torch.optim, config.optimizer)
    if not any(p.requires_grad for p in model.parameters()):
        raise FinetunerError("the model has no trainable parameters (everything is frozen)")
    options = dict(config.optimizer_options)
    # fused Adam/AdamW on every device torch has it for: on the CPU the plain implementation steps the parameters one
    # by one (MiniLM: 107 ms a step against 18 ms fused; benchmarks/bench_optimizer_step.py)
    fuse = config.optimizer in ("Adam", "AdamW") and "fused" not in options
    # the new projection heads at head_learning_rate (a two-tower model's default: 10 x lr; config.py)
    if hasattr(model, "param_groups"):  # e.g. per-tower learning rates of a two-tower model
        groups: list[dict[str, Any]] = model.param_groups(lr, config.head_learning_rate)
    elif config.head_learning_rate is not None:
        groups = head_param_groups(model, lr, config.head_learning_rate)
    else:
        groups = [{"params": [p for p in model.parameters() if p.requires_grad]}]
    loss_params = [p for p in loss_fn.parameters() if p.requires_grad]

    if loss_params and config.loss_optimizer is None:
        groups.append({"params": loss_params, **config.loss_optimizer_options})
    if fuse:
        try:
            return cls(groups, lr=lr, fused=True, **options)
        except (RuntimeError, ValueError):  # a device or dtype without a fused kernel
            pass
    return cls(groups, lr=lr, **options)


def build_loss_optimizer(config: TrainingConfig, loss_fn: nn.Module) -> torch.optim.Optimizer | None:
    """A separate optimizer for the loss's parameters when ``loss_optimizer`` is set (ArcFace's class centres)."""
    loss_params = [p for p in loss_fn.parameters() if p.requires_grad]

    if config.loss_optimizer is None or not loss_params:
        return None
    options = dict(config.loss_optimizer_options)
    options.setdefault("lr", config.learning_rate_or_default())
    return getattr(torch.optim, config.loss_optimizer)(loss_params, **options)


def build_scheduler(config: TrainingConfig, optimizer: torch.optim.Optimizer, total_steps: int) -> Any:
    """A transformers learning-rate schedule (warmup via ``num_warmup_steps`` or ``warmup_ratio``) or None."""
    if config.scheduler is None:
        return None
    from transformers import get_scheduler

    options = dict(config.scheduler_options)
    warmup = options.pop("num_warmup_steps", None)
    ratio = options.pop("warmup_ratio", None)
    if warmup is None:
        warmup = math.ceil(total_steps * float(ratio)) if ratio else 0
    return get_scheduler(
        config.scheduler,
        optimizer,
        num_warmup_steps=warmup,
        num_training_steps=total_steps,
        scheduler_specific_kwargs=options or None,
    )

"""The optimizers and the learning-rate schedule of a run, built from its :class:`~finetuner.config.TrainingConfig`."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from finetuner.config import TrainingConfig
from finetuner.errors import FinetunerError
from finetuner.models.heads import head_param_groups
from finetuner.training.layer_decay import OPTION as LAYER_DECAY
from finetuner.training.layer_decay import layer_decay_groups


def build_optimizer(config: TrainingConfig, model: nn.Module, loss_fn: nn.Module) -> torch.optim.Optimizer:
    """The optimizer named in ``config`` over the trainable model parameters (plus the loss's own, if any)."""
    lr = config.learning_rate_or_default()
    cls = getattr(torch.optim, config.optimizer)
    if not any(p.requires_grad for p in model.parameters()):
        raise FinetunerError("the model has no trainable parameters (everything is frozen)")
    options = dict(config.optimizer_options)
    decay = options.pop(LAYER_DECAY, None)
    # fused Adam/AdamW on every device torch has it for: on the CPU the plain implementation steps the parameters one
    # by one (MiniLM: 107 ms a step against 18 ms fused; benchmarks/bench_optimizer_step.py)
    fuse = config.optimizer in ("Adam", "AdamW") and "fused" not in options
    # the new projection heads at head_learning_rate (a two-tower model's default: 10 x lr; config.py); a layer
    # decay sets every layer's rate itself
    if decay is not None:  # a learning rate per layer (and per tower)
        groups = layer_decay_groups(model, lr, decay)
    elif hasattr(model, "param_groups"):  # e.g. per-tower learning rates of a two-tower model
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
    """A transformers learning-rate schedule, or None without a ``scheduler``.

    ``scheduler_options`` (checked beforehand, see :mod:`finetuner.validation.schedules`): warmup by
    ``num_warmup_steps`` or ``warmup_ratio``, the schedule's length ``num_training_steps`` (``'auto'``: the run's
    ``total_steps`` optimizer steps), ``scheduler_step='epoch'`` to change the rate once an epoch (the lengths then
    count epochs), and the schedule's own options.
    """
    if config.scheduler is None:
        return None
    from transformers import get_scheduler

    options = dict(config.scheduler_options)
    per_epoch = options.pop("scheduler_step", "batch") == "epoch"
    length = options.pop("num_training_steps", "auto")
    units = config.epochs if per_epoch else total_steps
    length = units if length == "auto" else int(length)
    warmup = options.pop("num_warmup_steps", None)
    ratio = options.pop("warmup_ratio", None)
    if warmup is None:
        warmup = math.ceil(length * float(ratio)) if ratio else 0
    schedule = get_scheduler(
        config.scheduler,
        optimizer,
        num_warmup_steps=warmup,
        num_training_steps=length,
        scheduler_specific_kwargs=options or None,
    )
    return EpochSteps(schedule, total_steps, config.epochs) if per_epoch else schedule


class EpochSteps:
    """A schedule stepped once an epoch although the loop calls ``step()`` after every optimizer step: of
    ``total_steps`` calls over ``epochs`` epochs, the schedule steps at each epoch's share.

    Example:
        >>> net = nn.Linear(2, 2)
        >>> opt = torch.optim.SGD(net.parameters(), lr=1.0)
        >>> sched = EpochSteps(torch.optim.lr_scheduler.LambdaLR(opt, lambda e: 1.0 / (e + 1)), 6, 3)
        >>> rates = []
        >>> for _ in range(6):
        ...     rates.append(sched.get_last_lr()[0]); sched.step()
        >>> rates
        [1.0, 1.0, 0.5, 0.5, 0.3333333333333333, 0.3333333333333333]
    """

    def __init__(self, schedule: Any, total_steps: int, epochs: int) -> None:
        self.schedule = schedule
        self.per_epoch = max(1, total_steps) / max(1, epochs)  # optimizer steps an epoch (a fraction if uneven)
        self.calls = 0

    def step(self) -> None:
        self.calls += 1
        while self.schedule.last_epoch < int(self.calls / self.per_epoch + 1e-9):
            self.schedule.step()

    def get_last_lr(self) -> list[float]:
        return self.schedule.get_last_lr()

    def state_dict(self) -> dict[str, Any]:
        return {"schedule": self.schedule.state_dict(), "calls": self.calls}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.schedule.load_state_dict(state["schedule"])
        self.calls = int(state["calls"])

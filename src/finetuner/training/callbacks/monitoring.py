"""What the monitoring callbacks share: reading a monitored value and its direction, the bare model."""

from __future__ import annotations

import logging
import math
from typing import Any

from finetuner.errors import ConfigError
from finetuner.training.loop import TrainState

logger = logging.getLogger("finetuner")

MODES = ("auto", "min", "max")
#: names the loop itself provides (``train_loss`` is Finetuner's name for the epoch's training loss)
LOSS_ALIASES = {"train_loss": "loss", "loss": "loss"}


def resolve_mode(monitor: str, mode: str) -> str:
    """``'min'`` or ``'max'``: ``'auto'`` minimises losses and maximises everything else (retrieval metrics).

    Example:
        >>> resolve_mode('val_loss', 'auto'), resolve_mode('precision_at_k', 'auto'), resolve_mode('x', 'min')
        ('min', 'max', 'min')
    """
    if mode not in MODES:
        raise ConfigError(f"mode must be one of {', '.join(MODES)}; received {mode!r}")
    if mode != "auto":
        return mode
    return "min" if "loss" in monitor else "max"


def check_monitor(monitor: Any, owner: str) -> str:
    """The monitor name, validated as a non-empty string.

    Example:
        >>> check_monitor(3, 'EarlyStopping')
        Traceback (most recent call last):
        ...
        finetuner.errors.ConfigError: EarlyStopping(monitor=3): monitor must be a metric name such as ...
    """
    if not isinstance(monitor, str) or not monitor:
        raise ConfigError(
            f"{owner}(monitor={monitor!r}): monitor must be a metric name such as 'val_loss', 'train_loss' or "
            "'precision_at_k'"
        )
    return monitor


def monitored_value(state: TrainState, monitor: str, owner: str) -> float:
    """The value of ``monitor`` at the end of the current epoch (from ``state.metrics`` or the epoch's history).

    Example:
        >>> from finetuner.config import TrainingConfig
        >>> s = TrainState(model=None, config=TrainingConfig(), history=[{'epoch': 1, 'loss': 0.5}])
        >>> monitored_value(s, 'train_loss', 'EarlyStopping')
        0.5
    """
    record = dict(state.history[-1]) if state.history else {}
    record.update(state.metrics)
    key = LOSS_ALIASES.get(monitor, monitor)
    if key not in record:
        available = sorted({*record, "train_loss"} - {"epoch"})
        raise ConfigError(
            f"{owner}: nothing reported {monitor!r} this epoch; available: {', '.join(available)}. "
            "Metrics need an EvaluationCallback; 'val_loss' needs eval_data or val_split"
        )
    return float(record[key])


def improved(value: float, best: float | None, mode: str, min_delta: float = 0.0) -> bool:
    """Whether ``value`` beats ``best`` by more than ``min_delta`` in direction ``mode``.

    Example:
        >>> improved(0.4, 0.5, 'min'), improved(0.5, 0.5, 'min'), improved(0.7, None, 'max')
        (True, False, True)
    """
    if not math.isfinite(value):
        return False
    if best is None:
        return True
    return value < best - min_delta if mode == "min" else value > best + min_delta


def unwrapped(state: TrainState) -> Any:
    """The bare model (without the DDP / compile wrappers accelerate adds).

    Example:
        >>> from finetuner.config import TrainingConfig
        >>> unwrapped(TrainState(model='m', config=TrainingConfig()))
        'm'
    """
    accelerator = state.accelerator
    return accelerator.unwrap_model(state.model) if accelerator is not None else state.model

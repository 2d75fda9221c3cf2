"""Training: ``fit`` end to end in phases (check, plan, build, train, save: :mod:`.fit`), the one loop on accelerate
(:mod:`.loop`), checkpoints and resume, and the callbacks. The settings, :class:`TrainingConfig`, live in
:mod:`finetuner.config` (re-exported here)."""

from finetuner.config import TrainingConfig
from finetuner.training.checkpoint import TrainingCheckpoint, TrainingInterrupted
from finetuner.training.loop import Callback, NonFiniteLossError, TrainState, train

__all__ = [
    "Callback",
    "NonFiniteLossError",
    "TrainState",
    "TrainingCheckpoint",
    "TrainingConfig",
    "TrainingInterrupted",
    "train",
]

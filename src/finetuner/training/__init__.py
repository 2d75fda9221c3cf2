"""The training loop (on accelerate), its settings and callbacks; ``fit`` end to end."""

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

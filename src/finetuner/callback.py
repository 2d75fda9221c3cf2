"""Callbacks for ``fit(..., callbacks=[...])`` under Finetuner's names.

``EvaluationCallback`` measures retrieval at each epoch's end; ``BestModelCheckpoint`` keeps the best epoch's
weights; ``EarlyStopping`` stops on a plateau; ``TrainingCheckpoint`` saves resumable checkpoints (``fit(...,
resume_from=...)``); ``WiSEFTCallback`` mixes the tuned weights with the pretrained ones;
``WandBLogger``, ``MLFlowLogger`` and ``TensorBoardLogger`` record the run in those tools. Subclass ``Callback``
(hooks ``on_train_begin``, ``on_epoch_begin``, ``on_batch_end``, ``on_epoch_end``, ``on_train_end``, each given
the :class:`TrainState`) for your own.

Example:
    >>> import finetuner
    >>> from finetuner.callback import EarlyStopping, EvaluationCallback
    >>> sorted(finetuner.list_callbacks())[:3]
    ['BestModelCheckpoint', 'EarlyStopping', 'EvaluationCallback']
"""

from __future__ import annotations

from typing import Any

from finetuner.training.callbacks import (
    BestModelCheckpoint,
    EarlyStopping,
    EvaluationCallback,
    MLFlowLogger,
    TensorBoardLogger,
    TrackerLogger,
    WandBLogger,
    WiSEFTCallback,
)
from finetuner.training.checkpoint import TrainingCheckpoint
from finetuner.training.loop import Callback, TrainState

_PUBLIC = (
    BestModelCheckpoint,
    EarlyStopping,
    EvaluationCallback,
    MLFlowLogger,
    TensorBoardLogger,
    TrainingCheckpoint,
    WandBLogger,
    WiSEFTCallback,
)


def list_callbacks() -> dict[str, Any]:
    """The callbacks ``fit`` accepts, ``{name: class}`` (as Finetuner's ``list_callbacks``).

    Example:
        >>> 'EarlyStopping' in list_callbacks()
        True
    """
    return {cls.__name__: cls for cls in _PUBLIC}


__all__ = [
    "BestModelCheckpoint",
    "Callback",
    "EarlyStopping",
    "EvaluationCallback",
    "MLFlowLogger",
    "TensorBoardLogger",
    "TrackerLogger",
    "TrainState",
    "TrainingCheckpoint",
    "WandBLogger",
    "WiSEFTCallback",
    "list_callbacks",
]

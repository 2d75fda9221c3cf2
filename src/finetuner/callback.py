"""Callbacks for ``fit(..., callbacks=[...])`` under Finetuner's names.

``EvaluationCallback`` measures retrieval at each epoch's end; ``BestModelCheckpoint`` keeps the best epoch's
weights; ``EarlyStopping`` stops on a plateau; ``WiSEFTCallback`` mixes the tuned weights with the pretrained ones;
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

from finetuner.errors import FinetunerError
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
from finetuner.training.loop import Callback, TrainState

try:  # the checkpoint/resume module (saves the training state for resume_from); a placeholder in builds without it
    from finetuner.training.checkpoint import TrainingCheckpoint  # type: ignore[import-not-found]
except ImportError:

    class TrainingCheckpoint(Callback):  # type: ignore[no-redef]
        """Placeholder: saving the training state for resuming is not part of this build.

        Example:
            >>> TrainingCheckpoint()  # doctest: +SKIP
        """

        def __init__(self, last_k_epochs: int = 1) -> None:
            raise FinetunerError(
                "TrainingCheckpoint (saving the training state to resume a run) is not available in this build; "
                "use BestModelCheckpoint to keep the best weights"
            )


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

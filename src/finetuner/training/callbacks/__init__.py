"""The callbacks ``fit`` accepts (public names in :mod:`finetuner.callback`) and their preparation before training."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from finetuner.data.shapes import LabelledData, PairData
from finetuner.errors import ConfigError, InputTypeError
from finetuner.evaluation.standard_metrics import is_metric_name
from finetuner.training.callbacks.checkpoints import BestModelCheckpoint, EarlyStopping
from finetuner.training.callbacks.evaluation import EvaluationCallback, ValidationLoss
from finetuner.training.callbacks.loggers import MLFlowLogger, TensorBoardLogger, TrackerLogger, WandBLogger
from finetuner.training.callbacks.monitoring import LOSS_ALIASES
from finetuner.training.loop import Callback
from finetuner.training.wiseft import WiSEFTCallback

_MONITORS = (BestModelCheckpoint, EarlyStopping)


def prepare_callbacks(
    callbacks: Sequence[Any] | None,
    eval_data: LabelledData | PairData | None,
) -> list[Callback]:
    """Check ``fit``'s callbacks before training and put them in running order.

    Evaluation data of every :class:`EvaluationCallback` is read and checked; a ``val_loss`` monitor gets a
    :class:`ValidationLoss` on ``eval_data`` (a :class:`~finetuner.errors.ConfigError` without it; it is given the
    run's loss and embedder by :func:`bind_callbacks` once the model is built); every monitored
    name must be something some callback reports (a callback of your own that puts figures in ``state.metrics``
    declares their names with a ``metric_names()`` method). Order: measurements first, then the callbacks acting on them
    (best checkpoint, early stop), then WiSE-FT, then loggers; otherwise the user's order.

    Example:
        >>> cbs = prepare_callbacks([EarlyStopping(monitor='train_loss')], None)
        >>> [type(c).__name__ for c in cbs]
        ['EarlyStopping']
        >>> prepare_callbacks([EarlyStopping()], None)
        Traceback (most recent call last):
        ...
        finetuner.errors.ConfigError: EarlyStopping monitors 'val_loss', which needs eval_data (or val_split) ...
    """
    out: list[Callback] = []
    for i, cb in enumerate(callbacks or []):
        if isinstance(cb, type) and issubclass(cb, Callback):
            raise InputTypeError(f"callbacks[{i}] is the class {cb.__name__}; pass an instance: {cb.__name__}(...)")
        if not isinstance(cb, Callback):
            raise InputTypeError(
                f"callbacks[{i}] is a {type(cb).__name__}; callbacks are finetuner.callback objects "
                "(or subclasses of finetuner.callback.Callback)"
            )
        out.append(cb)
    reported = set(LOSS_ALIASES)
    for cb in out:
        if isinstance(cb, EvaluationCallback):
            cb.setup()
        if callable(getattr(cb, "metric_names", None)):  # own callbacks declare what they report this way too
            reported.update(cb.metric_names())
    monitors = [cb for cb in out if isinstance(cb, _MONITORS)]
    if any(cb.monitor == "val_loss" for cb in monitors):
        owner = next(type(cb).__name__ for cb in monitors if cb.monitor == "val_loss")
        if eval_data is None:
            raise ConfigError(
                f"{owner} monitors 'val_loss', which needs eval_data (or val_split) in fit(); give evaluation "
                "data, or monitor 'train_loss' or a metric of an EvaluationCallback"
            )
        two_modalities = isinstance(eval_data, PairData) and eval_data.left_modality != eval_data.right_modality
        if two_modalities and _world_size() > 1:
            raise ConfigError(
                f"{owner} monitors 'val_loss', which is not measured for CLIP runs on several processes (the CLIP "
                "loss gathers across processes); monitor a metric of an EvaluationCallback instead"
            )
        out.insert(0, ValidationLoss(eval_data))
        reported.add("val_loss")
    for cb in monitors:
        if cb.monitor not in reported:
            hint = (
                f"; add EvaluationCallback(query_data=...) to report {cb.monitor!r}"
                if is_metric_name(cb.monitor)
                else ""
            )
            raise ConfigError(
                f"{type(cb).__name__} monitors {cb.monitor!r}, which no callback reports; "
                f"reported: {', '.join(sorted(reported))}{hint}"
            )
    return sorted(out, key=_order)


def bind_callbacks(
    callbacks: Sequence[Callback],
    loss_fn: Any,
    embed: Any,
    batch_size: int,
    num_items_per_class: int = 4,
    seed: int = 0,
) -> None:
    """Give the callbacks that measure the run what they need once the model is built (the loss, the embedder).

    Example:
        >>> bind_callbacks([EarlyStopping('train_loss')], loss_fn=None, embed=None, batch_size=32)
    """
    for cb in callbacks:
        if isinstance(cb, ValidationLoss):
            cb.bind(loss_fn, embed, batch_size, num_items_per_class, seed)


def _world_size() -> int:
    import os

    return int(os.environ.get("WORLD_SIZE", "1"))


def _order(cb: Callback) -> int:
    """Running order: measurements (0), then the rest (10), WiSE-FT (20), loggers (30)."""
    if isinstance(cb, WiSEFTCallback):
        return 20  # after BestModelCheckpoint has restored the best weights
    default = 0 if callable(getattr(cb, "metric_names", None)) else 10
    return int(getattr(cb, "_order", default))


__all__ = [
    "BestModelCheckpoint",
    "Callback",
    "EarlyStopping",
    "EvaluationCallback",
    "MLFlowLogger",
    "TensorBoardLogger",
    "TrackerLogger",
    "ValidationLoss",
    "WandBLogger",
    "WiSEFTCallback",
    "bind_callbacks",
    "prepare_callbacks",
]

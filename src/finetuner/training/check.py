"""``fit``'s first phase: check every option and item, and resolve the settings once, before a model is loaded.

:func:`check` gives a :class:`CheckedFit`: the checked data (split when ``val_split`` is set), the callbacks in
running order, the checkpoint a resume continues from, and the run's :class:`~finetuner.config.TrainingConfig`
resolved and frozen: ``loss='auto'`` is the data's loss, ``batch_size=None`` the device's default (at most the
training items). Every later phase reads that config; ``config.yml`` records it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from finetuner.config import TWO_TOWER_HEAD_LR_FACTOR, TrainingConfig
from finetuner.data.readers import CSVOptions
from finetuner.data.shapes import LabelledData, PairData, data_kind
from finetuner.errors import ConfigError, closest
from finetuner.training.callbacks import prepare_callbacks
from finetuner.training.loop import Callback
from finetuner.training.resume import resolve_resume
from finetuner.validation import validate_fit

#: the settings that may be None in fit() and mean "empty"
_DICT_OPTIONS = ("loss_options", "miner_options", "optimizer_options", "scheduler_options", "loss_optimizer_options")


@dataclass(frozen=True)
class FitOptions:
    """``fit``'s arguments that are not training settings (see :func:`finetuner.training.fit.run_fit`)."""

    callbacks: Sequence[Callback] | None = None
    csv_options: CSVOptions | None = None
    model_options: dict[str, Any] | None = None
    to_onnx: bool = False
    verbose: bool = True
    eval_batch_size: int = 64
    limit: int = 20
    resume_from: str | Path | None = None


@dataclass
class CheckedFit:
    """What the check phase hands on (nothing loaded or built yet).

    Attributes:
        model: the model as ``fit`` got it.
        config: the resolved, frozen settings.
        train: the training data; ``eval``: the evaluation data (given, split off, or None).
        options: ``fit``'s other arguments.
        callbacks: the callbacks, checked and in running order.
        checkpoint: the checkpoint folder a resume continues from; ``resumed_run``: that run's folder.
    """

    model: Any
    config: TrainingConfig
    train: LabelledData | PairData
    eval: LabelledData | PairData | None
    options: FitOptions = field(default_factory=FitOptions)
    callbacks: list[Callback] = field(default_factory=list)
    checkpoint: Path | None = None
    resumed_run: Path | None = None

    @property
    def seed(self) -> int:
        """The run's seed (0 when none was given)."""
        return self.config.seed if self.config.seed is not None else 0


def check(model: Any, train_data: Any, eval_data: Any, settings: dict[str, Any], options: FitOptions) -> CheckedFit:
    """Check ``fit``'s arguments and data, all problems in one error, and resolve the settings (see the module).

    Args:
        model, train_data, eval_data: ``fit``'s arguments.
        settings: the training settings (:class:`~finetuner.config.TrainingConfig`'s fields).
        options: ``fit``'s other arguments.

    Raises:
        ConfigError, DataError, InputTypeError, ValidationError: what :func:`~finetuner.validation.validate_fit`
            found, or an unknown setting.

    Example:
        >>> checked = check('bert-base-en', [('a', 'x'), ('b', 'x'), ('c', 'y'), ('d', 'y')], None,
        ...                 {'device': 'cpu'}, FitOptions())
        >>> checked.config.loss, checked.config.batch_size
        ('TripletMarginLoss', 4)
    """
    _refuse_unknown(settings)
    settings = {k: v for k, v in settings.items() if not (k in _DICT_OPTIONS and v is None)}
    config = TrainingConfig(model=_model_name(model), **settings)
    checkpoint, resumed_run, resume_problems = resolve_resume(options.resume_from)
    fit_only = {k: getattr(options, k) for k in ("eval_batch_size", "limit", "to_onnx", "verbose")}
    checked = validate_fit(  # options and data: every problem, all at once, before a model is loaded
        model,
        train_data,
        eval_data,
        config,
        callbacks=options.callbacks,
        csv_options=options.csv_options,
        model_options=options.model_options,
        fit_only=fit_only,
        extra_problems=resume_problems,
    )
    if options.to_onnx:
        from finetuner.export.onnx import check_onnx_available

        check_onnx_available()  # before training, not after it
    train, evals = checked.train, checked.eval
    seed = config.seed if config.seed is not None else 0
    if config.val_split > 0:
        train, evals = split(train, config.val_split, seed)
    config = resolve(config, checked.loss, train, model)
    callbacks = prepare_callbacks(options.callbacks, evals)  # their data and monitors, before a model is loaded
    return CheckedFit(model, config, train, evals, options, callbacks, checkpoint, resumed_run)


def resolve(
    config: TrainingConfig, loss: Any, train: LabelledData | PairData, model: Any = None
) -> TrainingConfig:
    """``config`` with the loss the data resolved and ``batch_size=None`` as the device's default, at most the
    training items (a number of pairs for text-image pairs, of items for the rest); ``'auto'`` stays for the build
    phase to measure. A two-tower model built from ``{'text': ..., 'vision': ...}`` trains its new projection heads
    at ``head_learning_rate``, by default :data:`~finetuner.config.TWO_TOWER_HEAD_LR_FACTOR` x the learning rate.

    Example:
        >>> data = LabelledData(['a', 'b', 'c'], [0, 0, 1], ['x', 'y'], ['1', '2', '3'], 'text')
        >>> resolve(TrainingConfig(device='cpu'), 'TripletMarginLoss', data).batch_size
        3
    """
    n_items = len(train) if data_kind(train) == "clip" else len(training_view(train)[0])
    batch_size = config.batch_size
    if batch_size != "auto":
        batch_size = min(int(batch_size or config.default_batch_size()), n_items)
    head_lr = config.head_learning_rate
    if head_lr is None and isinstance(model, dict):  # new heads on pretrained towers (benchmarks/README.md)
        head_lr = TWO_TOWER_HEAD_LR_FACTOR * config.learning_rate_or_default()
    return dataclasses.replace(config, loss=loss, batch_size=batch_size, head_learning_rate=head_lr)


def training_view(data: LabelledData | PairData) -> tuple[LabelledData, bool]:
    """The labelled items a metric loss trains on, and whether they are pairs of one modality as classes of two.

    Example:
        >>> training_view(PairData(['q1', 'q2'], ['d1', 'd2'], 'text', 'text', ['0', '1']))[0].labels
        [0, 0, 1, 1]
    """
    if isinstance(data, PairData):
        return data.as_labelled(), True
    return data, False


def split(data: LabelledData | PairData, val_split: float, seed: int) -> tuple[Any, Any]:
    """Hold out ``val_split`` of the data: per class for labelled items (each class keeps 2+ training items),
    at random for pairs (at least one held out, two kept).

    Example:
        >>> data = LabelledData(list('abcdef'), [0, 0, 0, 1, 1, 1], ['x', 'y'], list('123456'), 'text')
        >>> [len(part) for part in split(data, 0.34, seed=0)]
        [4, 2]
    """
    rng = np.random.default_rng(seed)
    if isinstance(data, PairData):
        order = rng.permutation(len(data))
        n_val = min(max(1, round(len(data) * val_split)), len(data) - 2)
        return _take_pairs(data, sorted(order[n_val:])), _take_pairs(data, sorted(order[:n_val]))
    labels = np.asarray(data.labels)
    train_idx: list[int] = []
    val_idx: list[int] = []
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        n_val = min(round(len(members) * val_split), max(0, len(members) - 2))
        val_idx += members[:n_val].tolist()
        train_idx += members[n_val:].tolist()

    def take(idx: list[int]) -> LabelledData:
        idx = sorted(idx)
        return LabelledData(
            [data.items[i] for i in idx],
            [data.labels[i] for i in idx],
            data.classes,
            [data.ids[i] for i in idx],
            data.modality,
        )

    return take(train_idx), take(val_idx)


def _take_pairs(data: PairData, idx: list[int]) -> PairData:
    return PairData(
        [data.left[i] for i in idx],
        [data.right[i] for i in idx],
        data.left_modality,
        data.right_modality,
        [data.ids[i] for i in idx],
        [data.labels[i] for i in idx] if data.labels is not None else None,
    )


def _refuse_unknown(settings: dict[str, Any]) -> None:
    unknown = sorted(set(settings) - set(TrainingConfig.__dataclass_fields__))
    if not unknown:
        return
    fit_only = {f.name for f in dataclasses.fields(FitOptions)} - {"resume_from"}
    valid = [*sorted({*TrainingConfig.__dataclass_fields__, *fit_only}), "eval_data", "resume_from"]
    hints = [f"{u!r} (did you mean {closest(u, valid)!r}?)" if closest(u, valid) else repr(u) for u in unknown]
    raise ConfigError(f"fit() got unknown option(s) {', '.join(hints)}; valid options: {', '.join(valid)}")


def _model_name(model: Any) -> str:
    if isinstance(model, (str, Path)):
        return str(model)
    if isinstance(model, dict):
        return "{" + ", ".join(f"{k}: {_model_name(v)}" for k, v in model.items()) + "}"
    return type(model).__name__

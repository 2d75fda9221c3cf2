"""The check before training: one pass over the options and the data that reports every problem at once.

``fit`` calls :func:`validate_fit` before it loads a model, so a run never fails on item 90,000 after an hour of
training: a bad item, a misspelt loss or an unavailable device is reported up front, each problem naming what was
received, what is valid and how to fix it. All problems come in one error (``error.problems`` lists them):

- only data problems: :class:`~finetuner.errors.DataError`;
- only option problems: :class:`~finetuner.errors.ConfigError` (wrong types only:
  :class:`~finetuner.errors.InputTypeError`);
- several categories: :class:`~finetuner.errors.ValidationError`, which is both a ``DataError`` and a ``ConfigError``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from finetuner.config import TrainingConfig
from finetuner.data.shapes import LabelledData, PairData, data_kind
from finetuner.validation.data import check_data
from finetuner.validation.options import check_options
from finetuner.validation.report import ValidationReport


@dataclass
class CheckedData:
    """What the check produced: the task data of train and eval, the loss ``config.loss`` stands for (``'auto'``
    resolved by the data, once, here), and the report (warnings included)."""

    train: LabelledData | PairData
    eval: LabelledData | PairData | None
    loss: Any = None
    report: ValidationReport = field(default_factory=ValidationReport)


def validate_fit(
    model: Any,
    train_data: Any,
    eval_data: Any,
    config: TrainingConfig,
    *,
    callbacks: Any = None,
    csv_options: Any = None,
    model_options: Any = None,
    fit_only: dict[str, Any] | None = None,
    extra_problems: list[tuple[str, str]] | None = None,
) -> CheckedData:
    """Check every option and every item of ``train_data`` and ``eval_data``; raise once with all problems.

    Args:
        model: what ``fit`` got as ``model``.
        train_data, eval_data: the data in any accepted form (``eval_data`` may be None).
        config: the run's settings.
        callbacks, csv_options, model_options: ``fit``'s arguments of these names.
        fit_only: other ``fit`` arguments to check (``eval_batch_size``, ``limit``, ``to_onnx``, ``verbose``).
        extra_problems: ``(category, message)`` problems found by the caller (e.g. an unusable ``resume_from``).

    Raises:
        DataError, ConfigError, InputTypeError, ValidationError: see the module docstring.

    Example:
        >>> validate_fit('bert-base-en', [('a', 'x'), ('b', 'x')], None, TrainingConfig(epochs=0, device='cpu'))
        Traceback (most recent call last):
        ...
        finetuner.errors.ValidationError: 2 problems found before training (nothing was trained; ...):
          - epochs must be an int >= 1; received 0
          - train_data has a single class ('x'); metric learning needs at least 2 classes ...
    """
    report = ValidationReport()
    check_options(
        report,
        config,
        model=model,
        callbacks=callbacks,
        csv_options=csv_options,
        model_options=model_options,
        eval_given=eval_data is not None,
        fit_only=fit_only,
    )
    for category, message in extra_problems or []:
        report.add(category, message)
    options_ok = csv_options is None or not any("csv_options" in m for m in report.messages())
    train = check_data(report, train_data, "train_data", csv_options if options_ok else None, train=True)
    evals = None
    if eval_data is not None:
        evals = check_data(report, eval_data, "eval_data", csv_options if options_ok else None, train=False)
    if train is not None and evals is not None:
        train_mods = _modalities(train)
        eval_mods = _modalities(evals)
        if train_mods != eval_mods:
            report.add(
                "data",
                f"eval_data holds {'/'.join(eval_mods)} items but train_data holds {'/'.join(train_mods)} items; "
                "evaluate on data of the same kind",
            )
    loss = None
    if train is not None:
        _check_sampler(report, config.sampler, train)
        loss = _check_loss_for_data(report, config, train)
        _check_items_per_class(report, config, train, loss)
    report.raise_if_problems()
    assert train is not None  # no problems means train data was built
    return CheckedData(train, evals, loss, report)


def _held(train: LabelledData | PairData) -> str:
    """What the training data holds, for messages: 'labelled text items', 'text-image pairs', ..."""
    if isinstance(train, LabelledData):
        return f"labelled {train.modality} items"
    return f"{train.left_modality}-{train.right_modality} pairs"


def _check_sampler(report: ValidationReport, sampler: Any, train: LabelledData | PairData) -> None:
    """The batch sampler must fit the data: 'length' needs text pairs; text-image pairs take only their own."""
    if not isinstance(sampler, str):
        return  # a wrong type is already reported with the options
    kind = data_kind(train)
    if sampler == "length" and not (kind == "pairs" and train.left_modality == "text"):
        report.add(
            "config",
            f"sampler='length' batches text pairs of similar length, but train_data holds {_held(train)}; "
            "use sampler='auto' (or 'class' / 'random' for labelled items)",
        )
    elif kind == "clip" and sampler not in ("auto", "length"):
        report.add(
            "config",
            f"train_data holds {_held(train)}, which always use a duplicate-free pair sampler; sampler={sampler!r} "
            "does not apply to them: leave sampler='auto'",
        )


def _check_items_per_class(report: ValidationReport, config: TrainingConfig, train: Any, loss: Any) -> None:
    """``num_items_per_class=1`` with the class sampler puts one item of each class in a batch: a loss that learns
    from positive pairs (triplets, contrastive, NT-Xent ...) then finds none and learns nothing. Losses that learn
    class weights (ArcFace, ProxyAnchor ...) do not need positives in a batch."""
    from finetuner.losses import needs_class_count

    if config.num_items_per_class != 1 or data_kind(train) != "labelled" or loss is None:
        return
    if config.sampler == "random" or needs_class_count(loss):
        return  # the random sampler ignores num_items_per_class; proxy losses learn without in-batch positives
    name = loss if isinstance(loss, str) else type(loss).__name__
    report.add(
        "config",
        f"num_items_per_class=1 with the class sampler gives batches of one item per class, so {name} finds no "
        "positive pair in any batch and learns nothing; use num_items_per_class >= 2 (default 4)",
    )


def _check_loss_for_data(report: ValidationReport, config: TrainingConfig, train: LabelledData | PairData) -> Any:
    """The loss for this data (``loss='auto'`` resolved by it, its options checked against that loss), checked to fit
    the data: CLIPLoss (and only it, without a miner) for text-image pairs; InfoNCELoss for pairs of one modality."""
    from finetuner.losses import loss_class, resolve_loss
    from finetuner.validation.options import _check_keys

    kind = data_kind(train)
    loss = resolve_loss(config.loss, kind)
    if isinstance(config.loss, str) and config.loss.lower() == "auto" and isinstance(config.loss_options, dict):
        _check_keys(report, "loss", loss_class(loss), config.loss_options)
    name = loss if isinstance(loss, str) else type(loss).__name__
    if kind == "clip":
        by_name = isinstance(loss, str) and name.lower() == "cliploss"
        if not by_name and name.lower() != "infonceloss":  # InfoNCELoss has its own message below
            given = repr(config.loss)
            report.add("config", f"two-tower training on text-image pairs takes loss='CLIPLoss'; received {given}")
        if config.miner is not None:
            report.add("config", "miners apply to labelled metric learning, not to CLIP pairs; drop miner=")
    elif name.lower() == "cliploss":
        report.add("config", "CLIPLoss trains two towers on text-image pairs; for labelled items use a metric loss")
    if name.lower() == "infonceloss":
        if kind != "pairs":
            held = _held(train) + (" (use CLIPLoss)" if kind == "clip" else "")
            report.add(
                "config",
                f"InfoNCELoss takes pairs of one modality (each item's partner is its positive), but train_data holds "
                f"{held}; for labelled items use a metric loss such as TripletMarginLoss or NTXentLoss",
            )
        elif config.sampler == "random":
            report.add(
                "config",
                "InfoNCELoss needs both members of a pair in one batch; sampler='random' can split them: use "
                "sampler='auto' (or 'length')",
            )
    return loss


def _modalities(data: LabelledData | PairData) -> tuple[str, ...]:
    return data.modalities


__all__ = ["CheckedData", "ValidationReport", "data_kind", "validate_fit"]

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
from finetuner.data.shapes import LabelledData, ScoredPairData, Shape, TripletData, data_kind
from finetuner.validation.data import check_data
from finetuner.validation.options import check_options
from finetuner.validation.report import ValidationReport


@dataclass
class CheckedData:
    """What the check produced: the task data of train and eval, the loss ``config.loss`` stands for (``'auto'``
    resolved by the data, once, here), and the report (warnings included)."""

    train: Shape
    eval: Shape | None
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
    train_sample: bool = False,
) -> CheckedData:
    """Check every option and every item of ``train_data`` and ``eval_data``; raise once with all problems.

    Args:
        model: what ``fit`` got as ``model``.
        train_data, eval_data: the data in any accepted form (``eval_data`` may be None).
        config: the run's settings.
        callbacks, csv_options, model_options: ``fit``'s arguments of these names.
        fit_only: other ``fit`` arguments to check (``eval_batch_size``, ``limit``, ``to_onnx``, ``verbose``).
        extra_problems: ``(category, message)`` problems found by the caller (e.g. an unusable ``resume_from``).
        train_sample: ``train_data`` is a sample of the rows (streamed data): class counts are the caller's to check.

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
    train = check_data(
        report, train_data, "train_data", csv_options if options_ok else None, train=True, sample=train_sample
    )
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


def _held(train: Shape) -> str:
    """What the training data holds, for messages: 'labelled text items', 'text-image pairs', ..."""
    if isinstance(train, LabelledData):
        return f"labelled {train.modality} items"
    if isinstance(train, TripletData):
        return f"{train.query_modality}-{train.document_modality} triplets"
    kind = "scored pairs" if isinstance(train, ScoredPairData) else "pairs"
    return f"{train.left_modality}-{train.right_modality} {kind}"


def _check_sampler(report: ValidationReport, sampler: Any, train: Shape) -> None:
    """The batch sampler must fit the data: 'length' needs text pairs; text-image pairs, triplets and scored pairs
    take only their own."""
    if not isinstance(sampler, str):
        return  # a wrong type is already reported with the options
    kind = data_kind(train)
    if kind in ("triplets", "scored") and sampler != "auto":
        own = "one row of a duplicate group per batch" if kind == "triplets" else "random batches of pairs"
        report.add(
            "config",
            f"train_data holds {_held(train)}, which are batched by their own sampler ({own}); sampler={sampler!r} "
            "does not apply to them: leave sampler='auto'",
        )
    elif sampler == "length" and not (kind == "pairs" and train.left_modality == "text"):  # type: ignore[union-attr]
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


def _check_loss_for_data(report: ValidationReport, config: TrainingConfig, train: Shape) -> Any:
    """The loss for this data (``loss='auto'`` resolved by it, its options checked against that loss), checked to fit
    the data: CLIPLoss (and only it, without a miner) for text-image pairs; InfoNCELoss for pairs of one modality."""
    from finetuner.losses import loss_class, resolve_loss
    from finetuner.losses.matryoshka import split_options
    from finetuner.validation.options import _check_keys

    kind = data_kind(train)
    loss = resolve_loss(config.loss, kind)
    if isinstance(config.loss, str) and config.loss.lower() == "auto" and isinstance(config.loss_options, dict):
        _check_keys(report, "loss", loss_class(loss), split_options(config.loss_options)[1])
    name = loss if isinstance(loss, str) else type(loss).__name__
    _check_distillation(report, config, train, name)
    if kind in ("triplets", "scored"):
        _check_row_loss(report, config, train, name)
        return loss
    if name.lower() in ("cosentloss", "cosinesimilarityloss"):
        report.add(
            "config",
            f"{name} trains on scored pairs (a, b, score), but train_data holds {_held(train)}; use a loss for "
            "them (loss='auto' picks one)",
        )
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


def _check_distillation(report: ValidationReport, config: TrainingConfig, train: Shape, name: str) -> None:
    """A distillation loss names its teacher; MarginMSE trains on text triplets (the teacher embeds their texts)."""
    if name.lower() not in ("distillmse", "marginmse"):
        return
    options = config.loss_options if isinstance(config.loss_options, dict) else {}
    if options.get("teacher") is None:
        report.add(
            "config",
            f"loss={name!r} needs a teacher: loss_options={{'teacher': MODEL_NAME_OR_FOLDER}} (an alias, hub id or "
            f"folder); received loss_options={config.loss_options!r}",
        )
    if name.lower() != "marginmse":
        return
    from finetuner.losses.distill import SIMILARITIES

    if options.get("similarity", "cosine") not in SIMILARITIES:
        report.add(
            "config",
            f"MarginMSE's loss_options similarity is one of {', '.join(map(repr, SIMILARITIES))}; received "
            f"{options['similarity']!r}",
        )
    if not isinstance(train, TripletData):
        report.add(
            "config",
            "MarginMSE regresses the student's margin sim(query, positive) - sim(query, negative) on the teacher's, "
            f"so it trains on (query, positive, negative) triplet rows; train_data holds {_held(train)} (for plain "
            "texts use loss='DistillMSE')",
        )
    elif {train.query_modality, train.document_modality} != {"text"}:
        report.add("data", f"MarginMSE's teacher embeds texts; train_data holds {_held(train)}")


def _check_row_loss(report: ValidationReport, config: TrainingConfig, train: Shape, name: str) -> None:
    """Triplets train with InfoNCELoss (in-batch, the negatives as extra candidates) or TripletMarginLoss (the
    explicit triplets); scored pairs with CoSENTLoss or CosineSimilarityLoss (scores in [-1, 1]); no miners; one
    model, so one modality."""
    from finetuner.losses import ROW_LOSSES

    kind = data_kind(train)
    held = _held(train)
    valid = ROW_LOSSES[kind]
    if name.lower() not in [v.lower() for v in valid]:
        why = (
            "InfoNCELoss (the default: in-batch negatives plus the explicit negatives), TripletMarginLoss (the "
            "rows' own triplets) or MarginMSE (a teacher's margins)"
            if kind == "triplets"
            else "CoSENTLoss (the default: ranks the pairs as their scores do) or CosineSimilarityLoss (the cosine "
            "regressed on the score)"
        )
        report.add("config", f"train_data holds {held}, which train with {why}; received loss={config.loss!r}")
    if config.miner is not None:
        report.add("config", f"miners pick pairs from labelled batches; {held} carry their own: drop miner=")
    if len(train.modalities) > 1:
        report.add(
            "data",
            f"train_data holds {held}: training rows of two modalities needs one model for both, which finetuner "
            "does not build; train text-image data as CLIP pairs",
        )
    if isinstance(train, ScoredPairData) and name.lower() == "cosinesimilarityloss":
        outside = [i for i, s in enumerate(train.scores) if not -1.0 <= s <= 1.0]
        if outside:
            i = outside[0]
            report.add(
                "data",
                f"train_data row {i} (id {train.ids[i]!r}) has score {train.scores[i]}: CosineSimilarityLoss regresses "
                f"the cosine on the score, so scores must lie in [-1, 1] ({len(outside)} do not); rescale them "
                "(e.g. divide 0-5 scores by 5) or use loss='CoSENTLoss', which needs only their order",
            )


def _modalities(data: Shape) -> tuple[str, ...]:
    return data.modalities


__all__ = ["CheckedData", "ValidationReport", "data_kind", "validate_fit"]

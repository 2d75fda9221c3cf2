"""``fit``'s first phase: check every option and item, and resolve the settings once, before a model is loaded.

:func:`check` gives a :class:`CheckedFit`: the checked data (split when ``val_split`` is set), the callbacks in
running order, the checkpoint a resume continues from, and the run's :class:`~finetuner.config.TrainingConfig`
resolved and frozen: ``loss='auto'`` is the data's loss, ``batch_size=None`` the device's default (at most the
training items). Every later phase reads that config; ``config.yml`` records it.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from finetuner import aliases, artifacts
from finetuner.config import TWO_TOWER_HEAD_LR_FACTOR, TrainingConfig
from finetuner.data.readers import CSVOptions
from finetuner.data.shapes import LabelledData, PairData, ScoredPairData, Shape, TripletData, data_kind
from finetuner.data.streamed import StreamedData
from finetuner.errors import ConfigError, suggest
from finetuner.models.prompts import prompt_data, resolve_prompts
from finetuner.training.callbacks import prepare_callbacks
from finetuner.training.loop import Callback
from finetuner.training.prefetch import fetch_images
from finetuner.training.resume import resolve_resume
from finetuner.training.streaming import index_source, open_source
from finetuner.training.unsupervised import one_view, unsupervised_view
from finetuner.validation import validate_fit
from finetuner.validation.options import DICT_OPTIONS

logger = logging.getLogger("finetuner")



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
    description: str | None = None


@dataclass
class CheckedFit:
    """What the check phase hands on (nothing loaded or built yet).

    Attributes:
        model: the model as ``fit`` got it.
        config: the resolved, frozen settings.
        train: the training data (:class:`~finetuner.data.streamed.StreamedData` when streamed).
        eval: the evaluation data (given, split off, or None).
        options: ``fit``'s other arguments.
        callbacks: the callbacks, checked and in running order.
        checkpoint: the checkpoint folder a resume continues from; ``resumed_run``: that run's folder.
        skipped: the items left out because their remote image could not be fetched (``on_image_error='skip'``).
    """

    model: Any
    config: TrainingConfig
    train: Shape | StreamedData
    eval: Shape | None
    options: FitOptions = field(default_factory=FitOptions)
    callbacks: list[Callback] = field(default_factory=list)
    checkpoint: Path | None = None
    resumed_run: Path | None = None
    skipped: list[str] = field(default_factory=list)

    @property
    def seed(self) -> int:
        """The run's seed (drawn by :func:`resolve_seed` when none was given)."""
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
    settings = {k: v for k, v in settings.items() if not (k in DICT_OPTIONS and v is None)}
    # SimCSE / SimCLR: plain texts or images -> two views of each
    train_data, settings = unsupervised_view(train_data, settings, options.csv_options, options.model_options)
    config = TrainingConfig(model=_model_name(model), **settings)
    checkpoint, resumed_run, resume_problems = resolve_resume(options.resume_from)
    fit_only = {k: getattr(options, k) for k in ("eval_batch_size", "limit", "to_onnx", "verbose")}
    stream = None
    if config.streaming is True:  # the settings first: a bad one is reported before a large file is opened
        config.validate()
        stream = open_source(train_data, options.csv_options, config)
    checked = validate_fit(  # options and data: every problem, all at once, before a model is loaded
        model,
        stream.sample if stream is not None else train_data,  # streamed: the rows checked up front
        eval_data,
        config,
        callbacks=options.callbacks,
        csv_options=options.csv_options,
        model_options=options.model_options,
        fit_only=fit_only,
        extra_problems=resume_problems,
        train_sample=stream is not None,
    )
    if options.to_onnx:
        from finetuner.export.onnx import check_onnx_available

        check_onnx_available()  # before training, not after it
    fetched = fetch_images(checked.train, checked.eval, config, progress=options.verbose)  # remote images, now
    train, evals = one_view(fetched.train, config.loss), fetched.eval  # distillation: each text once
    config = dataclasses.replace(config, seed=resolve_seed(config, checkpoint))
    if stream is not None:  # the whole data: indexed in one pass, every row's cells checked
        train = index_source(stream, train, config)
        if resolve_prompts(artifacts.model_source(model), options.model_options):
            raise ConfigError(
                "streaming=True does not add the model's query/document prompts to the texts yet; train without "
                "streaming, or without prompts (model_options={'prompts': {}})"
            )
        config = resolve(config, checked.loss, train)
        callbacks = prepare_callbacks(options.callbacks, evals)
        return CheckedFit(model, config, train, evals, options, callbacks, checkpoint, resumed_run, fetched.skipped)
    if config.val_split > 0:
        train, evals = split(train, config.val_split, config.seed)  # type: ignore[arg-type]  # resolved: an int
    # query / document prompts: trained with (the evaluations add them as they embed), built into the model
    prompts = resolve_prompts(artifacts.model_source(model), options.model_options)
    train, prompted_evals = prompt_data(train, prompts), prompt_data(evals, prompts) if evals is not None else None
    if prompts or "prompts" in (options.model_options or {}):
        options = dataclasses.replace(options, model_options={**(options.model_options or {}), "prompts": prompts})
    config = resolve(config, checked.loss, train, model)
    callbacks = prepare_callbacks(options.callbacks, prompted_evals)  # their data and monitors, before a model loads
    return CheckedFit(model, config, train, evals, options, callbacks, checkpoint, resumed_run, fetched.skipped)


def resolve(
    config: TrainingConfig, loss: Any, train: Shape | StreamedData, model: Any = None
) -> TrainingConfig:
    """``config`` with the loss the data resolved, ``batch_size=None`` as the device's default, at most the
    training items (a number of pairs for text-image pairs, of rows for triplets and scored pairs, of items for
    the rest; ``'auto'`` stays for the build phase to measure), and the learning rate and schedule that apply
    (``None``: the default rate, a constant schedule), so ``config.yml`` records what the run used. A two-tower
    model built from ``{'text': ..., 'vision': ...}`` trains its new projection heads at ``head_learning_rate``, by
    default :data:`~finetuner.config.TWO_TOWER_HEAD_LR_FACTOR` x the learning rate.

    Example:
        >>> data = LabelledData(['a', 'b', 'c'], [0, 0, 1], ['x', 'y'], ['1', '2', '3'], 'text')
        >>> resolved = resolve(TrainingConfig(device='cpu'), 'TripletMarginLoss', data)
        >>> resolved.batch_size, resolved.learning_rate, resolved.scheduler
        (3, 1e-05, 'constant')
    """
    if isinstance(train, StreamedData) or data_kind(train) in ("clip", "triplets", "scored"):
        n_items = len(train)  # pairs or rows; a streamed index holds its items
    else:
        n_items = len(training_view(train)[0])
    batch_size = config.batch_size
    if batch_size != "auto":
        batch_size = min(int(batch_size or config.default_batch_size()), n_items)
    head_lr = config.head_learning_rate
    if head_lr is None and isinstance(model, dict):  # new heads on pretrained towers (benchmarks/README.md)
        head_lr = TWO_TOWER_HEAD_LR_FACTOR * config.learning_rate_or_default()
    return dataclasses.replace(
        config,
        loss=loss,
        batch_size=batch_size,
        learning_rate=config.learning_rate_or_default(),
        scheduler=config.scheduler or "constant",
        head_learning_rate=head_lr,
    )


def resolve_seed(config: TrainingConfig, checkpoint: Path | None = None) -> int:
    """The run's seed: the given one; for ``seed=None`` the seed of the run being resumed, else a freshly drawn one
    (the same on every process), which ``config.yml`` records so the run can be repeated.

    Example:
        >>> resolve_seed(TrainingConfig(seed=7)), 0 <= resolve_seed(TrainingConfig()) < 2**31
        (7, True)
    """
    if config.seed is not None:
        return int(config.seed)
    if checkpoint is not None:
        from finetuner.training.checkpoint import read_checkpoint_meta

        saved = (read_checkpoint_meta(checkpoint).get("fingerprint") or {}).get("seed")
        return int(saved) if isinstance(saved, int) else 0  # checkpoints before seeds were recorded used 0
    seed = secrets.randbelow(2**31)
    if int(os.environ.get("WORLD_SIZE", "1") or 1) > 1:  # every process must train with rank 0's seed
        from accelerate.utils import broadcast_object_list

        from finetuner.training.loop import make_accelerator

        make_accelerator(config)  # sets up the process group the broadcast needs (build reuses it)
        seed = int(broadcast_object_list([seed])[0])
    logger.info("seed=None: drew seed %d (config.yml records it; pass seed=%d to repeat the run)", seed, seed)
    return seed


def training_view(data: LabelledData | PairData) -> tuple[LabelledData, bool]:
    """The labelled items a metric loss trains on, and whether they are pairs of one modality as classes of two.

    Example:
        >>> training_view(PairData(['q1', 'q2'], ['d1', 'd2'], 'text', 'text', ['0', '1']))[0].labels
        [0, 0, 1, 1]
    """
    if isinstance(data, PairData):
        return data.as_labelled(), True
    return data, False


def split(data: Shape, val_split: float, seed: int) -> tuple[Any, Any]:
    """Hold out ``val_split`` of the data: per class for labelled items (each class keeps 2+ training items); for
    pairs, triplets and scored pairs by duplicate group, so no query or document is on both sides (whole groups are
    held out at random until ``val_split`` of the rows is reached; at least one group held out, two rows kept).

    Example:
        >>> data = LabelledData(list('abcdef'), [0, 0, 0, 1, 1, 1], ['x', 'y'], list('123456'), 'text')
        >>> [len(part) for part in split(data, 0.34, seed=0)]
        [4, 2]
        >>> pairs = PairData(['q1', 'q1', 'q2', 'q3', 'q4'], ['d1', 'd2', 'd3', 'd4', 'd5'], 'text', 'text',
        ...                  list('abcde'))
        >>> [part.left for part in split(pairs, 0.4, seed=0)]
        [['q1', 'q1', 'q4'], ['q2', 'q3']]
    """
    rng = np.random.default_rng(seed)
    if not isinstance(data, LabelledData):
        train_rows, val_rows = _split_groups(data.groups, val_split, rng)  # type: ignore[arg-type]
        return _take_rows(data, train_rows), _take_rows(data, val_rows)
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


def _split_groups(groups: list[int], val_split: float, rng: np.random.Generator) -> tuple[list[int], list[int]]:
    """Rows to keep and rows to hold out, whole groups at a time."""
    members: dict[int, list[int]] = {}
    for row, group in enumerate(groups):
        members.setdefault(group, []).append(row)
    target = min(max(1, round(len(groups) * val_split)), len(groups) - 2)
    held: list[int] = []
    for group in rng.permutation(list(members)):
        rows = members[int(group)]
        if len(held) + len(rows) <= target:  # a group too large for what is left to hold out is skipped
            held += rows
    if not held:  # every group is larger than val_split: hold out the smallest one
        smallest = min(members.values(), key=len)
        held = smallest if len(groups) - len(smallest) >= 2 else []
    kept = sorted(set(range(len(groups))) - set(held))
    return kept, sorted(held)


def _take_rows(data: PairData | TripletData | ScoredPairData, idx: list[int]) -> Any:
    ids = [data.ids[i] for i in idx]
    if isinstance(data, TripletData):
        return TripletData(
            [data.queries[i] for i in idx],
            [data.positives[i] for i in idx],
            [data.negatives[i] for i in idx],
            data.query_modality,
            data.document_modality,
            ids,
        )
    left, right = [data.left[i] for i in idx], [data.right[i] for i in idx]
    if isinstance(data, ScoredPairData):
        return ScoredPairData(left, right, [data.scores[i] for i in idx], data.left_modality, data.right_modality, ids)
    labels = [data.labels[i] for i in idx] if data.labels is not None else None
    return PairData(left, right, data.left_modality, data.right_modality, ids, labels)


def _refuse_unknown(settings: dict[str, Any]) -> None:
    unknown = sorted(set(settings) - set(TrainingConfig.__dataclass_fields__))
    if not unknown:
        return
    fit_only = {f.name for f in dataclasses.fields(FitOptions)} - {"resume_from"}
    valid = [*sorted({*TrainingConfig.__dataclass_fields__, *fit_only}), "eval_data", "resume_from"]
    valid += ["model_artifact", "public", "scheduler_step"]  # Finetuner's, which finetuner.fit translates
    advice = {u: suggest(u, valid, aliases.FIT_OPTIONS) for u in unknown}  # a known alias's advice, or a typo's fix
    hints = [f"{u!r} ({advice[u]})" if advice[u] else repr(u) for u in unknown]
    raise ConfigError(f"fit() got unknown option(s) {', '.join(hints)}; valid options: {', '.join(valid)}")


def _model_name(model: Any) -> str:
    if isinstance(model, (str, Path)):
        return str(model)
    if isinstance(model, dict):
        return "{" + ", ".join(f"{k}: {_model_name(v)}" for k, v in model.items()) + "}"
    return type(model).__name__

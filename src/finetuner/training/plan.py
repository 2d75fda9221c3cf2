"""``fit``'s second phase: decide how the run trains and evaluates, from the checked data and settings alone.

:func:`plan` gives a :class:`FitPlan`: the task (labelled items, pairs of one modality, text-image pairs), the data
as the loader reads it, the batch sampler, the evaluations to run before and after training, and the keys that
fingerprint the data for a resume. No model is needed: the build phase turns the plan into a loader and a loss.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass, field
from typing import Any

from finetuner.data.groups import item_key
from finetuner.data.shapes import LabelledData, PairData, RowData, ScoredPairData, TripletData, data_kind
from finetuner.data.streamed import StreamedData
from finetuner.errors import DataError
from finetuner.evaluation.correlation import ScoredSets
from finetuner.evaluation.model_eval import RetrievalSets, evaluation_sets, retrieval_sets
from finetuner.losses import needs_class_count
from finetuner.losses.distill import is_margin_distillation
from finetuner.training.check import CheckedFit, training_view

#: the batch samplers a plan may choose (``'pairs'``: duplicate-free text-image pairs)
SAMPLER_CHOICES = ("class", "random", "length", "pairs")


@dataclass(frozen=True)
class FitPlan:
    """How one run trains and evaluates.

    Attributes:
        task: ``'labelled'``, ``'pairs'`` (one modality), ``'clip'`` (text-image pairs), ``'triplets'`` or
            ``'scored'``.
        train: the data the loader reads: labelled items (pairs of one modality as classes of two), the pairs, or
            rows (triplets, scored pairs).
        sampler: one of :data:`SAMPLER_CHOICES` (triplets: ``'pairs'``, one row of a duplicate group per batch;
            scored pairs: ``'random'``).
        items_per_class: the class sampler's items per class (2 for pairs as classes).
        evaluations: ``(metric-name prefix, retrieval sets)``: ``''`` for the main direction, ``'image_to_text/'``
            for CLIP's other one.
        keys, key_labels: what identifies the training data (a resume must train on the same).
    """

    task: str
    train: LabelledData | PairData | RowData | StreamedData
    sampler: str
    items_per_class: int
    evaluations: list[tuple[str, RetrievalSets | ScoredSets]] = field(default_factory=list)
    keys: list[Any] = field(default_factory=list)
    key_labels: list[int] = field(default_factory=list)

    def summary(self, batch_size: int) -> str:
        """One line for the run's log.

        Example:
            >>> data = LabelledData(['a', 'b'], [0, 1], ['x', 'y'], ['1', '2'], 'text')
            >>> FitPlan('labelled', data, 'class', 4).summary(2)
            '2 text items, 2 classes, batch size 2'
        """
        if isinstance(self.train, PairData):
            return f"{len(self.train)} text-image pairs, batch size {batch_size}"
        if isinstance(self.train, RowData):
            width = len(self.train.rows[0]) if self.train.rows else 2
            what = f"triplet rows ({width - 2} negatives each)" if self.task == "triplets" else "scored pairs"
            return f"{len(self.train)} {self.train.modality} {what}, batch size {batch_size} rows"
        classes = len(self.train.classes)
        return f"{len(self.train)} {self.train.modality} items, {classes} classes, batch size {batch_size}"


def plan(checked: CheckedFit) -> FitPlan:
    """The plan of a checked run (see the module docstring).

    Example:
        >>> from finetuner.training.check import FitOptions, check
        >>> texts = [('a', 'x'), ('b', 'x'), ('c', 'y'), ('d', 'y')]
        >>> p = plan(check('bert-base-en', texts, texts, {'device': 'cpu'}, FitOptions()))
        >>> p.task, p.sampler, p.items_per_class, [prefix for prefix, _ in p.evaluations]
        ('labelled', 'class', 4, [''])
    """
    if isinstance(checked.train, StreamedData):
        return _streamed_plan(checked, checked.train)
    config, task = checked.config, data_kind(checked.train)
    if task == "clip":
        pairs = checked.train
        assert isinstance(pairs, PairData)  # data_kind 'clip' is text-image pairs
        if config.num_items_per_class != 4:
            warnings.warn("num_items_per_class does not apply to CLIP pairs; ignored", stacklevel=4)
        keys = [repr((item_key(a), item_key(b))) for a, b in zip(pairs.left, pairs.right)]
        evaluations = _clip_evaluations(checked.eval)
        return FitPlan(task, pairs, "pairs", 2, evaluations, keys, list(range(len(keys))))
    evaluations = [("", evaluation_sets(checked.eval))] if checked.eval is not None else []
    if isinstance(checked.train, (TripletData, ScoredPairData)):
        rows = checked.train.as_rows()
        keys = [repr((*(item_key(rows.items[j]) for j in row), *t)) for row, t in zip(rows.rows, rows.targets)]
        if is_margin_distillation(config.loss):  # each member's target: its row's index (of the teacher's margins)
            rows = dataclasses.replace(rows, targets=[(i,) * len(row) for i, row in enumerate(rows.rows)])
        sampler = "pairs" if task == "triplets" else "random"
        return FitPlan(task, rows, sampler, 2, evaluations, keys, list(rows.groups))
    train, pairs_as_classes = training_view(checked.train)
    sampler = config.sampler
    if sampler == "auto":
        sampler = "random" if needs_class_count(config.loss) else "class"
    items_per_class = 2 if pairs_as_classes else config.num_items_per_class
    return FitPlan(task, train, sampler, items_per_class, evaluations, list(train.items), list(train.labels))


def _streamed_plan(checked: CheckedFit, data: StreamedData) -> FitPlan:
    """Streamed labelled texts or text pairs (as classes): the class or random sampler over the index; the data's
    digest stands for its keys in the resume fingerprint (see :mod:`finetuner.training.streaming`)."""
    sampler = checked.config.sampler
    if sampler == "auto":
        sampler = "random" if needs_class_count(checked.config.loss) else "class"
    items_per_class = 2 if data.kind == "pairs" else checked.config.num_items_per_class
    evaluations = [("", retrieval_sets(checked.eval))] if checked.eval is not None else []
    return FitPlan(data.kind, data, sampler, items_per_class, evaluations)


def _clip_evaluations(evaluation: Any) -> list[tuple[str, RetrievalSets | ScoredSets]]:
    """Text-to-image (the main direction) and image-to-text."""
    if evaluation is None:
        return []
    if not isinstance(evaluation, PairData) or {evaluation.left_modality, evaluation.right_modality} != {
        "text",
        "image",
    }:
        raise DataError("eval_data for a CLIP run must be text-image pairs, like train_data")
    return [
        ("", retrieval_sets(evaluation, "left-to-right")),
        ("image_to_text/", retrieval_sets(evaluation, "right-to-left")),
    ]

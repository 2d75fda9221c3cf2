"""Task shapes: what training and evaluation consume, built from a :class:`~finetuner.data.table.Table`.

- :class:`LabelledData`: items with class labels; the same label is relevant.
- :class:`PairData`: positive pairs ``(query, document)`` of one modality, or text-image (CLIP) pairs. Pairs that
  share an item form one *group* (:func:`~finetuner.data.groups.pair_groups`); training treats a group as one class.
- :class:`TripletData`: ``(query, positive, negatives)`` rows, the same number of negatives in every row.
- :class:`ScoredPairData`: ``(a, b, score)`` rows; the score is never dropped.

:func:`~finetuner.data.shaping.to_shape` turns a table into its shape; :func:`data_kind` names a shape for the rest
of the library.

Triplets and scored pairs train as rows (:meth:`TripletData.as_rows`, :meth:`ScoredPairData.as_rows`): every
distinct item once, each row the positions of its items, and per row its targets (the duplicate group of every item
of a triplet row; the score of a scored pair). A batch of rows is embedded as one flat batch, column by column, and
the row losses (:mod:`finetuner.losses.rows`) fold it back.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

from finetuner.data.documents import Document
from finetuner.data.groups import distinct, item_key, pair_groups
from finetuner.data.table import doc_modality

__all__ = [
    "LabelledData",
    "PairData",
    "RowData",
    "ScoredPairData",
    "Shape",
    "TripletData",
    "data_kind",
    "doc_modality",
    "model_input",
]


@dataclass
class LabelledData:
    """Items with integer class codes.

    Attributes:
        items: model inputs: ``str`` for text, the :class:`Document` itself for images (decoded later).
        labels: one class code per item (``classes[code]`` is the user's label).
        classes: the distinct labels in first-seen order.
        ids: the items' ids (used for ``exclude_self``).
        modality: ``'text'`` or ``'image'``.
    """

    items: list[Any]
    labels: list[int]
    classes: list[Hashable]
    ids: list[str]
    modality: str

    def __len__(self) -> int:
        return len(self.items)

    @property
    def modalities(self) -> tuple[str, ...]:
        """The modalities the data holds."""
        return (self.modality,)


@dataclass
class PairData:
    """Positive pairs: ``left[i]`` belongs with ``right[i]``.

    Attributes:
        left, right: model inputs of each side (``str`` or image :class:`Document`).
        left_modality, right_modality: ``'text'`` or ``'image'``.
        ids: the rows' ids.
        labels: optional class labels of the pair roots (evaluation's relevance when present).
        groups: the group of every pair: pairs connected through a shared item share it (computed when None).
    """

    left: list[Any]
    right: list[Any]
    left_modality: str
    right_modality: str
    ids: list[str]
    labels: list[Hashable] | None = None
    groups: list[int] | None = field(default=None)

    def __post_init__(self) -> None:
        if self.groups is None:
            self.groups = pair_groups(
                [item_key(x) for x in self.left],
                [item_key(x) for x in self.right],
                shared=self.left_modality == self.right_modality,
            )

    def __len__(self) -> int:
        return len(self.left)

    @property
    def modalities(self) -> tuple[str, ...]:
        """The modalities the data holds, sorted."""
        return tuple(sorted({self.left_modality, self.right_modality}))

    def as_labelled(self) -> LabelledData:
        """Pairs of one modality as classes: every distinct item once, its class the group of its pairs.

        A text used in several pairs appears once, in the one class of all the pairs it ties together, so no
        batch holds it twice and no pair of the group is a negative of another. Pairs sharing nothing give classes
        of two, in pair order.

        Example:
            >>> p = PairData(['q1', 'q2', 'q1'], ['d1', 'd2', 'd3'], 'text', 'text', ['a', 'b', 'c'])
            >>> p.as_labelled().items, p.as_labelled().labels
            (['q1', 'd1', 'q2', 'd2', 'd3'], [0, 0, 1, 1, 0])
        """
        if self.left_modality != self.right_modality:
            raise ValueError(
                f"pairs of {self.left_modality} and {self.right_modality} need a two-tower (CLIP) model; "
                "a single-modality model takes labelled items or same-modality pairs"
            )
        assert self.groups is not None  # set in __post_init__
        items = [x for pair in zip(self.left, self.right) for x in pair]
        ids = [f"{i}:{side}" for i in self.ids for side in ("0", "1")]
        groups = [g for g in self.groups for _ in (0, 1)]
        keep = distinct([item_key(x) for x in items])
        codes: dict[int, int] = {}
        labels = [codes.setdefault(groups[k], len(codes)) for k in keep]
        kept_items, kept_ids = [items[k] for k in keep], [ids[k] for k in keep]
        return LabelledData(kept_items, labels, list(range(len(codes))), kept_ids, self.left_modality)


@dataclass
class RowData:
    """Rows of items as the row losses train on them.

    Attributes:
        items: every distinct item once (model inputs).
        rows: per row the positions in ``items`` of its members, in column order (query, positive, negatives; or
            left, right).
        targets: per row what the loss needs beside the embeddings: the group of every member of a triplet row
            (-1 for an item that is only ever a negative), or ``(score,)`` for a scored pair.
        groups: the duplicate group of every row (rows sharing a query or positive share it; the batch sampler keeps
            one row of a group per batch).
        modality: the items' modality.
    """

    items: list[Any]
    rows: list[tuple[int, ...]]
    targets: list[tuple[float, ...]]
    groups: list[int]
    modality: str

    def __len__(self) -> int:
        return len(self.rows)


def _positions(members: list[list[Any]]) -> tuple[list[Any], list[tuple[int, ...]]]:
    """Distinct items (by :func:`item_key`) and every row's positions among them."""
    position: dict[Hashable, int] = {}
    items: list[Any] = []
    rows = []
    for row in members:
        out = []
        for item in row:
            key = item_key(item)
            if key not in position:
                position[key] = len(items)
                items.append(item)
            out.append(position[key])
        rows.append(tuple(out))
    return items, rows


def _one_modality(what: str, modalities: tuple[str, ...]) -> str:
    if len(set(modalities)) != 1:
        raise ValueError(f"{what} of {' and '.join(modalities)} items need one model for both; use items of one kind")
    return modalities[0]


@dataclass
class TripletData:
    """``(query, positive, negatives)`` rows; ``negatives[i]`` holds the same number of items in every row.

    Attributes:
        queries, positives: model inputs of the query and its positive.
        negatives: the explicit negatives of every row (a tuple of ``num_negatives`` items).
        query_modality, document_modality: ``'text'`` or ``'image'`` (positives and negatives share one).
        ids: the rows' ids.
        groups: the duplicate group of every row: rows connected through a shared query or positive share one
            (computed when None).
        negative_groups: per row, the group each negative is a query or positive of, -1 when it is only ever a
            negative (computed when None). Both are kept as the items formed them when prompts are put before the
            texts (``dataclasses.replace``), so prefixes do not untie duplicates.
    """

    queries: list[Any]
    positives: list[Any]
    negatives: list[tuple[Any, ...]]
    query_modality: str
    document_modality: str
    ids: list[str]
    groups: list[int] | None = field(default=None)
    negative_groups: list[tuple[int, ...]] | None = field(default=None)

    def __post_init__(self) -> None:
        if self.groups is None:
            shared = self.query_modality == self.document_modality
            queries, positives = [item_key(x) for x in self.queries], [item_key(x) for x in self.positives]
            self.groups = pair_groups(queries, positives, shared=shared)
        if self.negative_groups is None:
            group_of: dict[Hashable, int] = {}
            for q, p, g in zip(self.queries, self.positives, self.groups):
                group_of[item_key(q)] = group_of[item_key(p)] = g
            self.negative_groups = [tuple(group_of.get(item_key(x), -1) for x in row) for row in self.negatives]

    def __len__(self) -> int:
        return len(self.queries)

    @property
    def num_negatives(self) -> int:
        """How many negatives every row has."""
        return len(self.negatives[0]) if self.negatives else 0

    def as_rows(self) -> RowData:
        """The rows for training, each member's target its duplicate group: a query or positive has its row's
        group, a negative the group it is a query or positive of (-1 when it is only ever a negative), so a loss
        can tell a negative that is in fact a positive of the row (a duplicate of its positive) from a true one.

        Example:
            >>> t = TripletData(['q1', 'q2'], ['p1', 'p2'], [('p2',), ('n',)], 'text', 'text', ['a', 'b'])
            >>> rows = t.as_rows()
            >>> rows.items, rows.rows, rows.targets
            (['q1', 'p1', 'p2', 'q2', 'n'], [(0, 1, 2), (3, 2, 4)], [(0, 0, 1), (1, 1, -1)])
        """
        modality = _one_modality("triplets", (self.query_modality, self.document_modality))
        assert self.groups is not None and self.negative_groups is not None  # set in __post_init__
        items, rows = _positions([[q, p, *n] for q, p, n in zip(self.queries, self.positives, self.negatives)])
        targets: list[tuple[float, ...]] = [(g, g, *n) for g, n in zip(self.groups, self.negative_groups)]
        return RowData(items, rows, targets, list(self.groups), modality)

    @property
    def modalities(self) -> tuple[str, ...]:
        """The modalities the data holds, sorted."""
        return tuple(sorted({self.query_modality, self.document_modality}))


@dataclass
class ScoredPairData:
    """``(left, right, score)`` rows: how similar the two items are (0.0 is not a positive).

    Attributes:
        left, right: model inputs of each side.
        scores: one float per row.
        left_modality, right_modality: ``'text'`` or ``'image'``.
        ids: the rows' ids.
    """

    left: list[Any]
    right: list[Any]
    scores: list[float]
    left_modality: str
    right_modality: str
    ids: list[str]

    def __len__(self) -> int:
        return len(self.left)

    @property
    def modalities(self) -> tuple[str, ...]:
        """The modalities the data holds, sorted."""
        return tuple(sorted({self.left_modality, self.right_modality}))

    @property
    def groups(self) -> list[int]:
        """The duplicate group of every pair (pairs sharing an item share one), for splitting without leaks."""
        shared = self.left_modality == self.right_modality
        return pair_groups([item_key(x) for x in self.left], [item_key(x) for x in self.right], shared=shared)

    def as_rows(self) -> RowData:
        """The pairs for training, each row's target its score.

        Example:
            >>> rows = ScoredPairData(['a', 'a'], ['b', 'c'], [0.9, 0.0], 'text', 'text', ['0', '1']).as_rows()
            >>> rows.items, rows.rows, rows.targets
            (['a', 'b', 'c'], [(0, 1), (0, 2)], [(0.9,), (0.0,)])
        """
        modality = _one_modality("scored pairs", (self.left_modality, self.right_modality))
        items, rows = _positions([[a, b] for a, b in zip(self.left, self.right)])
        return RowData(items, rows, [(s,) for s in self.scores], self.groups, modality)


Shape = LabelledData | PairData | TripletData | ScoredPairData


def data_kind(data: Shape) -> str:
    """``'labelled'``, ``'pairs'`` (one modality), ``'clip'`` (text-image pairs), ``'triplets'`` or ``'scored'``:
    what picks ``loss='auto'`` and the training path.

    Example:
        >>> data_kind(PairData(['q'], ['d'], 'text', 'text', ['0']))
        'pairs'
    """
    if isinstance(data, LabelledData):
        return "labelled"
    if isinstance(data, TripletData):
        return "triplets"
    if isinstance(data, ScoredPairData):
        return "scored"
    return "pairs" if data.left_modality == data.right_modality else "clip"


def model_input(doc: Document, modality: str) -> Any:
    """What the model's ``preprocess`` receives for ``doc``: its text, or the Document for an image.

    Example:
        >>> model_input(Document(text='a cat'), 'text')
        'a cat'
    """
    return doc.text if modality == "text" else doc

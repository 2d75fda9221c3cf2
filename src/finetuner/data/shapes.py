"""Task shapes: what training and evaluation consume, built from a :class:`~finetuner.data.table.Table`.

- :class:`LabelledData`: items with class labels; the same label is relevant.
- :class:`PairData`: positive pairs ``(query, document)`` of one modality, or text-image (CLIP) pairs. Pairs that
  share an item form one *group* (:func:`~finetuner.data.groups.pair_groups`); training treats a group as one class.
- :class:`TripletData`: ``(query, positive, negatives)`` rows, the same number of negatives in every row.
- :class:`ScoredPairData`: ``(a, b, score)`` rows; the score is never dropped.

:func:`~finetuner.data.shaping.to_shape` turns a table into its shape; :func:`data_kind` names a shape for the rest
of the library.

How training is to consume triplets and scored pairs (phase 2): a batch of triplets carries its queries, positives
and the ``num_negatives`` negatives of each row as a ``(batch, 1 + num_negatives)`` block of candidates, so in-batch
InfoNCE scores every query against all positives and all negatives of the batch (sentence-transformers'
MultipleNegativesRankingLoss with negative columns), and a gradient cache or a cross-device gather moves the
negatives with their rows; scored pairs carry a ``(batch,)`` score tensor for CoSENT / cosine-similarity losses.
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
class TripletData:
    """``(query, positive, negatives)`` rows; ``negatives[i]`` holds the same number of items in every row.

    Attributes:
        queries, positives: model inputs of the query and its positive.
        negatives: the explicit negatives of every row (a tuple of ``num_negatives`` items).
        query_modality, document_modality: ``'text'`` or ``'image'`` (positives and negatives share one).
        ids: the rows' ids.
    """

    queries: list[Any]
    positives: list[Any]
    negatives: list[tuple[Any, ...]]
    query_modality: str
    document_modality: str
    ids: list[str]

    def __len__(self) -> int:
        return len(self.queries)

    @property
    def num_negatives(self) -> int:
        """How many negatives every row has."""
        return len(self.negatives[0]) if self.negatives else 0

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

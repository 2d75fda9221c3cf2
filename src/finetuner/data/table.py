"""The normalised table every reader produces: rows of cells under named roles.

Whatever the source (Documents, a CSV file, tuples, dicts, a DataFrame, a Hugging Face dataset), reading ends in
one :class:`Table`: a role per column and, per row, one cell per column. Item cells (``item``, ``query``,
``document``, ``negative``) are :class:`~finetuner.data.documents.Document` objects holding text or an image
source; ``label`` cells are hashable labels, ``score`` cells floats. Columns that play no role stay in each row's
``tags``. What the table holds decides its *kind*, and the kind decides the task shape
(:mod:`finetuner.data.shapes`):

=========================================  ==========  ======================================================
roles                                      kind        shape
=========================================  ==========  ======================================================
``item``                                   items       none (unlabelled items, e.g. for ``encode``)
``item, label``                            labelled    :class:`~finetuner.data.shapes.LabelledData`
``query, document``                        pairs       :class:`~finetuner.data.shapes.PairData` (CLIP when
                                                       one side is text and the other images)
``query, document, negative...``           triplets    :class:`~finetuner.data.shapes.TripletData`
``query, document, score``                 scored      :class:`~finetuner.data.shapes.ScoredPairData`
=========================================  ==========  ======================================================
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from finetuner.data.documents import LABEL_TAG, SCORE_TAG, Document, DocumentArray
from finetuner.data.vectors import VECTOR, is_vector

ITEM, LABEL, QUERY, DOCUMENT, NEGATIVE, SCORE = "item", "label", "query", "document", "negative", "score"
ROLES = (ITEM, LABEL, QUERY, DOCUMENT, NEGATIVE, SCORE)
#: the roles whose cells are items (Documents with text or an image), in the order a pair or triplet lists them
ITEM_ROLES = (ITEM, QUERY, DOCUMENT, NEGATIVE)
#: the tag of a chunk that names its role in a pair or triplet root (``'query'``, ``'positive'``, ``'negative'``)
ROLE_TAG = "finetuner_role"


def doc_modality(doc: Document) -> str:
    """``'text'``, ``'image'`` or ``'vector'`` (a 1-D tensor, :mod:`finetuner.data.vectors`): the Document's stated
    modality, else guessed from its content fields (``'unknown'`` without content).

    Example:
        >>> doc_modality(Document(text='hi')), doc_modality(Document(uri='a.png')), doc_modality(Document())
        ('text', 'image', 'unknown')
    """
    if doc.modality in ("text", "image", VECTOR):
        return doc.modality
    if doc.text is not None:
        return "text"
    if is_vector(doc.tensor):
        return VECTOR
    if doc.uri is not None or doc.blob is not None or doc.tensor is not None:
        return "image"
    return "unknown"


class _Missing:
    """A cell the source does not have (a Document without ``tags['finetuner_label']``)."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


@dataclass
class Row:
    """One record: where it came from (for messages), an id, one cell per column and the tags of other columns.

    Attributes:
        where: how messages name the row, e.g. ``"train_data 'train.csv' line 4"`` or
            ``"train_data item 3 (id 'a1')"``.
        id: a unique id (the Document's id; used to exclude an item from its own search results).
        cells: one value per table column (see the module docstring).
        tags: the values of the columns that play no role, by column name.
        source: the Document this row was read from, when it came from one (given back unchanged by
            :func:`~finetuner.data.load_data`).
        names: how messages name this row's cells when they differ from the table's column names (a text-image
            pair stored image first is read text first).
    """

    where: str
    id: str
    cells: tuple[Any, ...]
    tags: dict[str, Any] = field(default_factory=dict)
    source: Document | None = None
    names: tuple[str, ...] | None = None


@dataclass
class Table:
    """Rows under named roles, and how those roles were decided.

    Attributes:
        name: what the data is called in messages (``'train_data'``).
        roles: the role of every column (see :data:`ROLES`); negatives may take several columns.
        columns: how messages name every column, after the row's ``where`` (``", column 'anchor'"``, ``" chunk 1"``;
            ``""`` for a Document's own content).
        rows: the records.
        layout: how the roles were decided, in words (``"the header names anchor, positive, negative"``).

    Example:
        >>> row = Row('item 0', 'a', (Document(text='pencil skirt'), 'skirt'))
        >>> table = Table('data', ('item', 'label'), ('column 1', 'column 2'), [row], 'two columns')
        >>> table.kind, table.num_negatives
        ('labelled', 0)
    """

    name: str
    roles: tuple[str, ...]
    columns: tuple[str, ...]
    rows: list[Row]
    layout: str = ""

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[Row]:
        return iter(self.rows)

    @property
    def kind(self) -> str:
        """``'items'``, ``'labelled'``, ``'pairs'``, ``'triplets'`` or ``'scored'`` (see the module docstring)."""
        if LABEL in self.roles:
            return "labelled"
        if NEGATIVE in self.roles:
            return "triplets"
        if SCORE in self.roles:
            return "scored"
        if QUERY in self.roles:
            return "pairs"
        return "items"

    @property
    def num_negatives(self) -> int:
        """How many negatives every row has (0 unless the table holds triplets)."""
        return self.roles.count(NEGATIVE)

    def where(self, row: Row, column: int) -> str:
        """How messages name one cell: ``"train_data 'a.csv' line 4, column 'negative'"``."""
        return row.where + (row.names or self.columns)[column]

    def index(self, role: str) -> int:
        """The column of ``role`` (the first one for negatives)."""
        return self.roles.index(role)

    def column(self, role: str) -> list[Any]:
        """Every row's cell of ``role`` (the first negative for negatives)."""
        i = self.roles.index(role)
        return [row.cells[i] for row in self.rows]

    def members(self, row: Row) -> list[Document]:
        """The item cells of a pair or triplet row: query, document, then the negatives."""
        return [row.cells[i] for role in (QUERY, DOCUMENT, NEGATIVE) for i in self._at(role)]

    def _at(self, role: str) -> list[int]:
        return [i for i, r in enumerate(self.roles) if r == role]

    def describe(self) -> str:
        """What the table holds, in words, for messages: ``"triplets (query, positive, 2 negatives per row)"``.

        Example:
            >>> Table('data', ('query', 'document', 'score'), ('a', 'b', 'c'), []).describe()
            'scored pairs (query, document, score)'
        """
        kind = self.kind
        if kind == "triplets":
            n = self.num_negatives
            return f"triplets (query, positive, {n} negative{'s' if n > 1 else ''} per row)"
        return {
            "labelled": "labelled items (item, label)",
            "pairs": "pairs (query, document)",
            "scored": "scored pairs (query, document, score)",
            "items": "items without labels",
        }[kind]

    def to_documents(self) -> DocumentArray:
        """The table as Finetuner's Document forms (rows read from Documents give back those Documents).

        Labelled items carry ``tags['finetuner_label']``; pairs, triplets and scored pairs are roots whose chunks
        are the query, the document and the negatives in that order (a scored pair's root carries
        ``tags['finetuner_score']``). The other columns stay in the (root) document's ``tags``.

        Example:
            >>> row = Row('item 0', 'r', (Document(text='q'), Document(text='d'), 0.5))
            >>> root = Table('data', ('query', 'document', 'score'), ('a', 'b', 'c'), [row]).to_documents()[0]
            >>> [c.text for c in root.chunks], root.tags
            (['q', 'd'], {'finetuner_score': 0.5})
        """
        docs = DocumentArray()
        kind = self.kind
        for row in self.rows:
            if row.source is not None:
                docs.append(row.source)
            elif kind in ("items", "labelled"):
                doc = row.cells[self.index(ITEM)]
                doc.tags = dict(row.tags)
                if kind == "labelled":
                    doc.tags[LABEL_TAG] = row.cells[self.index(LABEL)]
                docs.append(doc)
            else:
                tags = dict(row.tags)
                if kind == "scored":
                    tags[SCORE_TAG] = row.cells[self.index(SCORE)]
                docs.append(Document(chunks=self.members(row), tags=tags, id=row.id))
        return docs

"""``Document`` and ``DocumentArray``: the docarray-v1 data model that Finetuner users already write.

Only the fields the training-data page uses are kept: ``id``, ``content`` (which is ``text``, ``blob`` or
``tensor``), ``uri``, ``tags``, ``chunks``, ``modality``, ``embedding`` and ``mime_type`` (plus ``matches`` and
``scores`` for ``match``). Of docarray's methods only the few Finetuner's docs use are here (``summary``,
``batch``, ``match``, ``load_uri_to_blob``; :mod:`finetuner.data.document_ops`). Real docarray v1 objects
(``pip install 'finetuner[docarray]'``) are accepted wherever these are (see :mod:`finetuner.data.readers`).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, SupportsIndex, overload

import numpy as np

from finetuner.data.document_ops import DocumentArrayOps, DocumentOps
from finetuner.errors import InputTypeError

LABEL_TAG = "finetuner_label"
SCORE_TAG = "finetuner_score"


class Document(DocumentOps):
    """One item of training or evaluation data.

    Args:
        content: text (``str``), raw bytes (``bytes``, e.g. an encoded image) or an array (``np.ndarray`` or a
            torch tensor). Sets ``text``, ``blob`` or ``tensor`` accordingly.
        text, blob, tensor: set one content field directly instead of ``content``.
        uri: where the content lives (local path, ``file://``, ``http(s)://`` or a data URI).
        tags: free-form metadata; ``tags['finetuner_label']`` is the class label for training.
        chunks: sub-documents (a CLIP pair is a root with one text and one image chunk).
        modality: ``'text'`` or ``'image'`` for chunks of a cross-modal pair.
        embedding: the vector ``finetuner.encode`` fills in.
        id: a unique id; a random hex id is generated when omitted.

    Example:
        >>> d = Document(content='pencil skirt slim fit', tags={'finetuner_label': 'skirt'})
        >>> d.text, d.tags['finetuner_label']
        ('pencil skirt slim fit', 'skirt')
    """

    __slots__ = (
        "blob",
        "chunks",
        "embedding",
        "id",
        "matches",
        "mime_type",
        "modality",
        "scores",
        "tags",
        "tensor",
        "text",
        "uri",
    )

    def __init__(
        self,
        content: Any = None,
        *,
        text: str | None = None,
        blob: bytes | None = None,
        tensor: Any = None,
        uri: str | None = None,
        tags: dict[str, Any] | None = None,
        chunks: Iterable[Document] | None = None,
        modality: str | None = None,
        embedding: Any = None,
        mime_type: str | None = None,
        id: str | None = None,
    ) -> None:
        self.id: str = str(id) if id is not None else uuid.uuid4().hex
        self.text: str | None = text
        self.blob: bytes | None = blob
        self.tensor: Any = tensor
        self.uri: str | None = uri
        if tags is not None and not isinstance(tags, Mapping):
            raise InputTypeError(
                f"Document tags must be a dict, e.g. tags={{'finetuner_label': 'skirt'}}; received "
                f"{type(tags).__name__} {_short(tags)}"
            )
        self.tags: dict[str, Any] = dict(tags) if tags else {}
        self.chunks: DocumentArray = DocumentArray(chunks) if chunks else DocumentArray()
        self.modality: str | None = modality
        self.embedding: Any = embedding
        self.mime_type: str | None = mime_type
        self.matches: DocumentArray = DocumentArray()
        self.scores: dict[str, Any] = {}
        if content is not None:
            self.content = content

    @property
    def content(self) -> Any:
        """The one content field that is set: ``text``, ``blob`` or ``tensor`` (None when none is)."""
        for value in (self.text, self.blob, self.tensor):
            if value is not None:
                return value
        return None

    @content.setter
    def content(self, value: Any) -> None:
        self.text = self.blob = self.tensor = None
        if value is None:
            return
        if isinstance(value, str):
            self.text = value
        elif isinstance(value, (bytes, bytearray, memoryview)):
            self.blob = bytes(value)
        elif isinstance(value, np.ndarray) or type(value).__module__.startswith("torch"):
            self.tensor = value
        else:
            raise InputTypeError(
                "Document content must be str (text), bytes (blob) or an array (tensor); received "
                f"{type(value).__name__}. Put other values in tags."
            )

    @property
    def content_type(self) -> str | None:
        """``'text'``, ``'blob'`` or ``'tensor'``: which field holds the content."""
        for name in ("text", "blob", "tensor"):
            if getattr(self, name) is not None:
                return name
        return None

    @property
    def label(self) -> Any:
        """Shortcut for ``tags.get('finetuner_label')``."""
        return self.tags.get(LABEL_TAG)

    def __repr__(self) -> str:
        parts = [f"id={self.id[:8]}"]
        if self.text is not None:
            shown = self.text if len(self.text) <= 40 else self.text[:37] + "..."
            parts.append(f"text={shown!r}")
        if self.uri is not None:
            parts.append(f"uri={self.uri!r}")
        if self.blob is not None:
            parts.append(f"blob=<{len(self.blob)} bytes>")
        if self.tensor is not None:
            parts.append(f"tensor=<shape {tuple(getattr(self.tensor, 'shape', ()))}>")
        if self.modality:
            parts.append(f"modality={self.modality!r}")
        if self.tags:
            parts.append(f"tags={self.tags!r}")
        if len(self.chunks):
            parts.append(f"chunks=<{len(self.chunks)}>")
        return f"Document({', '.join(parts)})"


class DocumentArray(DocumentArrayOps, list):
    """A list of :class:`Document` with docarray-v1 conveniences.

    Index by position, slice, a document id, or a list of positions or ids; ``.embeddings`` stacks (or sets)
    the documents' embeddings.

    Ellipsis (``...``) items are dropped, so the placeholder in ``DocumentArray([Document(...), ...])`` (as
    written on Finetuner's training-data page) runs as is. Any other item that is not a :class:`Document`
    raises :class:`~finetuner.errors.InputTypeError` naming its index.

    Example:
        >>> da = DocumentArray([Document(text='a', id='x'), Document(text='b'), ...])
        >>> len(da), da['x'].text, len(da[1:])
        (2, 'a', 1)
        >>> import numpy as np
        >>> da.embeddings = np.eye(2)
        >>> da.embeddings.shape
        (2, 2)
    """

    def __init__(self, docs: Iterable[Document] | None = None) -> None:
        super().__init__()
        if docs is not None:
            self.extend(docs)

    @staticmethod
    def _check(doc: Any, where: str) -> Document:
        if not isinstance(doc, Document):
            raise InputTypeError(
                f"DocumentArray holds Document objects; {where} is {type(doc).__name__} ({_short(doc)}). "
                "Wrap it: Document(content=...), or convert the whole data with "
                "finetuner.data.load_data(...) (which also reads tuples, CSV files, DataFrames and docarray "
                "objects)."
            )
        return doc

    def append(self, doc: Document) -> None:
        if doc is not Ellipsis:
            super().append(self._check(doc, "the appended item"))

    def extend(self, docs: Iterable[Document]) -> None:
        super().extend(self._check(d, f"item {i}") for i, d in enumerate(docs) if d is not Ellipsis)

    def insert(self, index: SupportsIndex, doc: Document) -> None:
        super().insert(index, self._check(doc, "the inserted item"))

    def __iadd__(self, docs: Iterable[Document]) -> DocumentArray:  # type: ignore[override,misc]
        self.extend(docs)
        return self

    def __add__(self, docs: Iterable[Document]) -> DocumentArray:  # type: ignore[override]
        return DocumentArray([*self, *docs])

    def __setitem__(self, key: Any, value: Any) -> None:
        if isinstance(key, slice):
            value = [self._check(d, f"item {i} of the assigned slice") for i, d in enumerate(value)]
        else:
            value = self._check(value, "the assigned item")
        super().__setitem__(key, value)

    @overload
    def __getitem__(self, key: SupportsIndex) -> Document: ...
    @overload
    def __getitem__(self, key: slice) -> DocumentArray: ...
    @overload
    def __getitem__(self, key: str) -> Document: ...
    @overload
    def __getitem__(self, key: Sequence[int] | Sequence[str]) -> DocumentArray: ...

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            for doc in self:
                if doc.id == key:
                    return doc
            raise KeyError(f"no Document with id {key!r} in this DocumentArray of {len(self)}")
        if isinstance(key, slice):
            return DocumentArray(super().__getitem__(key))
        if isinstance(key, (Sequence, np.ndarray)):
            by_id: dict[str, Document] | None = None
            picked = []
            for k in key:
                if isinstance(k, str):
                    if by_id is None:
                        by_id = {d.id: d for d in reversed(self)}
                    if k not in by_id:
                        raise KeyError(f"no Document with id {k!r} in this DocumentArray of {len(self)}")
                    picked.append(by_id[k])
                else:
                    picked.append(super().__getitem__(int(k)))
            return DocumentArray(picked)
        return super().__getitem__(key)

    def __iter__(self) -> Iterator[Document]:
        return super().__iter__()

    @property
    def embeddings(self) -> np.ndarray | None:
        """The embeddings stacked into ``(len, dim)``; None when a document has none."""
        if not self or any(d.embedding is None for d in self):
            return None
        return np.stack([_to_numpy(d.embedding) for d in self])

    @embeddings.setter
    def embeddings(self, value: Any) -> None:
        value = _to_numpy(value)
        if value.ndim != 2 or len(value) != len(self):
            raise ValueError(
                f"embeddings must have shape (len, dim) = ({len(self)}, dim); received shape {value.shape}. "
                "Give one row per document."
            )
        for doc, vec in zip(self, value):
            doc.embedding = vec

    @property
    def texts(self) -> list[str | None]:
        """The ``text`` of every document."""
        return [d.text for d in self]

    def __repr__(self) -> str:
        return f"<DocumentArray (length={len(self)})>"


def _to_numpy(value: Any) -> np.ndarray:
    """An array-like (numpy, torch tensor on any device, nested lists) as a numpy array."""
    if type(value).__module__.startswith("torch"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."

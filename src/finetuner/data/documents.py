"""``Document`` and ``DocumentArray``: the docarray-v1 data model that Finetuner users already write.

Only the fields the training-data page uses are kept: ``id``, ``content`` (which is ``text``, ``blob`` or
``tensor``), ``uri``, ``tags``, ``chunks``, ``modality``, ``embedding`` and ``mime_type``. Real docarray v1
objects are accepted wherever these are (see :mod:`finetuner.data.readers`).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, SupportsIndex, overload

import numpy as np

from finetuner.errors import InputTypeError

LABEL_TAG = "finetuner_label"
SCORE_TAG = "finetuner_score"


class Document:
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

    __slots__ = ("blob", "chunks", "embedding", "id", "mime_type", "modality", "tags", "tensor", "text", "uri")

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
        self.tags: dict[str, Any] = dict(tags) if tags else {}
        self.chunks: DocumentArray = DocumentArray(chunks or [])
        self.modality: str | None = modality
        self.embedding: Any = embedding
        self.mime_type: str | None = mime_type
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
                f"Document content must be str (text), bytes (blob) or an array (tensor); "
                f"received {type(value).__name__}. Put other values in tags."
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


class DocumentArray(list):
    """A list of :class:`Document` with docarray-v1 conveniences.

    Index by position, slice, or a document id; ``.embeddings`` stacks (or sets) the documents' embeddings.

    Example:
        >>> da = DocumentArray([Document(text='a', id='x'), Document(text='b')])
        >>> da['x'].text, len(da[1:])
        ('a', 1)
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
                f"DocumentArray holds Document objects; {where} is {type(doc).__name__}. "
                "Wrap it: Document(content=...). For tuples or CSV files pass them to fit() directly."
            )
        return doc

    def append(self, doc: Document) -> None:
        super().append(self._check(doc, "the appended item"))

    def extend(self, docs: Iterable[Document]) -> None:
        super().extend(self._check(d, f"item {i}") for i, d in enumerate(docs))

    @overload
    def __getitem__(self, key: SupportsIndex) -> Document: ...
    @overload
    def __getitem__(self, key: slice) -> DocumentArray: ...
    @overload
    def __getitem__(self, key: str) -> Document: ...

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            for doc in self:
                if doc.id == key:
                    return doc
            raise KeyError(f"no Document with id {key!r} in this DocumentArray")
        if isinstance(key, slice):
            return DocumentArray(super().__getitem__(key))
        if isinstance(key, Sequence) and not isinstance(key, str):
            return DocumentArray(super(DocumentArray, self).__getitem__(int(i)) for i in key)
        return super().__getitem__(key)

    def __iter__(self) -> Iterator[Document]:
        return super().__iter__()

    @property
    def embeddings(self) -> np.ndarray | None:
        """The embeddings stacked into ``(len, dim)``; None when a document has none."""
        if not self or any(d.embedding is None for d in self):
            return None
        return np.stack([np.asarray(d.embedding) for d in self])

    @embeddings.setter
    def embeddings(self, value: Any) -> None:
        value = np.asarray(value)
        if len(value) != len(self):
            raise ValueError(f"got {len(value)} embeddings for {len(self)} documents")
        for doc, vec in zip(self, value):
            doc.embedding = vec

    @property
    def texts(self) -> list[str | None]:
        """The ``text`` of every document."""
        return [d.text for d in self]

    def __repr__(self) -> str:
        return f"<DocumentArray (length={len(self)})>"

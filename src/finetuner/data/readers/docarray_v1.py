"""Convert real docarray v1 objects (``docarray<0.30``) into our :class:`Document` / :class:`DocumentArray`.

Detection is by module name and attributes, so docarray is never imported here (it need not be installed).
Fields kept: ``id``, ``text``, ``blob``, ``tensor``, ``uri``, ``tags``, ``modality``, ``embedding``,
``mime_type`` and ``chunks`` (recursively). docarray's empty defaults (``''``, ``b''``) become None. Other
docarray fields (``matches``, ``scores``, ``weight``, ...) play no part in fine-tuning and are dropped.
"""

from __future__ import annotations

import copy
from typing import Any

from finetuner.data.documents import Document, DocumentArray
from finetuner.errors import InputTypeError

_FIELDS = ("id", "text", "blob", "tensor", "uri", "tags", "modality", "embedding", "mime_type", "chunks")


def _from_docarray_package(obj: Any) -> bool:
    return type(obj).__module__.split(".")[0] == "docarray"


def is_docarray_document(obj: Any) -> bool:
    """Whether ``obj`` is a docarray v1 ``Document``.

    Example:
        >>> is_docarray_document(Document(text='a'))
        False
    """
    return _from_docarray_package(obj) and all(hasattr(obj, f) for f in _FIELDS)


def is_docarray_array(obj: Any) -> bool:
    """Whether ``obj`` is a docarray v1 ``DocumentArray`` (any storage, ``ChunkArray`` included).

    Example:
        >>> is_docarray_array([])
        False
    """
    return (
        _from_docarray_package(obj)
        and hasattr(obj, "__iter__")
        and type(obj).__name__.startswith(("DocumentArray", "ChunkArray", "MatchArray"))
    )


def _check_version(obj: Any) -> None:
    if _from_docarray_package(obj) and not (is_docarray_document(obj) or is_docarray_array(obj)):
        raise InputTypeError(
            f"received a {type(obj).__module__}.{type(obj).__name__}, which is not a docarray v1 Document or "
            "DocumentArray. Only docarray<0.30 objects convert; with docarray>=0.30 build "
            "finetuner.Document(content=..., tags={'finetuner_label': ...}) objects instead."
        )


def _empty(value: Any) -> bool:
    return value is None or (isinstance(value, (str, bytes)) and len(value) == 0)


def from_docarray_document(doc: Any) -> Document:
    """One docarray v1 Document (chunks included) as our Document; tags are deep-copied.

    Example:
        >>> from docarray import Document as DaDocument  # doctest: +SKIP
        >>> da_doc = DaDocument(text='hi', tags={'finetuner_label': 'a'})  # doctest: +SKIP
        >>> from_docarray_document(da_doc).label  # doctest: +SKIP
        'a'
    """
    _check_version(doc)
    values = {f: getattr(doc, f) for f in _FIELDS if f != "chunks"}
    values = {k: (None if _empty(v) else v) for k, v in values.items()}
    values["tags"] = copy.deepcopy(dict(values["tags"] or {}))
    return Document(**values, chunks=[from_docarray_document(c) for c in doc.chunks])


def from_docarray_array(docs: Any) -> DocumentArray:
    """A docarray v1 DocumentArray as our DocumentArray.

    Example:
        >>> from docarray import DocumentArray as DaArray, Document as DaDocument  # doctest: +SKIP
        >>> len(from_docarray_array(DaArray([DaDocument(text='a')])))  # doctest: +SKIP
        1
    """
    _check_version(docs)
    return DocumentArray(from_docarray_document(d) for d in docs)

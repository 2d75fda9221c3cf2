"""Documents (ours or docarray v1's, converted) -> a :class:`~finetuner.data.table.Table`.

The Document forms (docs/data.md):

- a labelled item: ``Document(content=..., tags={'finetuner_label': L})`` -> a row ``(item, label)``;
- a pair: a root ``Document(chunks=[query, document])`` without content of its own -> ``(query, document)``;
  a text-image (CLIP) pair is read text first, whatever the chunk order;
- a scored pair: the same root with ``tags={'finetuner_score': s}`` -> ``(query, document, score)``; every root
  of the data has a score, or none;
- a triplet: a root with three or more chunks ``[query, positive, negative, ...]`` -> ``(query, document,
  negative, ...)``; every root has the same number of chunks. Chunks may name their role instead of relying on
  their position: ``tags={'finetuner_role': 'query' | 'positive' | 'negative'}`` (``'anchor'`` and
  ``'document'`` also work), on every chunk of the root.

A label on a pair root (``tags['finetuner_label']``) stays in the row's tags; pair evaluation uses it as the
relevance when every root has one. Labelled items and roots cannot mix in one data set.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from finetuner.data.documents import LABEL_TAG, SCORE_TAG, Document, DocumentArray
from finetuner.data.table import (
    DOCUMENT,
    ITEM,
    LABEL,
    MISSING,
    NEGATIVE,
    QUERY,
    ROLE_TAG,
    SCORE,
    Row,
    Table,
    doc_modality,
)
from finetuner.errors import DataError

_ROLE_NAMES = {"query": QUERY, "anchor": QUERY, "positive": DOCUMENT, "document": DOCUMENT, "negative": NEGATIVE}


def is_root(doc: Document) -> bool:
    """Whether ``doc`` is a pair or triplet root: chunks and no content of its own.

    Example:
        >>> is_root(Document(chunks=[Document(text='q'), Document(text='d')])), is_root(Document(text='a'))
        (True, False)
    """
    return len(doc.chunks) > 0 and doc.content is None and doc.uri is None


def where(name: str, i: int, doc: Document) -> str:
    """How messages name a Document.

    Example:
        >>> where('train_data', 3, Document(uri='x.png', id='a1'))
        "train_data item 3 (id 'a1', uri 'x.png')"
    """
    text = f"{name} item {i} (id {doc.id!r}"
    if isinstance(doc.uri, str) and doc.uri:
        text += f", uri {doc.uri[:80]!r}"
    return text + ")"


def table_from_documents(docs: DocumentArray, name: str) -> Table:
    """One row per Document (rules in the module docstring); every structural problem reported in one error.

    Example:
        >>> da = DocumentArray([Document(chunks=[Document(text='q'), Document(text='p'), Document(text='n')])])
        >>> table_from_documents(da, 'data').describe()
        'triplets (query, positive, 1 negative per row)'
    """
    roots = [is_root(d) for d in docs]
    if any(roots) and not all(roots):
        first = roots.index(True) if not roots[0] else roots.index(False)
        raise DataError(
            f"{name} mixes pair documents (with chunks) and labelled documents, first at item {first}; "
            "use one form for the whole data set"
        )
    if not all(roots) or not docs:
        rows = [
            Row(where(name, i, d), d.id, (d, _tags(d).get(LABEL_TAG, MISSING)), _tags(d), d)
            for i, d in enumerate(docs)
        ]
        return Table(name, (ITEM, LABEL), ("", ""), rows, "labelled Documents (tags['finetuner_label'])")
    return _roots(docs, name)


def _tags(doc: Document) -> dict[str, Any]:
    return doc.tags if isinstance(doc.tags, dict) else {}


def _roots(docs: DocumentArray, name: str) -> Table:
    problems: list[str] = []
    counts = [len(d.chunks) for d in docs]
    width = Counter(c for c in counts if c >= 2).most_common(1)[0][0] if any(c >= 2 for c in counts) else 2
    scored = [SCORE_TAG in _tags(d) for d in docs]
    score = width == 2 and any(scored)
    rows: list[Row] = []
    for i, root in enumerate(docs):
        at = where(name, i, root)
        if counts[i] != width:
            if width == 2:
                problems.append(
                    f"{at}: a pair needs exactly 2 chunks; found {counts[i]} (a root of 3 or more chunks is a "
                    "triplet: query, positive, negatives; give every root the same number of chunks)"
                )
            else:
                problems.append(
                    f"{at}: {counts[i]} chunk(s), but the other roots are triplets of {width} (query, positive, "
                    f"{width - 2} negative(s)); give every root the same number of chunks"
                )
            continue
        if score and not scored[i]:
            problems.append(
                f"{at}: no tags['{SCORE_TAG}'], but other pairs have one; give every pair a score, or none"
            )
            continue
        try:
            order = _chunk_order(root, at)
        except DataError as exc:
            problems.append(str(exc))
            continue
        chunks = [root.chunks[c] for c in order]
        if width == 2 and doc_modality(chunks[0]) == "image" and doc_modality(chunks[1]) == "text":
            order.reverse()  # a text-image pair is read text first
            chunks.reverse()
        cells: tuple[Any, ...] = (*chunks, _tags(root)[SCORE_TAG]) if score else tuple(chunks)
        names = tuple(f" chunk {c}" for c in order) + ((f" tags['{SCORE_TAG}']",) if score else ())
        rows.append(Row(at, root.id, cells, _tags(root), root, names))
    if problems:
        raise DataError(f"{name} has {len(problems)} problem(s):\n  " + "\n  ".join(problems), problems)
    roles = (QUERY, DOCUMENT, *[NEGATIVE] * (width - 2)) + ((SCORE,) if score else ())
    columns = tuple(f" chunk {c}" for c in range(width)) + ((f" tags['{SCORE_TAG}']",) if score else ())
    kind = "roots with 2 chunks" + (" and tags['finetuner_score']" if score else "") if width == 2 else (
        f"roots with {width} chunks (query, positive, negatives)"
    )
    return Table(name, roles, columns, rows, kind)


def _chunk_order(root: Document, at: str) -> list[int]:
    """The chunks in role order (query, positive, negatives): by ``tags['finetuner_role']`` when given, else as
    listed."""
    roles = [_tags(c).get(ROLE_TAG) for c in root.chunks]
    if all(r is None for r in roles):
        return list(range(len(roles)))
    canon = [_ROLE_NAMES.get(str(r).strip().lower()) if r is not None else None for r in roles]
    if None in canon:
        bad = canon.index(None)
        raise DataError(
            f"{at} chunk {bad}: tags['{ROLE_TAG}'] is {roles[bad]!r}; when one chunk names its role, every chunk "
            "does: 'query' (or 'anchor'), 'positive' (or 'document') or 'negative'"
        )
    if canon.count(QUERY) != 1 or canon.count(DOCUMENT) != 1:
        raise DataError(
            f"{at}: the chunks' roles are {roles}; a root needs exactly one 'query' and one 'positive' chunk "
            "(and any number of 'negative' chunks)"
        )
    order = [canon.index(QUERY), canon.index(DOCUMENT)]
    return order + [c for c, r in enumerate(canon) if r == NEGATIVE]


__all__ = ["is_root", "table_from_documents", "where"]

"""Table -> task shape (:mod:`finetuner.data.shapes`): the one place that decides what a table trains as.

:func:`to_shape` checks the table's structure row by row and raises one :class:`~finetuner.errors.DataError`
listing every problem: a labelled item without a usable label or content, a mix of text and image items, pairs of
different kinds, a pair whose two members are the same item, a negative equal to its row's query or positive (or
paired with that query as a positive in another row), a score that is not a finite number. Content (empty text,
missing image files, NaN tensors) is checked by :mod:`finetuner.validation.data`.
"""

from __future__ import annotations

import math
from collections.abc import Hashable
from typing import Any

from finetuner.data.documents import LABEL_TAG
from finetuner.data.groups import item_key
from finetuner.data.shapes import LabelledData, PairData, ScoredPairData, Shape, TripletData, model_input
from finetuner.data.table import DOCUMENT, ITEM, LABEL, MISSING, NEGATIVE, QUERY, SCORE, Row, Table, doc_modality
from finetuner.errors import DataError


def to_shape(table: Table) -> Shape:
    """The task shape of ``table``: labelled items, pairs, triplets or scored pairs.

    Example:
        >>> from finetuner.data.readers import read_table
        >>> to_shape(read_table([('a red skirt', 'skirt'), ('a blue skirt', 'skirt')])).classes
        ['skirt']
        >>> triplets = to_shape(read_table([('q', 'p', 'n1', 'n2')]))
        >>> triplets.positives, triplets.negatives
        (['p'], [('n1', 'n2')])
    """
    name = table.name
    if len(table) == 0:
        raise DataError(f"{name} is empty: give at least two classes with two items each (or two pairs)")
    kind = table.kind
    if kind == "items":
        raise DataError(
            f"{name} holds {len(table)} items without labels ({table.layout}); training and evaluation need labelled "
            "items (Document tags['finetuner_label'], (item, label) tuples, a label column), pairs or triplets"
        )
    problems: list[str] = []
    shape = _labelled(table, problems) if kind == "labelled" else _rows(table, problems)
    if problems:
        raise DataError(f"{name} has {len(problems)} problem(s):\n  " + "\n  ".join(problems), problems)
    assert shape is not None  # no problems: built
    return shape


def read_shape(data: Any, csv_options: Any = None, *, name: str = "data") -> Shape:
    """Read ``data`` of any accepted form (:func:`~finetuner.data.readers.read_table`) and shape it.

    Example:
        >>> read_shape([('a red skirt', 'skirt'), ('a blue skirt', 'skirt')]).classes
        ['skirt']
    """
    from finetuner.data.readers import read_table

    return to_shape(read_table(data, csv_options, name=name))


def usable_label(label: Any) -> bool:
    """Hashable (a tuple holding a list is not), not None and not NaN (NaN != NaN would make a class per item).

    Example:
        >>> usable_label('skirt'), usable_label(float('nan')), usable_label(['a'])
        (True, False, False)
    """
    if label is None or (isinstance(label, float) and label != label):
        return False
    try:
        hash(label)
    except TypeError:
        return False
    return True


def _labelled(table: Table, problems: list[str]) -> LabelledData | None:
    item_at, label_at = table.index(ITEM), table.index(LABEL)
    modalities: set[str] = set()
    first: dict[str, str] = {}  # modality -> where its first item is (named when kinds are mixed)
    codes: dict[Hashable, int] = {}
    labels: list[int] = []
    for row in table:
        where = row.where
        if row.source is not None and not isinstance(row.source.tags, dict):
            problems.append(f"{where}: tags must be a dict; received {type(row.source.tags).__name__}")
            continue
        label = row.cells[label_at]
        if label is MISSING:
            problems.append(f"{where}: no tags['{LABEL_TAG}']; every item of labelled data needs a label")
            continue
        if not usable_label(label):
            problems.append(f"{where}: label {label!r:.60} is not a usable label (use a str or int)")
            continue
        labels.append(codes.setdefault(label, len(codes)))
        modality = doc_modality(row.cells[item_at])
        if modality == "unknown":
            problems.append(f"{table.where(row, item_at) or where}: no content; set text, uri, blob or tensor")
        modalities.add(modality)
        first.setdefault(modality, _described(where, row.cells[item_at], modality))
    if len(modalities - {"unknown"}) > 1:
        present = [m for m in ("text", "image", "vector") if m in modalities]
        examples = "; ".join(first[m] for m in present)
        problems.append(
            f"{table.name} mixes {' and '.join(present)} items ({examples}); a single-modality model takes one kind"
        )
    if problems:
        return None
    modality = (modalities - {"unknown"}).pop()
    items = [model_input(row.cells[item_at], modality) for row in table]
    return LabelledData(items, labels, list(codes), [row.id for row in table], modality)


def _rows(table: Table, problems: list[str]) -> Shape | None:
    """Pairs, triplets and scored pairs: one modality per role, distinct members, finite scores."""
    members = [i for i, r in enumerate(table.roles) if r in (QUERY, DOCUMENT, NEGATIVE)]
    kinds: set[tuple[str, str]] = set()
    good: list[Row] = []
    for row in table:
        mods = [doc_modality(row.cells[i]) for i in members]
        if "unknown" in mods:
            problems.append(f"{table.where(row, members[mods.index('unknown')])} has no content")
            continue
        if len(set(mods[1:])) > 1:
            odd = next(m for m in mods[2:] if m != mods[1])
            problems.append(
                f"{row.where}: the positive is {mods[1]} but a negative is {odd}; the positive and the negatives of "
                "a row are of one modality"
            )
            continue
        kinds.add((mods[0], mods[1]))
        problem = _same_items(table, row, members)
        if problem:
            problems.append(problem)
            continue
        if SCORE in table.roles:
            score = row.cells[table.index(SCORE)]
            if isinstance(score, bool) or not isinstance(score, (int, float)) or not math.isfinite(score):
                at = table.where(row, table.index(SCORE))
                problems.append(f"{at} must be a finite number; received {score!r:.40}")
                continue
        good.append(row)
    if len(kinds) > 1:
        problems.append(f"{table.name} mixes pair kinds {sorted(kinds)}; use one kind of pair throughout")
    if table.kind == "triplets":
        problems += _contradictions(table, good)
    if problems:
        return None
    (lm, rm) = kinds.pop()
    q_at, d_at = table.index(QUERY), table.index(DOCUMENT)
    left = [model_input(row.cells[q_at], lm) for row in table]
    right = [model_input(row.cells[d_at], rm) for row in table]
    ids = [row.id for row in table]
    if table.kind == "triplets":
        negatives = [tuple(model_input(row.cells[i], rm) for i in members[2:]) for row in table]
        return TripletData(left, right, negatives, lm, rm, ids)
    if table.kind == "scored":
        scores = [float(row.cells[table.index(SCORE)]) for row in table]
        return ScoredPairData(left, right, scores, lm, rm, ids)
    labels = [row.tags.get(LABEL_TAG) for row in table]
    return PairData(left, right, lm, rm, ids, labels if all(x is not None for x in labels) else None)


def _same_items(table: Table, row: Row, members: list[int]) -> str | None:
    """A row whose query and positive, or a negative and the query or positive, are the same item."""
    keys = [item_key(row.cells[i]) for i in members]
    if keys[0] == keys[1]:
        what = "pair" if table.kind != "triplets" else "triplet"
        return (
            f"{row.where}: the query and the positive are the same item ({_show(row.cells[members[0]])}); a {what} "
            "needs two different items"
        )
    for j, key in enumerate(keys[2:], start=2):
        if key in (keys[0], keys[1]):
            same = "query" if key == keys[0] else "positive"
            return (
                f"{table.where(row, members[j])}: the negative is the same as the row's {same} "
                f"({_show(row.cells[members[j]])}); a negative must differ from the query and the positive"
            )
    return None


def _contradictions(table: Table, rows: list[Row]) -> list[str]:
    """A negative that another row pairs with the same query as its positive."""
    q_at, d_at = table.index(QUERY), table.index(DOCUMENT)
    negatives = [i for i, r in enumerate(table.roles) if r == NEGATIVE]
    positives: dict[tuple[Hashable, Hashable], str] = {}
    for row in rows:
        positives.setdefault((item_key(row.cells[q_at]), item_key(row.cells[d_at])), row.where)
    out = []
    for row in rows:
        query = item_key(row.cells[q_at])
        for i in negatives:
            other = positives.get((query, item_key(row.cells[i])))
            if other is not None:
                out.append(
                    f"{table.where(row, i)}: the negative {_show(row.cells[i])} is a positive of the same query in "
                    f"{other}; a negative must not be paired with its query"
                )
    return out


def _show(doc: Any) -> str:
    value = doc.text if doc.text is not None else (doc.uri or f"<{doc.content_type}>")
    text = repr(value)
    return text if len(text) <= 50 else text[:47] + "..."


def _described(where: str, doc: Any, modality: str) -> str:
    """``where`` and what the item is, for a message about mixed kinds (a tensor's shape: 1-D is a vector)."""
    tensor = getattr(doc, "tensor", None)
    shape = f" (a tensor; received shape {tuple(getattr(tensor, 'shape', ()))})" if tensor is not None else ""
    return f"{where} is a {modality} item{shape}"

"""In-memory rows -> a :class:`~finetuner.data.table.Table`: lists of tuples, dicts or plain items, pandas
DataFrames and Hugging Face datasets.

Tuples have no column names, so their own rules apply (:mod:`finetuner.data.schema`): ``(item, label)``, a
text-image pair when every second element is an image source, ``(a, b, score)`` with a number third, and
``(anchor, positive, negative, ...)``. Dicts, DataFrames and datasets have names: the names decide, as for a CSV
file with a header. A list of plain items (texts, image paths, bytes, arrays) gives unlabelled items.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from finetuner.data.documents import Document
from finetuner.data.items import item_fields
from finetuner.data.options import CSVOptions
from finetuner.data.readers.rows import RowProblems, sample, table_from_rows
from finetuner.data.table import ITEM, Row, Table
from finetuner.errors import DataError, InputTypeError


def is_dataframe(data: Any) -> bool:
    """Whether ``data`` is a pandas DataFrame (pandas is not imported).

    Example:
        >>> is_dataframe([('a', 'b')])
        False
    """
    return type(data).__module__.startswith("pandas") and hasattr(data, "columns") and hasattr(data, "itertuples")


def is_dataset(data: Any) -> bool:
    """Whether ``data`` looks like a Hugging Face dataset (``column_names`` and iteration over dict rows).

    Example:
        >>> is_dataset([('a', 'b')])
        False
    """
    return hasattr(data, "column_names") and hasattr(data, "__iter__") and not isinstance(data, (str, bytes))


def table_from_dataframe(frame: Any, options: CSVOptions | None, name: str) -> Table:
    """A DataFrame's rows, columns by name; rows are named by the frame's index (``train_data row 5``).

    Example:
        >>> import pandas as pd
        >>> table_from_dataframe(pd.DataFrame({'query': ['q'], 'document': ['d']}), None, 'data').kind
        'pairs'
    """
    names = [str(c) for c in frame.columns]
    rows = (
        (f"{name} row {index}", values) for index, values in zip(frame.index, frame.itertuples(index=False, name=None))
    )
    return table_from_rows(rows, len(names), names, options, name=name, base_dir=Path.cwd())


def table_from_dataset(dataset: Any, options: CSVOptions | None, name: str) -> Table:
    """A Hugging Face dataset's rows (a streaming one too), columns by feature name.

    Example:
        >>> from datasets import Dataset
        >>> table_from_dataset(Dataset.from_dict({'sentence1': ['a'], 'sentence2': ['b'], 'score': [0.5]}), None,
        ...                    'data').kind
        'scored'
    """
    names = dataset.column_names
    if isinstance(names, dict):
        raise InputTypeError(
            f"{name}: received a dataset dictionary with splits {', '.join(map(str, names))}; pass one "
            f"split, e.g. data[{next(iter(names), 'train')!r}]."
        )
    rows: Iterator[Any] = iter(dataset)
    if names is None:  # a streaming dataset: take the names from the first row
        first = next(rows, None)
        if first is None:
            return Table(name, (), (), [])
        names = list(first)
        rows = itertools.chain([first], rows)
    names = [str(n) for n in names]
    return table_from_rows(
        ((f"{name} row {i}", [row[n] for n in names]) for i, row in enumerate(rows)),
        len(names),
        names,
        options,
        name=name,
        base_dir=Path.cwd(),
    )


def list_kind(item: Any) -> str:
    """``'tuple'``, ``'dict'`` or ``'item'``: the form of one element of a list of rows.

    Example:
        >>> list_kind(('a', 'b')), list_kind({'text': 'a'}), list_kind({'bytes': b'', 'path': 'a.png'})
        ('tuple', 'dict', 'item')
    """
    if isinstance(item, (tuple, list)):
        return "tuple"
    if isinstance(item, dict) and not ("bytes" in item and "path" in item):  # a Hugging Face image dict is an item
        return "dict"
    return "item"


def table_from_list(indexed: list[tuple[int, Any]], kind: str, options: CSVOptions | None, name: str) -> Table:
    """A list of tuples, dicts or plain items (``indexed``: ``(position, element)``, all of one ``kind``).

    Example:
        >>> table_from_list([(0, ('q', 'p', 'n'))], 'tuple', None, 'data').roles
        ('query', 'document', 'negative')
    """
    if kind == "dict":
        return _from_dicts(indexed, options, name)
    if kind == "item":
        return _from_items(indexed, options, name)
    widths = {len(cells) for _, cells in indexed}
    if len(widths) > 1:
        first = len(indexed[0][1])
        i, odd = next((i, cells) for i, cells in indexed if len(cells) != first)
        raise DataError(
            f"{name} item {i}: a tuple of {len(odd)} elements, but item {indexed[0][0]} has {first}; give every "
            "tuple the same length: (item, label), (a, b, score) or (anchor, positive, negative, ...)."
        )
    width = widths.pop()
    if width < 2:
        raise DataError(
            f"{name} item {indexed[0][0]}: found {width} column (a tuple of {width} element); a tuple needs two or "
            "more: (item, label), (query, document), (a, b, score) or (anchor, positive, negative, ...)."
        )
    rows = ((f"{name} item {i}", cells) for i, cells in indexed)
    return table_from_rows(rows, width, None, options, name=name, base_dir=Path.cwd(), tuples=True)


def _from_items(indexed: list[tuple[int, Any]], options: CSVOptions | None, name: str) -> Table:
    blob = bool(options and options.convert_to_blob)
    problems = RowProblems()  # every bad item is reported, in one error
    table = Table(name, (ITEM,), ("",), [], "plain items")
    for where, (x,) in sample(((f"{name} item {i}", (x,)) for i, x in indexed), options):
        try:
            doc = Document(**item_fields(x, where=where, base_dir=Path.cwd(), convert_to_blob=blob)[0])
            table.rows.append(Row(where, doc.id, (doc,)))
        except DataError as exc:
            problems.add(exc)
    problems.raise_if_any()
    return table


def _from_dicts(indexed: list[tuple[int, Any]], options: CSVOptions | None, name: str) -> Table:
    names = list(indexed[0][1])
    expected = set(names)
    for i, row in indexed:
        if set(row) != expected:
            missing, extra = sorted(map(str, expected - set(row))), sorted(map(str, set(row) - expected))
            raise DataError(
                f"{name} item {i}: keys {sorted(map(str, row))} differ from item {indexed[0][0]}'s "
                f"{sorted(names)} (missing: {missing or 'none'}, extra: {extra or 'none'}); give every dict "
                "the same keys."
            )
    rows = ((f"{name} item {i}", [row[n] for n in names]) for i, row in indexed)
    return table_from_rows(rows, len(names), [str(n) for n in names], options, name=name, base_dir=Path.cwd())


def short(value: Any, limit: int = 50) -> str:
    """``repr(value)``, cut to ``limit`` characters.

    Example:
        >>> short('x' * 80, 10)
        "'xxxxxx..."
    """
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


__all__: Sequence[str] = [
    "is_dataframe",
    "is_dataset",
    "list_kind",
    "short",
    "table_from_dataframe",
    "table_from_dataset",
    "table_from_list",
]

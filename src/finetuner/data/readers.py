"""Turn whatever the user passes as data into a :class:`~finetuner.data.documents.DocumentArray`.

Accepted forms (:func:`load_data`):

- our ``DocumentArray`` (returned as is), our ``Document``, or a list/tuple of Documents (ours and docarray's
  may mix; ours are not copied);
- real docarray v1 (``docarray<0.30``) ``DocumentArray`` or ``Document`` objects, converted field by field
  (:mod:`finetuner.data.docarray_interop`);
- a CSV file path (``str`` or ``pathlib.Path``) read with :class:`CSVOptions`
  (:mod:`finetuner.data.csv_reader`);
- a list of tuples (or lists): ``(item, label)``, ``(a, b)`` pairs or ``(a, b, score)`` scored pairs. Without
  ``csv_options`` a 2-tuple is a CLIP pair when its *second* element is an image source (path, URL, data URI,
  bytes, array) and ``(item, label)`` otherwise; ``CSVOptions(is_labeled=False)`` reads every 2-tuple as a
  pair (``(query, document)`` texts, or text and image in either order), ``CSVOptions(is_labeled=True)`` every
  2-tuple as ``(item, label)``. A 3-tuple is always a scored pair;
- a list of dicts with the same keys, e.g. ``{'text': ..., 'label': ...}``: columns by name;
- a list of plain items (texts, image paths/URLs, bytes, arrays): unlabelled Documents (e.g. index data);
- a pandas ``DataFrame`` or a Hugging Face ``datasets.Dataset``: columns by name, like a CSV file with a
  header.

The column and row rules are in :mod:`finetuner.data.rows`, the item rules (text or image) in
:mod:`finetuner.data.items`. Ellipsis (``...``) items in lists are dropped, like :class:`DocumentArray` does.
``CSVOptions`` ``size``, ``sampling_rate``, ``is_labeled``, ``columns`` and ``convert_to_blob`` apply to all
row-shaped forms; Documents and DocumentArrays are taken as they are.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from finetuner.data.csv_reader import read_csv
from finetuner.data.docarray_interop import (
    from_docarray_array,
    from_docarray_document,
    is_docarray_array,
    is_docarray_document,
)
from finetuner.data.documents import Document, DocumentArray
from finetuner.data.items import item_fields
from finetuner.data.options import CSVOptions
from finetuner.data.rows import Layout, RowProblems, documents_from_rows, plan_columns, row_document, sample
from finetuner.errors import DataError, InputTypeError

__all__ = ["CSVOptions", "load_data"]

ACCEPTED_FORMS = (
    "a finetuner DocumentArray or list of Documents, a docarray<0.30 DocumentArray, a CSV file path, a list "
    "of (item, label) or (text, image) tuples, a list of dicts, a pandas DataFrame or a Hugging Face "
    "datasets.Dataset"
)


def load_data(data: Any, csv_options: CSVOptions | None = None, *, name: str = "data") -> DocumentArray:
    """Convert user data of any accepted form into our DocumentArray (forms and rules: module docstring).

    Args:
        data: the data in any accepted form.
        csv_options: how to read row-shaped data (a CSV path, tuples, dicts, DataFrames, datasets); None reads
            CSV files with the defaults and decides labelled/pairs from the column names and rows.
        name: what to call the data in error messages (``'train_data'``, ``'eval_data'``).

    Raises:
        InputTypeError: ``data`` (or an item of a list) is of a form not accepted.
        DataError: a row, field or file cannot be read; the message names the item, row or CSV line.

    Example:
        >>> da = load_data([('pencil skirt', 'skirt'), ('striped shirt', 'shirt')])
        >>> da[0].text, da[0].tags['finetuner_label']
        ('pencil skirt', 'skirt')
        >>> pair = load_data([('a red apple', 'https://example.org/apple.png')])[0]
        >>> [(c.modality, c.text or c.uri) for c in pair.chunks]
        [('text', 'a red apple'), ('image', 'https://example.org/apple.png')]
    """
    if isinstance(data, DocumentArray):
        return data
    if isinstance(data, Document):
        return DocumentArray([data])
    if is_docarray_array(data):
        return from_docarray_array(data)
    if is_docarray_document(data):
        return DocumentArray([from_docarray_document(data)])
    if isinstance(data, (str, os.PathLike)):
        return read_csv(data, csv_options, name=name)
    if _is_dataframe(data):
        return _from_dataframe(data, csv_options, name)
    if _is_dataset(data):
        return _from_dataset(data, csv_options, name)
    if isinstance(data, (list, tuple)):
        return _from_list(data, csv_options, name)
    if type(data).__module__.split(".")[0] == "docarray":
        from_docarray_document(data)  # raises the docarray>=0.30 hint
    raise InputTypeError(f"{name}: cannot read a {_type_name(data)}; give {ACCEPTED_FORMS}.")


def _type_name(obj: Any) -> str:
    module = type(obj).__module__
    plain = module == "builtins" or module.startswith("finetuner.")
    return type(obj).__name__ if plain else f"{module}.{type(obj).__name__}"


def _is_dataframe(data: Any) -> bool:
    return (
        type(data).__module__.startswith("pandas")
        and hasattr(data, "columns")
        and hasattr(data, "itertuples")
    )


def _is_dataset(data: Any) -> bool:
    return hasattr(data, "column_names") and hasattr(data, "__iter__") and not isinstance(data, (str, bytes))


def _from_dataframe(frame: Any, options: CSVOptions | None, name: str) -> DocumentArray:
    names = [str(c) for c in frame.columns]
    layout = plan_columns(len(names), names, options, what=name)
    rows = (
        (f"{name} row {index}", values)
        for index, values in zip(frame.index, frame.itertuples(index=False, name=None))
    )
    return documents_from_rows(rows, layout, options, base_dir=Path.cwd())


def _from_dataset(dataset: Any, options: CSVOptions | None, name: str) -> DocumentArray:
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
            return DocumentArray()
        names = list(first)
        rows = itertools.chain([first], rows)
    names = [str(n) for n in names]
    layout = plan_columns(len(names), names, options, what=name)
    return documents_from_rows(
        ((f"{name} row {i}", [row[n] for n in names]) for i, row in enumerate(rows)),
        layout,
        options,
        base_dir=Path.cwd(),
    )


def _kind(item: Any) -> str:
    if isinstance(item, Document) or is_docarray_document(item):
        return "Document"
    if isinstance(item, (tuple, list)):
        return "tuple"
    if isinstance(item, dict) and not ("bytes" in item and "path" in item):
        return "dict"
    return "item"


def _from_list(data: Sequence[Any], options: CSVOptions | None, name: str) -> DocumentArray:
    indexed = [(i, x) for i, x in enumerate(data) if x is not Ellipsis]
    if not indexed:
        return DocumentArray()
    kind = _kind(indexed[0][1])
    for i, item in indexed:
        if _kind(item) != kind:
            raise InputTypeError(
                f"{name} item {i}: a {_type_name(item)} ({_short(item)}) in a list of {kind}s (item "
                f"{indexed[0][0]} is a {_type_name(indexed[0][1])}); all items of a list must be of one "
                "form: Documents, tuples, dicts or plain items (texts, image paths)."
            )
    if kind == "Document":
        return DocumentArray(x if isinstance(x, Document) else from_docarray_document(x) for _, x in indexed)
    if kind == "dict":
        return _from_dicts(indexed, options, name)
    blob = bool(options and options.convert_to_blob)
    problems = RowProblems()  # every bad item is reported, in one error
    docs = DocumentArray()
    if kind == "item":
        for where, (x,) in sample(((f"{name} item {i}", (x,)) for i, x in indexed), options):
            try:
                docs.append(Document(**item_fields(x, where=where, base_dir=Path.cwd(), convert_to_blob=blob)[0]))
            except DataError as exc:
                problems.add(exc)
        problems.raise_if_any()
        return docs
    layouts: dict[int, Layout] = {}
    for where, cells in sample(((f"{name} item {i}", cells) for i, cells in indexed), options):
        try:
            if len(cells) not in layouts:
                layouts[len(cells)] = _tuple_layout(len(cells), options, where=where)
            docs.append(row_document(where, cells, layouts[len(cells)], base_dir=Path.cwd(), convert_to_blob=blob))
        except DataError as exc:
            problems.add(exc)
    problems.raise_if_any()
    return docs


def _tuple_layout(width: int, options: CSVOptions | None, *, where: str) -> Layout:
    if options is not None and options.columns is not None:
        return plan_columns(width, None, options, what=where)
    if width == 2:
        return Layout(0, 1, "auto" if options is None else ("labelled" if options.is_labeled else "pairs"))
    if width == 3:
        if options is not None and options.is_labeled:
            raise DataError(
                f"{where}: a 3-tuple is a scored pair (a, b, score), but CSVOptions(is_labeled=True) expects "
                "(item, label) 2-tuples. Pass CSVOptions(is_labeled=False) for scored pairs, or pick two "
                "elements with CSVOptions(columns=(0, 1))."
            )
        return Layout(0, 1, "pairs", score=2)
    raise DataError(
        f"{where}: a tuple of {width} elements; give (item, label) or (a, b) 2-tuples, or (a, b, score) "
        "3-tuples, or choose two elements with CSVOptions(columns=(i, j))."
    )


def _from_dicts(indexed: list[tuple[int, Any]], options: CSVOptions | None, name: str) -> DocumentArray:
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
    layout = plan_columns(len(names), [str(n) for n in names], options, what=name)
    rows = ((f"{name} item {i}", [row[n] for n in names]) for i, row in indexed)
    return documents_from_rows(rows, layout, options, base_dir=Path.cwd())


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 50 else text[:47] + "..."

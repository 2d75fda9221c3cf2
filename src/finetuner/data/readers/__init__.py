"""Read whatever the user passes as data: one reader per source, each producing one
:class:`~finetuner.data.table.Table` (:func:`read_table`); :func:`load_data` gives the same data as Documents.

Accepted forms:

- our ``DocumentArray`` or ``Document``, or a list/tuple of Documents (ours and docarray's may mix)
  (:mod:`~finetuner.data.readers.documents`);
- real docarray v1 (``docarray<0.30``) ``DocumentArray`` or ``Document`` objects, converted field by field
  (:mod:`~finetuner.data.readers.docarray_v1`);
- a CSV file path (``str`` or ``pathlib.Path``) read with :class:`CSVOptions`
  (:mod:`~finetuner.data.readers.csv_files`);
- a list of tuples, of dicts or of plain items, a pandas ``DataFrame`` or a Hugging Face ``datasets.Dataset``
  (:mod:`~finetuner.data.readers.memory`).

Which column plays which role is decided by :mod:`finetuner.data.schema`; what an item is (text or an image
source) by :mod:`finetuner.data.items`. ``CSVOptions`` ``size``, ``sampling_rate``, ``is_labeled``, ``columns``
and ``convert_to_blob`` apply to every row-shaped form; Documents are taken as they are. Ellipsis (``...``) items
in lists are dropped, as :class:`DocumentArray` does.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from finetuner.data.documents import Document, DocumentArray
from finetuner.data.options import CSVOptions
from finetuner.data.readers.csv_files import read_csv
from finetuner.data.readers.docarray_v1 import (
    from_docarray_array,
    from_docarray_document,
    is_docarray_array,
    is_docarray_document,
)
from finetuner.data.readers.documents import table_from_documents
from finetuner.data.readers.memory import (
    is_dataframe,
    is_dataset,
    list_kind,
    short,
    table_from_dataframe,
    table_from_dataset,
    table_from_list,
)
from finetuner.data.table import Table
from finetuner.errors import InputTypeError

__all__ = ["CSVOptions", "load_data", "read_table"]

ACCEPTED_FORMS = (
    "a finetuner DocumentArray or list of Documents, a docarray<0.30 DocumentArray, a CSV file path, a list "
    "of (item, label), (query, document), (a, b, score) or (anchor, positive, negative, ...) tuples, a list of "
    "dicts, a pandas DataFrame or a Hugging Face datasets.Dataset"
)


def read_table(data: Any, csv_options: CSVOptions | None = None, *, name: str = "data") -> Table:
    """Read ``data`` of any accepted form into one table of rows with named roles (forms: module docstring).

    Args:
        data: the data in any accepted form.
        csv_options: how to read row-shaped data (a CSV path, tuples, dicts, DataFrames, datasets); None reads
            with the defaults (roles from the column names, else by the documented rules).
        name: what to call the data in error messages (``'train_data'``, ``'eval_data'``).

    Raises:
        InputTypeError: ``data`` (or an item of a list) is of a form not accepted.
        DataError: a row, field or file cannot be read, or the layout is ambiguous; the message names the item,
            row or CSV line, and the option that settles an ambiguity.

    Example:
        >>> table = read_table([('what is a pencil skirt', 'a slim straight skirt', 'a loose shirt')])
        >>> table.describe(), table.layout
        ('triplets (query, positive, 1 negative per row)', '3 elements per tuple: (anchor, positive, negative, ...)')
    """
    documents = _documents(data, name)
    if documents is not None:
        return table_from_documents(documents, name)
    if isinstance(data, (str, os.PathLike)):
        return read_csv(data, csv_options, name=name)
    if is_dataframe(data):
        return table_from_dataframe(data, csv_options, name)
    if is_dataset(data):
        return table_from_dataset(data, csv_options, name)
    if isinstance(data, (list, tuple)):
        indexed = [(i, x) for i, x in enumerate(data) if x is not Ellipsis]
        if not indexed:
            return Table(name, (), (), [])
        return table_from_list(indexed, _list_form(indexed, name), csv_options, name)
    if type(data).__module__.split(".")[0] == "docarray":
        from_docarray_document(data)  # raises the docarray>=0.30 hint
    raise InputTypeError(f"{name}: cannot read a {_type_name(data)}; give {ACCEPTED_FORMS}.")


def load_data(data: Any, csv_options: CSVOptions | None = None, *, name: str = "data") -> DocumentArray:
    """Read ``data`` of any accepted form as Finetuner's Documents: what ``fit`` will see, in Document form.

    Our DocumentArray comes back as is, lists of our Documents without copies. Rows become labelled Documents
    (``tags['finetuner_label']``) or roots whose chunks are the query, the document and any negatives (a scored
    pair's root carries ``tags['finetuner_score']``).

    Args:
        data: the data in any accepted form (see the module docstring).
        csv_options: how to read row-shaped data; see :func:`read_table`.
        name: what to call the data in error messages.

    Example:
        >>> da = load_data([('pencil skirt', 'skirt'), ('striped shirt', 'shirt')])
        >>> da[0].text, da[0].tags['finetuner_label']
        ('pencil skirt', 'skirt')
        >>> pair = load_data([('a red apple', 'https://example.org/apple.png')])[0]
        >>> [(c.modality, c.text or c.uri) for c in pair.chunks]
        [('text', 'a red apple'), ('image', 'https://example.org/apple.png')]
    """
    documents = _documents(data, name)
    if documents is not None:
        return documents
    return read_table(data, csv_options, name=name).to_documents()


def _documents(data: Any, name: str) -> DocumentArray | None:
    """``data`` as a DocumentArray when it is Documents (ours kept as they are), else None."""
    if isinstance(data, DocumentArray):
        return data
    if isinstance(data, Document):
        return DocumentArray([data])
    if is_docarray_array(data):
        return from_docarray_array(data)
    if is_docarray_document(data):
        return DocumentArray([from_docarray_document(data)])
    if isinstance(data, (list, tuple)):
        indexed = [(i, x) for i, x in enumerate(data) if x is not Ellipsis]
        if indexed and _list_form(indexed, name) == "Document":
            return DocumentArray(x if isinstance(x, Document) else from_docarray_document(x) for _, x in indexed)
    return None


def _list_form(indexed: Sequence[tuple[int, Any]], name: str) -> str:
    """The one form of a list's elements: Documents, tuples, dicts or plain items (a mix is refused)."""

    def form(item: Any) -> str:
        return "Document" if isinstance(item, Document) or is_docarray_document(item) else list_kind(item)

    kind = form(indexed[0][1])
    for i, item in indexed:
        if form(item) != kind:
            raise InputTypeError(
                f"{name} item {i}: a {_type_name(item)} ({short(item)}) in a list of {kind}s (item "
                f"{indexed[0][0]} is a {_type_name(indexed[0][1])}); all items of a list must be of one "
                "form: Documents, tuples, dicts or plain items (texts, image paths)."
            )
    return kind


def _type_name(obj: Any) -> str:
    module = type(obj).__module__
    plain = module == "builtins" or module.startswith("finetuner.")
    return type(obj).__name__ if plain else f"{module}.{type(obj).__name__}"

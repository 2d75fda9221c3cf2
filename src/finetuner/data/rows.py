"""Rows of cells (CSV records, tuples, dicts, DataFrame or dataset rows) -> :class:`Document` objects.

**Which two columns** (the *item* and *label*, or the two members of a pair):

1. ``CSVOptions(columns=(a, b))`` when given (header names or 0-based indices).
2. With column names (a CSV header, DataFrame columns, dataset features, dict keys): labelled data takes the
   label from the first column named ``finetuner_label``, ``label``, ``labels`` or ``class`` (else the second
   column) and the item from the first other column that is not an id (``id``, ``idx``) or score column; pairs
   take the first two columns that are none of these.
3. Without names: the first two columns.

**Labelled or pairs**: ``CSVOptions(is_labeled=...)`` decides when CSVOptions are given. Without CSVOptions:
labelled when a label column is named; pairs when the two columns are known pair names
(``query``/``document``, ``text``/``image``, ``anchor``/``positive``, ``question``/``answer``,
``sentence1``/``sentence2``, ...); otherwise row by row: a row whose *second* cell is an image source (see
:mod:`finetuner.data.items`) is a CLIP pair, every other row is ``(item, label)``. So ``image,label`` files,
``text,label`` files, ``query,document`` files and ``text,image,...`` files all read right without options.

**Documents**: ``(item, label)`` -> ``Document(<item>, tags={'finetuner_label': label})``. A pair -> a root
``Document(chunks=[a, b])`` whose chunks carry modality ``'text'`` or ``'image'``; a text-image pair always
puts the text chunk first, whatever the column order. A pair's column named ``finetuner_score`` or ``score``
becomes ``tags['finetuner_score']`` (a float). **Every other column** is kept in the document's (a pair's
root's) ``tags`` under its name (``column_3`` for a third column without a header); empty extra cells are
skipped.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from finetuner.data.documents import LABEL_TAG, SCORE_TAG, Document, DocumentArray
from finetuner.data.items import is_missing, item_fields, label_value, looks_like_image, plain
from finetuner.data.options import CSVOptions
from finetuner.errors import ConfigError, DataError

LABEL_NAMES = ("finetuner_label", "label", "labels", "class")
SCORE_NAMES = ("finetuner_score", "score")
ID_NAMES = ("id", "idx")
PAIR_NAMES = frozenset(
    {
        "query",
        "document",
        "doc",
        "passage",
        "text",
        "image",
        "caption",
        "anchor",
        "positive",
        "question",
        "answer",
        "sentence1",
        "sentence2",
        "text1",
        "text2",
        "image1",
        "image2",
        "query_image",
        "document_image",
    }
)

#: one row: how to name it in errors (``"train_data 'a.csv' line 4"``) and its cells
Row = tuple[str, Sequence[Any]]


@dataclass(frozen=True)
class Layout:
    """Where a row's item/label or pair members are, and what to do with the other cells.

    Attributes:
        first, second: column indices of the item and label, or of the two pair members.
        mode: ``'labelled'``, ``'pairs'`` or ``'auto'`` (decide per row from the second cell).
        extras: ``(index, tag name)`` of every other column, kept in ``tags``.
        score: column index of a pair's score, if any.
        names: column names used in errors (None: ``column 1``, ``column 2``, ...).
    """

    first: int
    second: int
    mode: str
    extras: tuple[tuple[int, str], ...] = ()
    score: int | None = None
    names: tuple[str, ...] | None = None

    def column(self, index: int) -> str:
        """How errors name column ``index``."""
        return f"column {self.names[index]!r}" if self.names else f"column {index + 1}"


def plan_columns(width: int, names: Sequence[str] | None, options: CSVOptions | None, *, what: str) -> Layout:
    """Choose the two columns, the mode and the extra columns (rules in the module docstring).

    Args:
        width: the number of columns.
        names: the column names, or None.
        options: the user's CSVOptions, or None for the automatic rules.
        what: how to name the data in errors.

    Example:
        >>> plan_columns(4, ['text', 'image', 'category', 'subcategory'], None, what='data').mode
        'pairs'
    """
    if width < 2:
        shown = f" ({', '.join(map(str, names))})" if names else ""
        raise DataError(
            f"{what}: found {width} column{shown}; need two: item,label or query,document (text,image for "
            "CLIP). If the file has more columns, check the delimiter (CSVOptions(dialect=...))."
        )
    lowered = [str(n).strip().lower() for n in names] if names else None
    label_col = _first_named(lowered, LABEL_NAMES)
    score_col = _first_named(lowered, SCORE_NAMES)
    if options is not None and options.columns is not None:
        first, second = (_resolve(c, names, lowered, width, what) for c in options.columns)
        mode = "labelled" if options.is_labeled else "pairs"
    elif lowered is not None:
        skip = {i for i, n in enumerate(lowered) if n in LABEL_NAMES + SCORE_NAMES + ID_NAMES}
        free = [i for i in range(width) if i not in skip]
        pair = free[:2] if len(free) >= 2 else [0, 1]
        if options is not None:
            mode = "labelled" if options.is_labeled else "pairs"
        elif label_col is not None:
            mode = "labelled"
        elif lowered[pair[0]] in PAIR_NAMES and lowered[pair[1]] in PAIR_NAMES:
            mode = "pairs"
        else:
            mode = "auto"
        if mode == "labelled" and label_col is not None:
            first, second = (free[0] if free else (1 if label_col == 0 else 0)), label_col
        else:
            first, second = pair
    else:
        first, second = 0, 1
        mode = "auto" if options is None else ("labelled" if options.is_labeled else "pairs")
    if first == second:
        raise ConfigError(
            f"{what}: the item and label (or pair) columns must differ; CSVOptions.columns="
            f"{options.columns if options else None!r} names {names[first] if names else first!r} twice."
        )
    score = score_col if mode != "labelled" and score_col not in (first, second) else None
    used = {first, second, score}
    extras = tuple((i, str(names[i]) if names else f"column_{i + 1}") for i in range(width) if i not in used)
    return Layout(first, second, mode, extras, score, tuple(map(str, names)) if names else None)


def _first_named(lowered: list[str] | None, wanted: Sequence[str]) -> int | None:
    if lowered is None:
        return None
    for name in wanted:
        if name in lowered:
            return lowered.index(name)
    return None


def _resolve(column: str | int, names: Sequence[str] | None, lowered: list[str] | None, width: int, what: str) -> int:
    if isinstance(column, int) and not isinstance(column, bool):
        if not 0 <= column < width:
            raise ConfigError(
                f"{what}: CSVOptions.columns index {column} is out of range; the data has {width} columns, "
                f"so use 0..{width - 1}."
            )
        return column
    if names is None or lowered is None:
        raise ConfigError(
            f"{what}: CSVOptions.columns names {column!r} but the data has no header row; use 0-based column "
            "indices, or CSVOptions(header=True) if the first row is a header."
        )
    key = str(column).strip().lower()
    if key not in lowered:
        raise ConfigError(
            f"{what}: CSVOptions.columns names {column!r}, which is not a column; the columns are "
            f"{', '.join(map(str, names))}."
        )
    return lowered.index(key)


def sample(rows: Iterable[Row], options: CSVOptions | None) -> Iterator[Row]:
    """Keep rows by ``options.sampling_rate`` (seeded) and stop after ``options.size`` kept rows.

    Rows after the last kept one are never read, so a CSV error past them does not surface.

    Example:
        >>> rows = [(f'item {i}', ('a', 'b')) for i in range(100)]
        >>> len(list(sample(rows, CSVOptions(size=5))))
        5
        >>> half = CSVOptions(sampling_rate=0.5, seed=1)
        >>> list(sample(rows, half)) == list(sample(rows, half))  # seeded: the same rows every time
        True
    """
    size = options.size if options else None
    rate = options.sampling_rate if options else None
    rng = random.Random(options.seed) if options is not None and rate is not None and rate < 1 else None
    kept = 0
    for row in rows:
        if rng is not None and rng.random() >= rate:  # type: ignore[operator]
            continue
        yield row
        kept += 1
        if size is not None and kept >= size:
            return


def row_document(
    where: str, cells: Sequence[Any], layout: Layout, *, base_dir: Path, convert_to_blob: bool = False
) -> Document:
    """One row as a labelled Document or a pair root (rules in the module docstring).

    Example:
        >>> layout = Layout(0, 1, 'labelled')
        >>> doc = row_document('line 2', ['pencil skirt', 'skirt'], layout, base_dir=Path('.'))
        >>> doc.text, doc.tags
        ('pencil skirt', {'finetuner_label': 'skirt'})
    """
    tags = {name: plain(cells[i]) for i, name in layout.extras if not is_missing(cells[i])}
    a, b = cells[layout.first], cells[layout.second]
    a_where = f"{where}, {layout.column(layout.first)}"
    b_where = f"{where}, {layout.column(layout.second)}"
    mode = layout.mode
    if mode == "auto":
        mode = "pairs" if not is_missing(b) and looks_like_image(b) else "labelled"
    if mode == "labelled":
        fields, _ = item_fields(a, where=a_where, base_dir=base_dir, convert_to_blob=convert_to_blob)
        tags[LABEL_TAG] = label_value(b, where=b_where)
        if layout.score is not None and not is_missing(cells[layout.score]):
            tags[layout.names[layout.score] if layout.names else f"column_{layout.score + 1}"] = plain(
                cells[layout.score]
            )
        return Document(**fields, tags=tags)
    fields_a, modality_a = item_fields(a, where=a_where, base_dir=base_dir, convert_to_blob=convert_to_blob)
    fields_b, modality_b = item_fields(b, where=b_where, base_dir=base_dir, convert_to_blob=convert_to_blob)
    chunks = [Document(**fields_a, modality=modality_a), Document(**fields_b, modality=modality_b)]
    if modality_a == "image" and modality_b == "text":
        chunks.reverse()
    if layout.score is not None:
        tags[SCORE_TAG] = _score(cells[layout.score], where=f"{where}, {layout.column(layout.score)}")
    return Document(chunks=chunks, tags=tags)


def _score(value: Any, *, where: str) -> float:
    try:
        if is_missing(value) or isinstance(value, bool):
            raise ValueError
        return float(value)
    except (TypeError, ValueError):
        raise DataError(f"{where}: a pair's score must be a number, e.g. 0.8; received {value!r}.") from None


#: how many row problems are kept (a file where every row is bad does not fill the memory; the rest are counted)
MAX_PROBLEMS = 10_000


class RowProblems:
    """Problems of individual rows, collected so that one error reports all of them.

    Example:
        >>> found = RowProblems()
        >>> found.add(DataError("line 3: empty field"))
        >>> found.add(DataError("line 7: empty label"))
        >>> found.raise_if_any()
        Traceback (most recent call last):
        ...
        finetuner.errors.DataError: 2 rows have problems:
          line 3: empty field
          line 7: empty label
    """

    def __init__(self) -> None:
        self.problems: list[str] = []
        self.dropped = 0

    def add(self, error: DataError) -> None:
        """Record the problems of one row."""
        for message in error.problems:
            if len(self.problems) < MAX_PROBLEMS:
                self.problems.append(message)
            else:
                self.dropped += 1

    def raise_if_any(self) -> None:
        """Raise one :class:`DataError` listing every problem (the first 25 in the message, all in ``.problems``)."""
        if not self.problems:
            return
        total = len(self.problems) + self.dropped
        if total == 1:
            raise DataError(self.problems[0])
        shown = self.problems[:25]
        more = f"\n  ... and {total - len(shown)} more (all in this error's .problems)" if total > len(shown) else ""
        raise DataError(f"{total} rows have problems:\n  " + "\n  ".join(shown) + more, list(self.problems))


def documents_from_rows(
    rows: Iterable[Row],
    layout: Layout,
    options: CSVOptions | None,
    *,
    base_dir: Path,
    problems: RowProblems | None = None,
) -> DocumentArray:
    """Sample the rows and turn each into a Document; every bad row is reported, in one error.

    Args:
        rows: ``(where, cells)`` rows.
        layout: the columns' roles.
        options: sampling and reading options.
        base_dir: where relative image paths resolve.
        problems: collect the rows' problems here instead of raising (the caller raises).

    Example:
        >>> rows = [('item 0', ('pencil skirt', 'skirt')), ('item 1', ('striped shirt', 'shirt'))]
        >>> len(documents_from_rows(rows, Layout(0, 1, 'labelled'), None, base_dir=Path('.')))
        2
    """
    blob = bool(options and options.convert_to_blob)
    found = problems if problems is not None else RowProblems()
    docs = DocumentArray()
    iterator = iter(sample(rows, options))
    while True:
        try:
            where, cells = next(iterator)
        except StopIteration:
            break
        except DataError as exc:  # the rows themselves cannot be read further (e.g. a broken CSV quote)
            found.add(exc)
            break
        try:
            docs.append(row_document(where, cells, layout, base_dir=base_dir, convert_to_blob=blob))
        except DataError as exc:
            found.add(exc)
    if problems is None:
        found.raise_if_any()
    return docs

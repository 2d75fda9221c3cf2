"""Rows of cells (CSV records, tuples, dicts, DataFrame or dataset rows) -> one :class:`~finetuner.data.table.Table`.

The rows are sampled (``CSVOptions.size`` / ``sampling_rate``), their layout is decided once
(:func:`~finetuner.data.schema.plan_layout`), then every cell is converted: item cells become Documents
(:func:`~finetuner.data.items.item_fields`: text or an image source), labels plain hashable values, scores floats;
the cells of columns that play no role go to the row's ``tags`` (empty ones skipped). A pair of a text and an image
always lists the text first, whatever the column order. Every bad row is reported, in one error.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from finetuner.data.documents import Document
from finetuner.data.items import is_missing, item_fields, label_value, plain
from finetuner.data.options import CSVOptions
from finetuner.data.schema import Layout, plan_layout
from finetuner.data.table import ITEM, LABEL, NEGATIVE, SCORE, Row, Table
from finetuner.errors import DataError

#: one row as read: how to name it in errors (``"train_data 'a.csv' line 4"``) and its cells
RawRow = tuple[str, Sequence[Any]]
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


def sample(rows: Iterable[RawRow], options: CSVOptions | None) -> Iterator[RawRow]:
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


def table_from_rows(
    rows: Iterable[RawRow],
    width: int,
    names: Sequence[Any] | None,
    options: CSVOptions | None,
    *,
    name: str,
    what: str | None = None,
    base_dir: Path,
    tuples: bool = False,
    problems: RowProblems | None = None,
) -> Table:
    """Sample the rows, decide their layout, convert every cell; every bad row is reported, in one error.

    Args:
        rows: ``(where, cells)`` rows of ``width`` cells.
        width: the number of columns.
        names: the column names, or None (a CSV file without a header, tuples).
        options: sampling, ``is_labeled``, ``columns`` and ``convert_to_blob``.
        name: what the data is called (``'train_data'``).
        what: how messages name the data source (default: ``name``).
        base_dir: where relative image paths resolve.
        tuples: the rows are Python tuples (their own rules without names).
        problems: collect row problems here instead of raising (the caller raises).

    Example:
        >>> rows = [('item 0', ('pencil skirt', 'skirt')), ('item 1', ('a-line skirt', 'skirt'))]
        >>> table_from_rows(rows, 2, None, None, name='data', base_dir=Path('.')).kind
        'labelled'
    """
    found = problems if problems is not None else RowProblems()
    kept: list[RawRow] = []
    iterator = iter(sample(rows, options))
    while True:
        try:
            kept.append(next(iterator))
        except StopIteration:
            break
        except DataError as exc:  # the rows themselves cannot be read further (e.g. a broken CSV quote)
            found.add(exc)
            break
    table = Table(name, (), (), [], "")
    if kept:
        layout = plan_layout(width, names, kept, options, what=what or name, tuples=tuples)
        blob = bool(options and options.convert_to_blob)
        table = Table(name, layout.roles, tuple(f", {n}" for n in layout.names), [], layout.description)
        prefix = uuid.uuid4().hex[:20]  # unique ids without a uuid4 per row: one random prefix and a counter
        for n, (where, cells) in enumerate(kept):
            try:
                table.rows.append(_row(where, cells, layout, base_dir, blob, f"{prefix}{n:012x}"))
            except DataError as exc:
                found.add(exc)
    if problems is None:
        found.raise_if_any()
    return table


def _row(where: str, cells: Sequence[Any], layout: Layout, base_dir: Path, blob: bool, row_id: str) -> Row:
    """One row's cells converted by role (all its problems raised together); a labelled item's id is the row's."""
    tags = {tag: plain(cells[i]) for i, tag in layout.extras if not is_missing(cells[i])}
    values: list[Any] = []
    errors: list[str] = []
    modalities: list[str | None] = []
    for role, i, column in zip(layout.roles, layout.positions, layout.names):
        at = f"{where}, {column}"
        try:
            if role == LABEL:
                values.append(label_value(cells[i], where=at))
            elif role == SCORE:
                values.append(score_value(cells[i], where=at))
            else:
                fields, modality = item_fields(cells[i], where=at, base_dir=base_dir, convert_to_blob=blob)
                if role == ITEM:
                    values.append(Document(**fields, id=row_id))
                else:
                    values.append(Document(**fields, modality=modality, id=f"{row_id}.{len(values)}"))
                modalities.append(modality)
                continue
        except DataError as exc:
            errors += exc.problems
            values.append(None)
        modalities.append(None)
    if errors:
        raise DataError("; ".join(errors), errors)
    if NEGATIVE not in layout.roles and modalities[:2] == ["image", "text"]:  # a text-image pair: the text first
        values[0], values[1] = values[1], values[0]
        names = [f", {n}" for n in layout.names]
        names[0], names[1] = names[1], names[0]
        return Row(where, row_id, tuple(values), tags, names=tuple(names))
    return Row(where, row_id, tuple(values), tags)


def score_value(value: Any, *, where: str) -> float:
    """A pair's score as a float; anything that is not a finite number raises, naming the cell.

    Example:
        >>> score_value('0.25', where='line 2')
        0.25
    """
    try:
        if is_missing(value) or isinstance(value, bool):
            raise ValueError
        score = float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError):
        raise DataError(f"{where}: a pair's score must be a number, e.g. 0.8; received {value!r}.") from None
    if score != score or score in (float("inf"), float("-inf")):
        raise DataError(f"{where}: a pair's score must be a finite number; received {value!r}.")
    return score

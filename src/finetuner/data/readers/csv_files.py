"""Read a CSV file into a :class:`~finetuner.data.table.Table` (the column rules live in :mod:`finetuner.data.schema`).

What the reader does, in order:

1. reads the file's bytes and decodes them with ``CSVOptions.encoding`` (a UTF-8 byte-order mark is dropped);
2. picks the dialect: ``'auto'`` sniffs the delimiter among ``,`` ``;`` tab ``|`` and keeps the first one (the
   sniffer's guess first) that splits the first 64 KiB into rows of one width of at least 2; quoting is the
   standard kind (RFC 4180: ``"`` quotes, doubled inside), so quoted fields may hold delimiters and line
   breaks;
3. decides whether the first row is a header (``header='auto'``: yes when every cell is a known column name
   such as ``text``, ``label``, ``image``, ``query``, ``document``, ``anchor``, ``positive``, ``negative_1``,
   ``score``, ``sentence1``, ``id``, ``category``, or when two cells are role names and the others single words
   (``query,document,hard_neg_passage``); no when a cell is an image path or a number, or fewer than three rows
   follow it; else ``csv.Sniffer().has_header``, which looks for columns of numbers or of values of one length
   under a cell that differs);
4. reads the records lazily (``size`` stops early), skipping blank lines, and hands them to
   :func:`~finetuner.data.readers.rows.table_from_rows`.

Every problem raises :class:`~finetuner.errors.DataError` naming the file and the line where the record
starts: a missing file, an empty file, undecodable bytes (with the encoding, line and byte offset), a record
whose field count differs from the header's (or the first row's), an empty field, a missing image file.
"""

from __future__ import annotations

import codecs
import csv
import io
import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from finetuner.data.columns import canonical, is_number, name_role
from finetuner.data.items import looks_like_image
from finetuner.data.options import CSVOptions
from finetuner.data.readers.rows import RawRow, RowProblems, table_from_rows
from finetuner.data.table import Table
from finetuner.errors import ConfigError, DataError

#: header names that are not roles but that a header row often holds (kept in tags)
METADATA_NAMES = frozenset(
    {"category", "subcategory", "title", "description", "name", "tag", "tags", "target", "source", "lang"}
)
NOT_CSV_SUFFIXES = frozenset(
    {".json", ".jsonl", ".parquet", ".arrow", ".feather", ".pkl", ".npy", ".npz", ".zip"}
)
_SAMPLE_CHARS = 65536
#: data rows the header sniffer needs besides the first (fewer: the first row is data unless it names columns)
_SNIFF_ROWS = 3
_DELIMITERS = (",", "\t", ";", "|")


def read_csv(path: str | Path, options: CSVOptions | None = None, *, name: str = "data") -> Table:
    """Read a CSV file of labelled items, pairs, triplets or scored pairs into a Table.

    Args:
        path: the CSV file.
        options: how to read it; None reads with the defaults and decides labelled/pairs from the data.
        name: what to call the data in error messages.

    Example:
        >>> import tempfile, os
        >>> f = os.path.join(tempfile.mkdtemp(), 'train.csv')
        >>> _ = open(f, 'w').write('text,label\\npencil skirt,skirt\\nstriped shirt,shirt\\n')
        >>> table = read_csv(f)
        >>> table.kind, table.column('label')
        ('labelled', ['skirt', 'shirt'])
    """
    path = Path(path).expanduser()
    what = f"{name} {path.name!r}"
    text = _read_text(path, (options or CSVOptions()).encoding, what)
    dialect, fmt = _dialect(text, (options or CSVOptions()).dialect)
    records = _records(text, dialect, fmt, what)
    first = next(records, None)
    if first is None:
        raise DataError(f"{what}: the file holds only blank lines ({path}); write one row per item or pair.")
    second = next(records, None)
    if second is not None:
        records = itertools.chain([second], records)
    header_option = options.header if options else "auto"
    if header_option == "auto":
        sample = text[:_SAMPLE_CHARS]
        further = sum(1 for _ in itertools.islice(_records(sample, dialect, fmt, what), 1, _SNIFF_ROWS + 1))
        has_header = _has_header(first[1], sample, further)
    else:
        has_header = bool(header_option)
    names = first[1] if has_header else None
    width = len(first[1])
    shape = f"the header on line {first[0]}" if has_header else f"line {first[0]}"
    seen = [0]
    problems = RowProblems()

    def rows() -> Iterator[RawRow]:
        if not has_header:
            seen[0] += 1
            yield f"{what} line {first[0]}", first[1]
        for line, cells in records:
            seen[0] += 1
            if len(cells) != width:  # reported with the other bad rows; the reading goes on
                problems.add(DataError(_ragged(what, line, cells, width, shape, fmt["delimiter"])))
                continue
            yield f"{what} line {line}", cells

    table = table_from_rows(
        rows(), width, names, options, name=name, what=what, base_dir=path.parent, problems=problems
    )
    problems.raise_if_any()
    if seen[0] == 0:
        raise DataError(
            f"{what}: the file has a header ({', '.join(first[1])}) but no data rows; add rows, or pass "
            "CSVOptions(header=False) if the first row is data."
        )
    return table


def _read_text(path: Path, encoding: str, what: str) -> str:
    if not path.exists():
        raise DataError(
            f"{what}: no such file: {path.absolute()}. Give the path of an existing CSV file (relative paths "
            "resolve against the working directory), or pass the data itself."
        )
    if path.is_dir():
        raise DataError(f"{what}: {path} is a directory; give the path of a CSV file inside it.")
    if path.suffix.lower() in NOT_CSV_SUFFIXES:
        raise DataError(
            f"{what}: only CSV files are read from disk, received a {path.suffix} file. Load it yourself "
            "(e.g. pandas.read_json / read_parquet) and pass the DataFrame."
        )
    try:
        codec = codecs.lookup(encoding).name
    except LookupError:
        raise ConfigError(
            f"CSVOptions.encoding {encoding!r} is not a known text encoding; use e.g. 'utf-8', 'latin-1' or "
            "'cp1252'."
        ) from None
    raw = path.read_bytes()
    if not raw.strip():
        raise DataError(
            f"{what}: the file is empty ({path}); write one row per item: item,label (or query,document for "
            "pairs)."
        )
    try:
        return raw.decode("utf-8-sig" if codec == "utf-8" else encoding)
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        bad = raw[exc.start : exc.end]
        raise DataError(
            f"{what}: cannot decode line {line} as {encoding} (byte offset {exc.start}, column {column}: "
            f"{bad!r}: {exc.reason}). Pass the file's real encoding, e.g. CSVOptions(encoding='latin-1') or "
            "'cp1252', or re-save the file as UTF-8."
        ) from None


def _dialect(text: str, dialect: Any) -> tuple[Any, dict[str, Any]]:
    """The dialect and format parameters to read ``text`` with; ``fmt['delimiter']`` is always set."""
    if dialect != "auto":
        delimiter = csv.get_dialect(dialect).delimiter if isinstance(dialect, str) else dialect.delimiter
        return dialect, {"delimiter": delimiter}
    sample = text[:_SAMPLE_CHARS]
    truncated = len(text) > _SAMPLE_CHARS
    try:
        guess: str | None = csv.Sniffer().sniff(sample, delimiters="".join(_DELIMITERS)).delimiter
    except csv.Error:
        guess = None
    for delimiter in dict.fromkeys([guess, *_DELIMITERS]):
        if delimiter is None:
            continue
        try:
            rows = [r for r in csv.reader(io.StringIO(sample, newline=""), delimiter=delimiter) if r]
        except csv.Error:
            continue
        if truncated:
            rows = rows[:-1]
        widths = {len(r) for r in rows}
        if len(widths) == 1 and widths.pop() >= 2:
            return "excel", {"delimiter": delimiter}
    return "excel", {"delimiter": guess or ","}


def _records(text: str, dialect: Any, fmt: dict[str, Any], what: str) -> Iterator[tuple[int, list[str]]]:
    """``(start line, fields)`` of every non-blank record."""
    reader = csv.reader(io.StringIO(text, newline=""), dialect, **fmt)
    start = 1
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise DataError(
                f"{what} line {start}: the CSV record cannot be parsed ({exc}); check its quotes."
            ) from None
        if cells:
            yield start, cells
        start = reader.line_num + 1


def _has_header(first: list[str], sample: str, rows: int) -> bool:
    """Whether the first row is a header (rules in the module docstring)."""
    if any(looks_like_image(c) or is_number(c) for c in first):
        return False
    cells = [canonical(c) for c in first]
    roles = [name_role(c) for c in cells]
    if all(r is not None or c in METADATA_NAMES for c, r in zip(cells, roles)):
        return True
    if sum(r not in (None, "id") for r in roles) >= 2 and not any(" " in c or "\t" in c for c in first):
        return True  # two role names beside names of our own (query,document,hard_neg_passage)
    if rows < _SNIFF_ROWS:  # the sniffer's length test takes the first row of a short text file for a header
        return False
    try:
        return csv.Sniffer().has_header(sample)
    except csv.Error:
        return False


def _ragged(what: str, line: int, cells: list[str], width: int, shape: str, delimiter: str) -> str:
    shown = ", ".join(repr(c if len(c) <= 30 else c[:27] + "...") for c in cells[:4])
    hint = (
        f'fields that contain the delimiter {delimiter!r} or line breaks must be quoted ("...")'
        if len(cells) > width
        else "a missing field or a wrong delimiter (CSVOptions(dialect=...))"
    )
    if any("\n" in c for c in cells):
        hint += "; a quote that is never closed makes one field swallow the lines after it"
    return (
        f"{what} line {line}: {len(cells)} field{'s' if len(cells) != 1 else ''} ({shown}), expected {width} "
        f"like {shape}. Check for {hint}."
    )

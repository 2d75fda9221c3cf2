"""Training data larger than memory (``fit(..., streaming=True)``): files and datasets read memory-mapped.

The engine is Hugging Face ``datasets``: a CSV, JSON Lines or Parquet file is converted once into an Arrow file in
the ``datasets`` cache (in chunks: memory stays bounded) and then read memory-mapped; a ``datasets.Dataset`` is
read as it is; an ``IterableDataset`` (``load_dataset(..., streaming=True)``) is written once to such an Arrow file
as it streams past. Nothing is loaded whole, and nothing is tokenised up front: each batch's texts are fetched by
row and tokenised in the loader.

What stays in memory is an index of a few bytes per training item, built in one pass over the role columns
(:func:`build_index`): for each item its row and column, and its class code (labelled items: the label; pairs: the
group of pairs that share a text, found from 64-bit text hashes by :class:`~finetuner.data.pair_index.PairIndex` in
a few bytes per pair). The batch samplers work on that index exactly as on in-memory data, so a streamed run draws
the same batches as the in-memory run of the same rows and seed, each process fetches only its share of every
batch, and a resume skips to the exact batch without reading the skipped ones. The same pass checks every row's
cells (empty or not text) and reports bad ones by row under ``on_bad_row``: ``'fail'`` refuses the data, listing
them; ``'skip'`` leaves those rows out, naming them.
"""

from __future__ import annotations

import csv
import hashlib
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from finetuner.data.items import is_missing
from finetuner.data.pair_index import PairIndex
from finetuner.data.readers.rows import RowProblems
from finetuner.data.samplers import index_dtype

#: file suffix -> the ``datasets`` builder that reads it
BUILDERS = {".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet", ".pq": "parquet"}
#: rows read per Arrow batch in the index pass
_PASS_ROWS = 8192


def is_streamable(data: Any) -> bool:
    """Whether ``data`` is a form ``streaming=True`` reads: a CSV / JSON Lines / Parquet path or a ``datasets``
    Dataset or IterableDataset.

    Example:
        >>> is_streamable('train.parquet'), is_streamable([('a', 'x')])
        (True, False)
    """
    if isinstance(data, (str, os.PathLike)):
        return Path(data).suffix.lower() in BUILDERS
    return type(data).__module__.startswith("datasets") and hasattr(data, "column_names")


def open_dataset(data: Any, *, header: bool, delimiter: str = ",", encoding: str = "utf-8",
                 column_names: list[str] | None = None) -> Any:  # fmt: skip
    """``data`` as a memory-mapped ``datasets.Dataset`` (files converted once into the ``datasets`` cache;
    an IterableDataset written to it as it streams).

    Args:
        data: a file path (suffix in :data:`BUILDERS`), a ``datasets.Dataset`` or ``IterableDataset``.
        header: for CSV files, whether the first row names the columns.
        delimiter, encoding: for CSV files.
        column_names: the names of a CSV file's columns (its header's, or the given ones when it has none).

    Example:
        >>> open_dataset('train.jsonl', header=True).num_rows  # doctest: +SKIP
        2000000
    """
    try:
        import datasets
    except ImportError:
        from finetuner.errors import ConfigError

        raise ConfigError(
            'streaming=True reads data with Hugging Face datasets: pip install "finetuner[streaming]"'
        ) from None
    if isinstance(data, (str, os.PathLike)):
        path = Path(data)
        builder = BUILDERS[path.suffix.lower()]
        options: dict[str, Any] = {}
        if builder == "csv":  # every cell a string, empty cells '' (checked by the index pass), not NaN
            features = datasets.Features({n: datasets.Value("string") for n in column_names or []})
            options = dict(sep=delimiter, encoding=encoding, keep_default_na=False, na_filter=False, features=features)
            if not header:
                options.update(header=None, names=column_names)
        return datasets.load_dataset(builder, data_files=str(path), split="train", **options)
    if isinstance(data, datasets.IterableDataset):
        return datasets.Dataset.from_generator(_rows_of, gen_kwargs={"stream": data}, features=data.features)
    return data


def _rows_of(stream: Any) -> Iterator[dict[str, Any]]:
    yield from stream


def csv_layout(path: str | Path, dialect: Any, encoding: str) -> tuple[str, list[str]]:
    """The delimiter of a CSV file and the cells of its first row (read from its first 64 KiB only).

    Example:
        >>> csv_layout('train.csv', 'auto', 'utf-8')  # doctest: +SKIP
        (',', ['text', 'label'])
    """
    from finetuner.data.readers.csv_files import _dialect

    with open(path, encoding=encoding, newline="") as f:
        text = f.read(65536)
    text = text.removeprefix("\ufeff")
    chosen, fmt = _dialect(text, dialect)
    first = next((row for row in csv.reader(text.splitlines(), chosen, **fmt) if row), [])
    return fmt["delimiter"], first


def sample_rows(num_rows: int, validate_rows: int | str, seed: int) -> np.ndarray:
    """The rows checked up front: all of them (``'all'``), or the first ``validate_rows`` and as many drawn at
    random (seeded) from the rest, in order.

    Example:
        >>> sample_rows(10, 2, seed=0).tolist()[:2], len(sample_rows(10, 2, seed=0)), len(sample_rows(10, 'all', 0))
        ([0, 1], 4, 10)
    """
    if validate_rows == "all" or 2 * int(validate_rows) >= num_rows:
        return np.arange(num_rows)
    n = int(validate_rows)
    rest = np.random.default_rng(seed).choice(np.arange(n, num_rows), n, replace=False)
    return np.concatenate([np.arange(n), np.sort(rest)])


@dataclass
class StreamedData:
    """Training data read by row from a memory-mapped dataset: the index of :func:`build_index`.

    Attributes:
        dataset: the ``datasets.Dataset`` (memory-mapped).
        kind: ``'labelled'`` or ``'pairs'`` (text pairs, trained as classes of the pairs' groups).
        columns: the item column(s): one for labelled items, two for pairs.
        rows, sides: the row and the column (index into ``columns``) of every training item.
        labels: the class code of every training item.
        num_classes: how many classes there are.
        digest: a digest of the items and labels (a resume must train on the same data).
        source: how messages name the data.
        skipped: the rows left out under ``on_bad_row='skip'``, by position and reason.
    """

    dataset: Any
    kind: str
    columns: tuple[str, ...]
    rows: np.ndarray
    sides: np.ndarray
    labels: np.ndarray
    num_classes: int
    digest: str
    source: str
    skipped: list[str] = field(default_factory=list)
    modality: str = "text"

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def classes(self) -> range:
        """The class codes (the loss's class count for class-count losses)."""
        return range(self.num_classes)

    def describe(self) -> str:
        """One line for the run's log.

        Example:
            >>> StreamedData(None, 'pairs', ('q', 'd'), np.zeros(4), np.zeros(4), np.zeros(4), 2, '', 'x').describe()
            'x, streamed: 4 text items in 2 classes'
        """
        return f"{self.source}, streamed: {len(self)} text items in {self.num_classes} classes"


def build_index(
    dataset: Any, kind: str, columns: tuple[str, ...], label_column: str | None, *, source: str,
    on_bad_row: str = "fail", where: Any = None,
) -> StreamedData:  # fmt: skip
    """One pass over the role columns: every cell checked, the class codes, the items' rows, the data's digest.

    Labelled items keep row order and take their classes in first-seen order; pairs become the items of
    :meth:`~finetuner.data.shapes.PairData.as_labelled` (each distinct text once, in order; its class the group
    of the pairs connected through shared texts), so both match the in-memory path.

    Args:
        dataset: a ``datasets.Dataset``.
        kind: ``'labelled'`` (``columns`` = the item column, ``label_column`` set) or ``'pairs'`` (two columns).
        columns, label_column: the role columns.
        source: how messages name the data (``"train_data 'train.csv'"``).
        on_bad_row: ``'fail'`` raises one DataError naming every bad row; ``'skip'`` leaves them out.
        where: ``row -> str`` naming a row in messages (default ``'row N'``).

    Raises:
        DataError: bad rows under ``on_bad_row='fail'``, or too little data left.

    Example:
        >>> from datasets import Dataset
        >>> data = build_index(Dataset.from_dict({'q': ['a', 'b', 'a'], 'd': ['x', 'y', 'z']}), 'pairs', ('q', 'd'),
        ...                    None, source='pairs')
        >>> data.rows.tolist(), data.sides.tolist(), data.labels.tolist()
        ([0, 0, 1, 1, 2], [0, 1, 0, 1, 1], [0, 0, 1, 1, 0])
    """
    where = where or (lambda row: f"row {row}")
    problems, bad_rows = RowProblems(), []
    digest = hashlib.sha256()
    wanted = [*columns, *([label_column] if label_column else [])]
    pairs = PairIndex(dataset.num_rows if kind == "pairs" else 0)  # the usable pairs' text hashes
    label_codes: dict[Any, int] = {}
    codes: list[np.ndarray] = []
    start = 0
    for batch in dataset.select_columns(wanted).with_format("arrow").iter(batch_size=_PASS_ROWS):
        n = batch.num_rows
        masks = {c: _bad_cells(batch.column(c), text=c != label_column) for c in wanted}  # (n,) each
        ok = ~np.logical_or.reduce(list(masks.values()))
        for i in np.flatnonzero(~ok):  # rare: a message per bad row
            cells = [f"column {c!r} is {_what(batch.column(c)[int(i)].as_py())}" for c in wanted if masks[c][i]]
            bad_rows.append(start + int(i))
            problems.add(_error(f"{source} {where(start + int(i))}: {'; '.join(cells)}"))
        hashed = np.stack([_hashes(batch.column(c)) for c in columns], axis=1)  # (n, len(columns))
        hashed[~ok] = 0
        if kind == "labelled":
            values = batch.column(label_column).to_pylist()
            codes.append(np.array([label_codes.setdefault(v, len(label_codes)) if good else -1
                                   for v, good in zip(values, ok.tolist())], dtype=np.int64))  # fmt: skip
            digest.update(hashed[ok].tobytes() + _hashes(batch.column(label_column))[ok].tobytes())
        else:
            pairs.add(hashed[ok], start + np.flatnonzero(ok))
            digest.update(hashed[ok].tobytes())
        start += n
    skipped: list[str] = []
    if problems.problems:
        if on_bad_row != "skip":
            problems.raise_if_any()
        skipped = problems.problems
        warnings.warn(
            f"on_bad_row='skip': left out {len(bad_rows)} bad row(s) of {source}, e.g. {skipped[0]}", stacklevel=3
        )
    if kind == "labelled":
        keep = np.ones(start, dtype=bool)
        keep[bad_rows] = False
        index = index_dtype(start)  # rows and codes as int32 while they fit: half the memory per item
        labels = (np.concatenate(codes) if codes else np.zeros(0, dtype=np.int64)).astype(index)
        rows = np.flatnonzero(keep).astype(index)
        _check_classes(labels[rows], rows, list(label_codes), source, where)
        return StreamedData(dataset, kind, columns, rows, np.zeros(len(rows), dtype=np.int8), labels[rows],
                            len(label_codes), digest.hexdigest()[:16], source, skipped)  # fmt: skip
    if len(pairs) < 2:
        raise _error(f"{source} holds {len(pairs)} usable pair(s); in-batch negatives need at least 2 pairs")
    rows, sides, labels, num_classes = pairs.classes()  # frees the hashes as it goes
    return StreamedData(dataset, kind, columns, rows, sides, labels, num_classes, digest.hexdigest()[:16], source,
                        skipped)  # fmt: skip


def _check_classes(labels: np.ndarray, rows: np.ndarray, names: list[Any], source: str, where: Any) -> None:
    """The checks of the whole label set, as for in-memory data: two classes or more, two items in each."""
    if len(names) < 2:
        raise _error(
            f"{source} has {len(names)} class(es){f' ({names[0]!r})' if names else ''}; metric learning needs at "
            "least 2 classes (items with the same label are positives, other labels negatives)"
        )
    counts = np.bincount(labels, minlength=len(names))
    singles = np.flatnonzero(counts == 1)
    if len(singles):
        first = {int(c): int(rows[np.flatnonzero(labels == c)[0]]) for c in singles[:5]}
        shown = "; ".join(f"{names[c]!r} ({where(r)})" for c, r in first.items())
        raise _error(
            f"{source}: {len(singles)} of {len(names)} classes have a single item, so it has no positive: {shown}"
            f"{' ...' if len(singles) > 5 else ''}; add a second item of each or remove them"
        )


def _hashes(column: Any) -> np.ndarray:
    """A stable 64-bit hash of every cell's text (pandas' vectorised SipHash with its fixed key)."""
    from pandas.util import hash_array

    values = np.asarray(column.cast("string").fill_null("").to_numpy(zero_copy_only=False), dtype=object)
    return hash_array(values, categorize=False).astype(np.uint64)  # (cells,)


def _bad_cells(column: Any, text: bool) -> np.ndarray:
    """Which cells of an Arrow column are unusable (:func:`is_bad_cell`), computed on the whole column at once."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        bad = pc.or_kleene(pc.is_null(column), pc.equal(pc.utf8_trim_whitespace(column), ""))
    elif text:  # numbers or lists where texts belong: every cell is refused
        return np.ones(len(column), dtype=bool)
    elif pa.types.is_floating(column.type):
        bad = pc.or_kleene(pc.is_null(column), pc.is_nan(column))
    else:
        bad = pc.is_null(column)
    return np.asarray(bad.fill_null(True).to_numpy(zero_copy_only=False), dtype=bool)


def is_bad_cell(value: Any, text: bool = False) -> bool:
    """Whether a role cell is unusable: missing (None, NaN, empty or blank), or for an item not a str.

    Example:
        >>> is_bad_cell(' '), is_bad_cell(3), is_bad_cell(3, text=True)
        (True, False, True)
    """
    return is_missing(value) or (text and not isinstance(value, str))


def _what(value: Any) -> str:
    return "empty" if is_missing(value) else f"a {type(value).__name__}, not text"


def _error(message: str) -> Any:
    from finetuner.errors import DataError

    return DataError(message)


class StreamedItems(Dataset):
    """``(text, class code)`` of training item ``i``, fetched from the memory-mapped dataset when a batch needs it
    (a whole batch in one Arrow read: ``__getitems__``).

    Example:
        >>> from datasets import Dataset
        >>> table = Dataset.from_dict({'text': ['a', 'b', 'c', 'd'], 'label': ['x', 'y', 'x', 'y']})
        >>> StreamedItems(build_index(table, 'labelled', ('text',), 'label', source='data'))[1]
        ('b', 1)
    """

    def __init__(self, data: StreamedData) -> None:
        self.dataset = data.dataset.select_columns(list(data.columns))
        self.columns, self.rows, self.sides, self.labels = data.columns, data.rows, data.sides, data.labels

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> tuple[str, int]:
        return self.__getitems__([i])[0]

    def __getitems__(self, indices: list[int]) -> list[tuple[str, int]]:
        rows = self.rows[indices]
        unique, where = np.unique(rows, return_inverse=True)
        fetched = self.dataset[unique.tolist()]  # one read of the batch's rows
        cells = [fetched[c] for c in self.columns]
        return [
            (str(cells[self.sides[i]][w]), int(self.labels[i])) for i, w in zip(indices, where.reshape(-1).tolist())
        ]

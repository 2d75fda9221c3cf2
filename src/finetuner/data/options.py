"""``CSVOptions``: how to read rows of data (a CSV file, and also tuples, dicts, DataFrames and datasets)."""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from finetuner.errors import ConfigError


@dataclass
class CSVOptions:
    """How to read a CSV file (Finetuner 0.8 names) and, where they apply, other row-shaped data.

    ``size``, ``sampling_rate``, ``seed``, ``is_labeled``, ``columns`` and ``convert_to_blob`` apply to every
    row-shaped form that :func:`~finetuner.data.load_data` reads (CSV files, lists of tuples or dicts,
    DataFrames, Hugging Face datasets); ``dialect``, ``encoding`` and ``header`` only to CSV files.

    Args:
        size: read at most this many rows (None: all). With ``sampling_rate``, the rows kept after sampling.
        sampling_rate: keep each row with this probability, in (0, 1] (None: all); seeded by ``seed``, so the
            same options pick the same rows every time.
        dialect: ``'auto'`` sniffs the delimiter (``,`` ``;`` tab ``|``) and quoting; or a ``csv`` dialect
            name (``'excel'``, ``'excel-tab'``, ``'unix'``) or a ``csv.Dialect``.
        encoding: the file's text encoding (``'utf-8'`` also strips a byte-order mark).
        is_labeled: True: rows are labelled items (``item,label``); False: rows are not labelled: pairs
            ``query,document`` (for CLIP ``text,image`` in either order), ``(a, b, score)`` scored pairs without a
            header, or what the column names say (triplets, scored pairs); None (the default): decided from the
            column names, or without names by the documented rules (:mod:`finetuner.data.schema`), and a layout
            those cannot settle is refused with an error naming this option. Finetuner 0.8's default was False;
            a two-column file without a header still reads as its pairs when no value of the second column
            repeats.
        convert_to_blob: read local image files and data URIs into ``blob`` at load time (the ``uri`` is
            kept).
        create_point_clouds, point_cloud_size: kept for Finetuner compatibility; unused.
        header: whether the first row is a header; ``'auto'`` decides (known column names such as ``text``,
            ``label``, ``image``, ``query``, ``document``, else ``csv.Sniffer().has_header``).
        columns: one of
            **the columns to read**, by header name or 0-based index, in role order, e.g. ``('image',
            'category')`` (item and label) or ``('anchor', 'positive')`` (a pair, leaving a negative column out);
            the other columns are kept in ``tags`` under their header name (``column_3`` without a header);
            **a name for every column** of rows without names (a CSV file without a header, tuples), e.g.
            ``['anchor', 'positive', 'negative']`` or ``['sentence1', 'sentence2', 'score']``: the names decide;
            **renames** ``{column: name}`` (a column by name or index), e.g. ``{'label': 'score'}`` or
            ``{'hard_neg': 'negative'}``: the new names decide.
            None: the data's own names, else the rules by column count (:mod:`finetuner.data.schema`).
        seed: the seed of ``sampling_rate``.

    Example:
        >>> CSVOptions(is_labeled=True).dialect
        'auto'
        >>> CSVOptions(is_labeled=True, columns=('image', 'category')).columns
        ('image', 'category')
        >>> CSVOptions(columns=['anchor', 'positive', 'negative']).is_labeled is None
        True
    """

    size: int | None = None
    sampling_rate: float | None = None
    dialect: Any = "auto"
    encoding: str = "utf-8"
    is_labeled: bool | None = None
    convert_to_blob: bool = False
    create_point_clouds: bool = False
    point_cloud_size: int = 2048
    header: bool | str = "auto"
    columns: Sequence[str | int] | Mapping[str | int, str] | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.size is not None and (
            isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 1
        ):
            raise ConfigError(f"CSVOptions.size must be a positive int or None; received {self.size!r}.")
        if self.sampling_rate is not None and (
            isinstance(self.sampling_rate, bool)
            or not isinstance(self.sampling_rate, (int, float))
            or not 0 < self.sampling_rate <= 1
        ):
            raise ConfigError(
                "CSVOptions.sampling_rate must be a number in (0, 1] or None; received "
                f"{self.sampling_rate!r}. For example sampling_rate=0.1 keeps about one row in ten."
            )
        if self.header not in (True, False, "auto"):
            raise ConfigError(f"CSVOptions.header must be True, False or 'auto'; received {self.header!r}.")
        if self.is_labeled is not None and not isinstance(self.is_labeled, bool):
            raise ConfigError(
                f"CSVOptions.is_labeled must be True or False (or None: decided from the data); received "
                f"{self.is_labeled!r}."
            )
        if isinstance(self.columns, Mapping):
            if not self.columns or not all(
                isinstance(k, (str, int)) and not isinstance(k, bool) and isinstance(v, str)
                for k, v in self.columns.items()
            ):
                raise ConfigError(
                    "CSVOptions.columns as a dict renames columns: {column name or 0-based index: new name}, e.g. "
                    f"{{'label': 'score'}}; received {self.columns!r}."
                )
            self.columns = dict(self.columns)
        elif self.columns is not None:
            if (
                isinstance(self.columns, (str, bytes))
                or not isinstance(self.columns, Sequence)
                or len(self.columns) < 2
                or not all(isinstance(c, (str, int)) and not isinstance(c, bool) for c in self.columns)
            ):
                raise ConfigError(
                    "CSVOptions.columns must be a list of two or more column names or 0-based indices, e.g. "
                    f"('text', 'label'), (0, 2) or ['anchor', 'positive', 'negative']; received {self.columns!r}."
                )
            self.columns = tuple(self.columns)
        if (
            isinstance(self.dialect, str)
            and self.dialect != "auto"
            and self.dialect not in csv.list_dialects()
        ):
            raise ConfigError(
                f"CSVOptions.dialect {self.dialect!r} is not a csv dialect; use 'auto' or one of "
                f"{', '.join(sorted(csv.list_dialects()))}, or pass a csv.Dialect."
            )

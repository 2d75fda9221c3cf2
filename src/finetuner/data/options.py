"""``CSVOptions``: how to read rows of data (a CSV file, and also tuples, dicts, DataFrames and datasets)."""

from __future__ import annotations

import csv
from collections.abc import Sequence
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
        is_labeled: rows are ``item,label``; when False each row is a positive pair ``query,document`` (or,
            for CLIP, ``text,image`` in either order). When ``load_data`` gets no CSVOptions at all it decides
            from the column names and rows instead (see :mod:`finetuner.data.rows`).
        convert_to_blob: read local image files and data URIs into ``blob`` at load time (the ``uri`` is
            kept).
        create_point_clouds, point_cloud_size: kept for Finetuner compatibility; unused.
        header: whether the first row is a header; ``'auto'`` decides (known column names such as ``text``,
            ``label``, ``image``, ``query``, ``document``, else ``csv.Sniffer().has_header``).
        columns: the two columns to use, by header name or 0-based index: ``(item, label)`` or the two members
            of a pair, e.g. ``('image', 'category')``. None: see :mod:`finetuner.data.rows`. Every other
            column is kept in ``tags`` under its header name (``column_3`` for the third column without a
            header).
        seed: the seed of ``sampling_rate``.

    Example:
        >>> CSVOptions(is_labeled=True).dialect
        'auto'
        >>> CSVOptions(is_labeled=True, columns=('image', 'category')).columns
        ('image', 'category')
    """

    size: int | None = None
    sampling_rate: float | None = None
    dialect: Any = "auto"
    encoding: str = "utf-8"
    is_labeled: bool = True
    convert_to_blob: bool = False
    create_point_clouds: bool = False
    point_cloud_size: int = 2048
    header: bool | str = "auto"
    columns: Sequence[str | int] | None = None
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
        if not isinstance(self.is_labeled, bool):
            raise ConfigError(f"CSVOptions.is_labeled must be True or False; received {self.is_labeled!r}.")
        if self.columns is not None:
            if isinstance(self.columns, (str, bytes)) or len(self.columns) != 2:
                raise ConfigError(
                    "CSVOptions.columns must name exactly two columns, e.g. ('text', 'label') or (0, 2); "
                    f"received {self.columns!r}."
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

"""Turn whatever the user passes as data into a :class:`~finetuner.data.documents.DocumentArray`.

Accepted: our DocumentArray or a list of Documents, real docarray v1 ``DocumentArray``/``Document`` objects, a
CSV file path (see :class:`CSVOptions`), lists of ``(item, label)`` / ``(query, document)`` / ``(text, image)``
tuples, pandas DataFrames and Hugging Face ``datasets.Dataset`` objects.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from finetuner.data.documents import DocumentArray


@dataclass
class CSVOptions:
    """How to read a CSV file (Finetuner 0.8 names).

    Args:
        size: read at most this many rows (None: all).
        sampling_rate: keep each row with this probability (None: all).
        dialect: a ``csv`` dialect name or ``'auto'`` to sniff delimiter and quoting.
        encoding: the file's text encoding.
        is_labeled: rows are ``item,label``; otherwise each row is a positive pair ``query,document`` (or, for
            CLIP, ``text,image-uri`` in either order).
        convert_to_blob: read image files into ``blob`` at load time.
        create_point_clouds, point_cloud_size: kept for Finetuner compatibility; unused.
        header: whether the first row is a header; ``'auto'`` sniffs it.

    Example:
        >>> CSVOptions(is_labeled=True).dialect
        'auto'
    """

    size: int | None = None
    sampling_rate: float | None = None
    dialect: str = "auto"
    encoding: str = "utf-8"
    is_labeled: bool = True
    convert_to_blob: bool = False
    create_point_clouds: bool = False
    point_cloud_size: int = 2048
    header: bool | str = "auto"


def load_data(data: Any, csv_options: CSVOptions | None = None, *, name: str = "data") -> DocumentArray:
    """Convert user data of any accepted form into our DocumentArray (see module docstring).

    Args:
        data: the data in any accepted form.
        csv_options: how to read ``data`` when it is a CSV path.
        name: what to call the data in error messages (``'train_data'``, ``'eval_data'``).

    Example:
        >>> da = load_data([('pencil skirt', 'skirt'), ('striped shirt', 'shirt')])
        >>> da[0].text, da[0].tags['finetuner_label']
        ('pencil skirt', 'skirt')
    """
    raise NotImplementedError

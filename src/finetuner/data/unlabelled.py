"""Unlabelled texts (SimCSE) and images (SimCLR) for training without labels: read them from any plain form, then
lay them out as the two views a batch holds of each item.

Accepted texts: a list of texts, a ``.txt`` file (one text a line), or any one-column form ``fit`` reads (a CSV file
with one column, Documents without tags, a DataFrame or dataset of one column). Accepted images: a folder (its image
files, sub-folders included, in sorted order), a list of image sources (paths, URLs, bytes, arrays, PIL images), a
one-column CSV file of image paths (relative ones resolve against the CSV file's folder), Documents without tags, a
DataFrame or dataset of one column. Data with labels or pairs is refused by name, and so are images for the text
loss and texts for the image loss.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from finetuner.data.columns import name_role
from finetuner.data.items import IMAGE_EXTENSIONS, _image_kind
from finetuner.data.readers import CSVOptions, read_table
from finetuner.errors import DataError

logger = logging.getLogger("finetuner")


def read_texts(
    data: Any, csv_options: CSVOptions | None = None, *, name: str = "train_data", loss: str = "SimCSE"
) -> list[str]:
    """The texts of ``data``, in order, with exact repeats removed (a repeat would be a false negative of itself;
    how many were removed is logged); ``loss`` names the loss in messages.

    Raises:
        DataError: an item is not a non-empty text, the data holds labels, pairs or several columns, or fewer than
            two distinct texts.

    Example:
        >>> read_texts(['a cat', 'a dog', 'a cat'])
        ['a cat', 'a dog']
        >>> read_texts([('a cat', 'animal'), ('a car', 'vehicle')])
        Traceback (most recent call last):
        ...
        finetuner.errors.DataError: train_data holds labelled data (roles: item, label); unsupervised training \
(loss='SimCSE') takes a plain list of texts: pass the texts alone, or train on the labels with a metric loss \
(loss='TripletMarginLoss')
    """
    if isinstance(data, (str, os.PathLike)) and Path(data).suffix.lower() == ".txt":
        path = Path(data).expanduser()
        if not path.is_file():
            raise DataError(f"{name}: no such file {path}")
        lines = path.read_text(encoding="utf-8").splitlines()
        texts = [line.strip() for line in lines if line.strip()]
    else:
        texts = []
        for where, doc in _cells(data, csv_options, name, "texts", loss):
            text = getattr(doc, "text", None)
            if not isinstance(text, str) or not text.strip():
                sources = (getattr(doc, "uri", None), _binary(doc), getattr(doc, "tensor", None))
                what = "an image" if any(v is not None for v in sources) else "no text"
                more = " (for images use loss='SimCLR')" if what == "an image" else ""
                raise DataError(f"{where}: {what}; unsupervised training with loss={loss!r} takes texts{more}")
            texts.append(text)
    unique = list(dict.fromkeys(texts))
    if len(unique) < len(texts):
        logger.info("%s: %d repeated text(s) removed (a repeat is a false negative)", name, len(texts) - len(unique))
    if len(unique) < 2:
        raise DataError(f"{name} holds {len(unique)} distinct text(s); in-batch negatives need at least two")
    return unique


def read_images(data: Any, csv_options: CSVOptions | None = None, *, name: str = "train_data") -> list[Any]:
    """The image sources of ``data``, in order (a path or URL as an absolute path or the URL, bytes, an array),
    with exact repeats removed (the same path, or the same bytes or pixels; how many were removed is logged).

    Raises:
        DataError: an item is text, the data holds labels, pairs or several columns, a folder holds no image file,
            or fewer than two distinct images.

    Example:
        >>> import numpy as np
        >>> len(read_images([np.zeros((4, 4), np.uint8), np.ones((4, 4), np.uint8), np.zeros((4, 4), np.uint8)]))
        2
        >>> read_images(['a cat', 'a dog'])
        Traceback (most recent call last):
        ...
        finetuner.errors.DataError: train_data item 0: text ('a cat'); loss='SimCLR' trains on images (for texts \
use loss='SimCSE')
    """
    if isinstance(data, (str, os.PathLike)) and Path(data).expanduser().is_dir():
        folder = Path(data).expanduser().resolve()
        images: list[Any] = [
            str(p) for p in sorted(folder.rglob("*")) if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
        ]
        if not images:
            raise DataError(f"{name}: the folder {folder} holds no image file ({', '.join(sorted(IMAGE_EXTENSIONS))})")
    else:
        images = []
        for where, doc in _cells(data, csv_options, name, "images", "SimCLR"):
            source = next((v for v in (getattr(doc, "tensor", None), _binary(doc)) if v is not None), None)
            source = source if source is not None else getattr(doc, "uri", None)
            if source is None:
                text = getattr(doc, "text", None)
                raise DataError(
                    f"{where}: {'text (' + repr(text[:40]) + ')' if text else 'no image'}; loss='SimCLR' trains on "
                    "images (for texts use loss='SimCSE')"
                )
            images.append(source)
    first: dict[Any, Any] = {}
    for image in images:
        first.setdefault(_image_key(image), image)
    unique = list(first.values())
    if len(unique) < len(images):
        logger.info("%s: %d repeated image(s) removed (a repeat is a false negative)", name, len(images) - len(unique))
    if len(unique) < 2:
        raise DataError(f"{name} holds {len(unique)} distinct image(s); in-batch negatives need at least two")
    return unique


def two_views(items: list[Any], prefix: str = "text") -> list[tuple[Any, str]]:
    """``(item, label)`` rows holding each item twice under a label of its own: the two views of one text or image,
    which a class sampler with two items per class puts in the same batch.

    Example:
        >>> two_views(['a cat', 'a dog'])
        [('a cat', 'text-0'), ('a cat', 'text-0'), ('a dog', 'text-1'), ('a dog', 'text-1')]
    """
    return [(item, f"{prefix}-{i}") for i, item in enumerate(items) for _ in range(2)]


def _cells(data: Any, csv_options: CSVOptions | None, name: str, kind: str, loss: str) -> list[tuple[str, Any]]:
    """``(where, Document)`` of each item of one-column ``data``; labelled or pair data is refused by name."""
    column = _one_column_csv(data, csv_options, name)
    table = read_table(column if column is not None else data, csv_options, name=name)
    if tuple(table.roles) != ("item",):
        labelled = "label" in table.roles
        instead = "labels with a metric loss (loss='TripletMarginLoss')" if labelled else "pairs with InfoNCELoss"
        raise DataError(
            f"{name} holds {table.kind} data (roles: {', '.join(table.roles)}); unsupervised training "
            f"(loss={loss!r}) takes a plain list of {kind}: pass the {kind} alone, or train on the {instead}"
        )
    if column is not None:
        return [(f"{name} {Path(data).name!r} row {i + 1}", row.cells[0]) for i, row in enumerate(table)]
    return [(row.where, row.cells[0]) for row in table]


def _one_column_csv(data: Any, csv_options: CSVOptions | None, name: str) -> list[str] | None:
    """The values of a CSV file of one column (its header, if any, left out; relative image paths made absolute
    against its folder), or None for anything else (read as ``fit`` reads data)."""
    if not isinstance(data, (str, os.PathLike)) or Path(data).suffix.lower() != ".csv" or not Path(data).is_file():
        return None
    path = Path(data).expanduser()
    options = csv_options or CSVOptions()
    with path.open(encoding=options.encoding, newline="") as handle:
        rows = [row for row in csv.reader(handle) if any(cell.strip() for cell in row)]
    if not rows or any(len(row) != 1 for row in rows):
        return None  # several columns (or none): the usual reader says what they are
    values = [row[0] for row in rows]
    header = options.header if options.header != "auto" else name_role(values[0]) is not None
    if header and options.header == "auto":
        logger.info("%s %r: first row %r read as a header (CSVOptions(header=False) reads it as data)", name,
                    path.name, values[0])
    values = values[1:] if header else values
    if not values:
        raise DataError(f"{name} {path.name!r}: a header ({rows[0][0]!r}) and no data rows")
    return [str(path.parent / v) if _image_kind(v) == "path" and not Path(v).is_absolute() else v for v in values]


def _binary(doc: Any) -> Any:
    blob = getattr(doc, "blob", None)
    return blob if blob else None


def _image_key(image: Any) -> Any:
    """What makes two image sources the same: the path or URL, the bytes, or the pixels and their shape."""
    if isinstance(image, str):
        return image
    if isinstance(image, (bytes, bytearray)):
        return hashlib.sha1(bytes(image)).hexdigest()
    array = np.ascontiguousarray(np.asarray(image))
    return (array.shape, str(array.dtype), hashlib.sha1(array.tobytes()).hexdigest())

"""Unlabelled texts for training without labels (SimCSE): read them from any plain form, then lay them out as the
two views a batch holds of each text.

Accepted: a list of texts, a ``.txt`` file (one text a line), or any one-column form ``fit`` reads (a CSV file with
one column, Documents without tags, a DataFrame or dataset of one column). Data with labels, pairs or images is
refused by name: it is not a plain list of texts.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from finetuner.data.readers import CSVOptions, read_table
from finetuner.errors import DataError

logger = logging.getLogger("finetuner")


def read_texts(data: Any, csv_options: CSVOptions | None = None, *, name: str = "train_data") -> list[str]:
    """The texts of ``data``, in order, with exact repeats removed (a repeat would be a false negative of itself;
    how many were removed is logged).

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
takes a plain list of texts: pass the texts alone, or train on the labels with a metric loss
    """
    if isinstance(data, (str, os.PathLike)) and Path(data).suffix.lower() == ".txt":
        path = Path(data).expanduser()
        if not path.is_file():
            raise DataError(f"{name}: no such file {path}")
        lines = path.read_text(encoding="utf-8").splitlines()
        texts = [line.strip() for line in lines if line.strip()]
    else:
        table = read_table(data, csv_options, name=name)
        if tuple(table.roles) != ("item",):
            raise DataError(
                f"{name} holds {table.kind} data (roles: {', '.join(table.roles)}); "
                "unsupervised training takes a plain list of texts: pass the texts alone, or train on the "
                f"{'labels' if 'label' in table.roles else 'pairs'} with a "
                f"{'metric loss' if 'label' in table.roles else 'pair loss (InfoNCELoss)'}"
            )
        texts = []
        for row in table:
            doc = row.cells[0]
            text = getattr(doc, "text", None)
            if not isinstance(text, str) or not text.strip():
                what = "an image" if getattr(doc, "uri", None) or getattr(doc, "blob", None) else "no text"
                raise DataError(f"{row.where}: {what}; unsupervised training (SimCSE) takes texts")
            texts.append(text)
    unique = list(dict.fromkeys(texts))
    if len(unique) < len(texts):
        logger.info("%s: %d repeated text(s) removed (a repeat is a false negative)", name, len(texts) - len(unique))
    if len(unique) < 2:
        raise DataError(f"{name} holds {len(unique)} distinct text(s); in-batch negatives need at least two")
    return unique


def two_views(texts: list[str]) -> list[tuple[str, str]]:
    """``(text, label)`` rows holding each text twice under a label of its own: the two views of one text, which a
    class sampler with two items per class puts in the same batch.

    Example:
        >>> two_views(['a cat', 'a dog'])
        [('a cat', 'text-0'), ('a cat', 'text-0'), ('a dog', 'text-1'), ('a dog', 'text-1')]
    """
    return [(text, f"text-{i}") for i, text in enumerate(texts) for _ in range(2)]

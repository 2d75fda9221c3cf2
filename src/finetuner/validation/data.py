"""Checks of training and evaluation data, on the one table a reader made of it: every bad item named (index, id,
uri, CSV line, column), all at once.

The data is read once (:func:`~finetuner.data.readers.read_table`: a row's unreadable cells, an ambiguous layout)
and the table is checked once. Cell by cell: content present and usable (non-empty ``str`` text; an image ``uri``
that names an existing local file, a ``data:`` URI or an ``http(s)`` URL; a non-empty ``blob``; a numeric 2-D or
3-D ``tensor`` without NaN or inf), labels hashable and not NaN, one kind of pair throughout (CLIP: one text and
one image per root). Then the shape (:func:`~finetuner.data.shaping.to_shape`: labels present, finite scores,
negatives that differ from their query and positive) and the whole set: at least two classes, no class with a
single item in training data (it has no positive). Triplets and scored pairs are refused for training until
training can use their negatives and scores (never trained as plain pairs); scored pairs are refused for
evaluation too. Image files are checked for existence one by one (cheap); their headers are decoded with Pillow
(without reading the pixels) for up to :data:`HEADER_CHECKS` images spread evenly over the set, so a large set is
not read twice.
"""

from __future__ import annotations

import base64
import binascii
import io
import math
import os
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Hashable
from pathlib import Path
from typing import Any

import numpy as np

from finetuner.data.documents import LABEL_TAG, Document
from finetuner.data.readers import read_table
from finetuner.data.shapes import LabelledData, Shape
from finetuner.data.shaping import to_shape
from finetuner.data.table import LABEL, NEGATIVE, QUERY, Table, doc_modality
from finetuner.data.vectors import VECTOR, vector_problem
from finetuner.errors import FinetunerError
from finetuner.validation.report import ValidationReport

#: how many image headers are decoded per data set (spread evenly); every local file is checked for existence
HEADER_CHECKS = 2000
#: how many single-item classes are named one by one before they are summarised
NAMED_SINGLETONS = 50


def _local_path(uri: str) -> Path | None:
    """The local file a uri names, or None for a remote URL or a data URI."""
    scheme = urllib.parse.urlparse(uri).scheme.lower()
    if scheme == "file":
        return Path(urllib.request.url2pathname(urllib.parse.urlparse(uri).path))
    if scheme in ("", *"abcdefghijklmnopqrstuvwxyz"):  # no scheme, or a Windows drive letter
        return Path(os.path.expanduser(uri))
    return None


class _ImageChecks:
    """Collects image sources to header-check after the pass; checks existence right away."""

    def __init__(self) -> None:
        self.sources: list[tuple[str, Any]] = []

    def check(self, report: ValidationReport, where: str, doc: Document) -> None:
        if doc.tensor is not None:
            _check_tensor(report, where, doc.tensor)
        elif doc.blob is not None:
            if not isinstance(doc.blob, (bytes, bytearray, memoryview)) or len(doc.blob) == 0:
                report.add("data", f"{where}: empty or non-bytes blob; give the encoded image bytes")
            else:
                self.sources.append((where, bytes(doc.blob)))
        elif isinstance(doc.uri, str) and doc.uri.strip():
            self._check_uri(report, where, doc.uri.strip())
        else:
            report.add("data", f"{where}: an image item needs a uri, blob or tensor; it has none")

    def _check_uri(self, report: ValidationReport, where: str, uri: str) -> None:
        scheme = urllib.parse.urlparse(uri).scheme.lower()
        if scheme in ("http", "https"):
            return  # remote: fetched (with a timeout) when used; not downloaded twice
        if scheme == "data":
            self.sources.append((where, uri))
            return
        path = _local_path(uri)
        if path is None:
            report.add(
                "data",
                f"{where}: unsupported uri scheme {scheme!r}; use a local path, file://, http(s):// or a data: URI",
            )
        elif not path.is_file():
            what = "is a folder, not an image file" if path.is_dir() else "does not exist"
            report.add("data", f"{where}: image file {str(path)!r} {what}; fix the path or remove the item")
        else:
            self.sources.append((where, path))

    def decode_headers(self, report: ValidationReport) -> None:
        """Open up to HEADER_CHECKS of the collected sources with Pillow (header only, no pixel decoding)."""
        n = len(self.sources)
        if n == 0:
            return
        picks = range(n) if n <= HEADER_CHECKS else np.linspace(0, n - 1, HEADER_CHECKS).astype(int)
        for i in dict.fromkeys(int(p) for p in picks):
            where, source = self.sources[i]
            problem = _header_problem(source)
            if problem:
                report.add("data", f"{where}: {problem}")


def _header_problem(source: Any) -> str | None:
    from PIL import Image, UnidentifiedImageError

    try:
        if isinstance(source, str):  # a data URI
            header, _, payload = source.partition(",")
            raw = (
                base64.b64decode(payload, validate=True)
                if ";base64" in header
                else urllib.parse.unquote_to_bytes(payload)
            )
            source = raw
        stream = io.BytesIO(source) if isinstance(source, bytes) else source
        with Image.open(stream) as img:
            width, height = img.size
        if width < 1 or height < 1:
            return f"the image has size {width}x{height}"
    except (UnidentifiedImageError, binascii.Error, ValueError) as exc:
        return f"does not decode as an image ({type(exc).__name__}: {str(exc)[:100]}); fix or remove it"
    except OSError as exc:
        return f"cannot be read as an image ({exc.strerror or exc}); fix or remove it"
    except Exception as exc:  # Pillow raises many kinds on corrupt headers
        return f"does not decode as an image ({type(exc).__name__}: {str(exc)[:100]}); fix or remove it"
    return None


def _check_tensor(report: ValidationReport, where: str, tensor: Any) -> None:
    try:
        array = tensor.detach().cpu().numpy() if type(tensor).__module__.startswith("torch") else np.asarray(tensor)
    except Exception as exc:
        report.add("data", f"{where}: the tensor cannot be read as an array ({type(exc).__name__}: {exc})")
        return
    if array.dtype == object or not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        report.add("data", f"{where}: the tensor holds {array.dtype} values; an image tensor holds numbers")
    elif array.ndim not in (2, 3) or array.size == 0:
        report.add(
            "data", f"{where}: an image tensor must be (H, W) or (H, W, C) / (C, H, W); received shape {array.shape}"
        )
    elif np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.complexfloating):
        bad = ~np.isfinite(array)
        if bad.any():
            kind = "NaN" if np.isnan(array).any() else "inf"
            report.add("data", f"{where}: the tensor has {int(bad.sum())} {kind}/non-finite value(s); clean the image")


def _check_text(report: ValidationReport, where: str, text: Any) -> None:
    if not isinstance(text, str):
        report.add("data", f"{where}: text must be a str; received {type(text).__name__}")
    elif not text.strip():
        report.add("data", f"{where}: empty text ({text!r}); give the item some text or remove it")


def _check_content(report: ValidationReport, images: _ImageChecks, where: str, doc: Document) -> str:
    modality = doc_modality(doc)
    if modality == "text":
        _check_text(report, where, doc.text)
    elif modality == "image":
        images.check(report, where, doc)
    elif modality == VECTOR:
        problem = vector_problem(doc.tensor)
        if problem:
            report.add("data", f"{where}: {problem}")
    return modality  # 'unknown' (no content) is reported by to_shape


def _check_label(report: ValidationReport, where: str, doc: Document) -> None:
    """A labelled Document's tags and label (``to_shape`` reports a missing or unusable label)."""
    if not isinstance(doc.tags, dict):
        report.add("type", f"{where}: tags must be a dict; received {type(doc.tags).__name__}")
        return
    if LABEL_TAG not in doc.tags:
        return
    label = doc.tags[LABEL_TAG]
    if isinstance(label, float) and math.isnan(label):
        report.add("data", f"{where}: the label is NaN (a missing value); give the item a label or remove it")
        return
    try:
        hash(label)
    except TypeError:
        if isinstance(label, Hashable):  # a tuple holding a list: to_shape cannot tell it from a usable label
            report.add("data", f"{where}: label {label!r:.60} is not hashable; use a str or int")


def _check_cells(report: ValidationReport, table: Table, images: _ImageChecks) -> bool:
    """Every item cell's content; for pairs and triplets one kind of pair throughout. Returns whether the kinds mix."""
    members = [i for i, r in enumerate(table.roles) if r in (QUERY, "document", NEGATIVE)]
    items = members or [i for i, r in enumerate(table.roles) if r != LABEL]
    kinds: list[tuple[int, str]] = []
    for n, row in enumerate(table):
        if row.source is not None and not isinstance(row.source.tags, dict):
            report.add("type", f"{row.where}: tags must be a dict; received {type(row.source.tags).__name__}")
            if not members:
                continue
        elif row.source is not None and not members:
            _check_label(report, row.where, row.source)
        mods = [_check_content(report, images, table.where(row, i), row.cells[i]) for i in items]
        if members and "unknown" not in mods:
            kinds.append((n, "+".join(sorted(mods[:2]))))
    counts = Counter(kind for _, kind in kinds)
    if len(counts) <= 1:
        return False
    main = "image+text" if "image+text" in counts else counts.most_common(1)[0][0]
    for n, kind in kinds:
        if kind != main:
            want = "exactly one text and one image chunk (a CLIP pair)" if main == "image+text" else f"a {main} pair"
            got = kind.replace("+", " and ")
            report.add("data", f"{table.rows[n].where}: has {got} chunks, but the data set holds {want}")
    return True


def _check_classes(report: ValidationReport, name: str, data: LabelledData, train: bool, rows: bool) -> None:
    counts = np.bincount(np.asarray(data.labels, dtype=np.int64), minlength=len(data.classes))
    singles = np.flatnonzero(counts == 1)
    hint = (
        "; if these rows are (query, document) pairs rather than (item, label), read them as pairs with "
        "CSVOptions(is_labeled=False) (CLI: --csv-pairs)"
        if rows and (len(data.classes) < 2 or 2 * len(singles) >= len(data.classes))
        else ""
    )
    if len(data.classes) < 2:
        message = (
            f"{name} has a single class ({data.classes[0]!r}); metric learning needs at least 2 classes (items with "
            "the same label are positives, other labels negatives)"
        )
        if train:
            report.add("data", message + hint)
        else:
            report.warn(message + "; every item is relevant to every query" + hint)
        return
    if len(singles) == 0:
        return
    first_item = {}
    for i, code in enumerate(data.labels):
        first_item.setdefault(code, i)
    if not train:
        report.warn(
            f"{name}: {len(singles)} class(es) have a single item (e.g. {data.classes[singles[0]]!r}); as queries they "
            "have no relevant item and score 0" + hint
        )
        return
    for code in singles[:NAMED_SINGLETONS]:
        i = first_item[int(code)]
        report.add(
            "data",
            f"{name} item {i} (id {data.ids[i]!r}): the only item of class {data.classes[code]!r}, so it has no "
            "positive; add a second item of that class or remove it",
        )
    if len(singles) > NAMED_SINGLETONS:
        report.add("data", f"{name}: {len(singles) - NAMED_SINGLETONS} more class(es) have a single item (no positive)")
    if hint:
        report.add("data", f"{name}: {len(singles)} of {len(data.classes)} classes have a single item{hint}")


def refusal(table: Table, train: bool) -> str | None:
    """Why ``table`` cannot be used for training (``train``) or evaluation yet, or None.

    Triplets and scored pairs are refused for training until training can use their negatives and scores: trained
    as plain pairs, a negative would be left out and a pair scored 0.0 would pull together. Evaluation reads
    triplets (query -> positive, with the negatives in the index) but not yet scored pairs.

    Example:
        >>> from finetuner.data import read_table
        >>> print(refusal(read_table([('q', 'p', 'n')], name='train_data'), train=True))  # doctest: +ELLIPSIS
        train_data holds triplets (query, positive, 1 negative per row), read from 3 elements per tuple: ...
    """
    held = f"{table.name} holds {table.describe()}, read from {table.layout}"
    if table.kind == "triplets" and train:
        return (
            f"{held}. Training with explicit negatives (in-batch InfoNCE with the negatives as extra candidates, "
            "TripletMarginLoss on the rows) is coming in a later version; finetuner will not train these rows as "
            "plain pairs, which would leave the negatives out. Until then, train on the pairs alone: choose the "
            "query and positive columns with CSVOptions(columns=[query_column, positive_column]) (the other columns "
            "are kept in tags) or pass [(query, positive) for query, positive, *negatives in rows]. Evaluation "
            "(eval_data, finetuner.evaluate) already reads triplets: the query searches for its positive among all "
            "positives and negatives"
        )
    if table.kind == "scored":
        if train:
            return (
                f"{held}. Training on scores (CoSENTLoss, CosineSimilarityLoss) is coming in a later version; "
                "finetuner will not train scored pairs as plain positives, since a pair scored 0.0 is not a "
                "positive. Until then, keep the pairs whose score marks them as similar and pass them as pairs, "
                "e.g. [(a, b) for a, b, score in rows if score >= 0.5]"
            )
        return (
            f"{held}. Evaluating scored pairs (Spearman and Pearson correlation of cosine similarity with the "
            "score) is coming in a later version; evaluate on pairs, triplets or labelled items until then"
        )
    return None


def check_data(
    report: ValidationReport, data: Any, name: str, csv_options: Any = None, *, train: bool = True
) -> Shape | None:
    """Read ``data`` (any accepted form) once, add every problem to ``report``; the task shape when it can be built.

    Args:
        report: where problems and warnings go.
        data: the data in any form :func:`~finetuner.data.readers.read_table` accepts.
        name: how to name it in messages (``'train_data'``, ``'eval_data'``).
        csv_options: how to read row-shaped data.
        train: training data (single-item classes are problems) or evaluation data (they are warnings).

    Example:
        >>> report = ValidationReport()
        >>> _ = check_data(report, [('a skirt', 'skirt'), ('', 'skirt'), ('a shirt', 'shirt')], 'train_data')
        >>> print('\\n'.join(report.messages()))
        train_data item 1, column 1: empty field (''); every item needs text or an image source. ...
    """
    try:
        table = read_table(data, csv_options, name=name)
    except FinetunerError as exc:
        report.add_error(exc)
        return None
    if len(table) == 0:
        report.add("data", f"{name} is empty: give at least two classes with two items each (or two pairs)")
        return None
    return check_table(report, table, train=train)


def check_table(report: ValidationReport, table: Table, *, train: bool = True) -> Shape | None:
    """Check a table cell by cell and as a whole (see the module docstring); its shape when nothing is wrong.

    Example:
        >>> from finetuner.data import read_table
        >>> report = ValidationReport()
        >>> check_table(report, read_table([('q1', 'd1'), ('q2', 'd2')], name='eval_data'), train=False) is None
        False
    """
    name = table.name
    images = _ImageChecks()
    before = len(report.problems)
    mixed_pairs = _check_cells(report, table, images)
    images.decode_headers(report)
    try:
        shape = to_shape(table)
    except FinetunerError as exc:
        known = set(report.messages())
        for message in getattr(exc, "problems", None) or [str(exc)]:
            if message not in known and not (mixed_pairs and "mixes pair kinds" in message):
                report.add("type" if isinstance(exc, TypeError) else "data", message)
        return None
    if len(report.problems) > before:
        return None
    refused = refusal(table, train)
    if refused:
        report.add("data", refused)
        return None
    if isinstance(shape, LabelledData):
        _check_classes(report, name, shape, train, rows=all(row.source is None for row in table))
    elif len(shape) < 2 and train:
        report.add("data", f"{name} holds a single pair; in-batch negatives need at least 2 pairs")
    return shape

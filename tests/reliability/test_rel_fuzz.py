"""Fuzzing: the readers and the Document conversion only ever raise finetuner's own clear errors.

Whatever text or bytes a CSV file holds, whatever a list of rows or a Document carries, the outcome is data or a
:class:`~finetuner.errors.FinetunerError` (``DataError``, ``ConfigError``, ``InputTypeError``), never an
``IndexError``, ``KeyError``, ``UnicodeDecodeError`` or the like from deep inside.
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from finetuner.data.documents import Document, DocumentArray
from finetuner.data.readers import CSVOptions, load_data
from finetuner.data.shaping import read_shape as to_task_data
from finetuner.errors import FinetunerError
from finetuner.validation.data import check_data
from finetuner.validation.report import ValidationReport

FUZZ = settings(
    max_examples=int(os.environ.get("FINETUNER_FUZZ_EXAMPLES", "150")),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
_DIR = Path(tempfile.mkdtemp(prefix="finetuner-fuzz-"))

csv_chars = st.sampled_from([*",;\t|\"\n\r '\\x\x00ä€🙂", "a", "b", "label", "text", "img.png", "1"])
csv_like = st.lists(csv_chars, max_size=60).map("".join)
any_text = st.one_of(csv_like, st.text(max_size=200))


def _write(name: str, data: bytes) -> Path:
    path = _DIR / name
    path.write_bytes(data)
    return path


def _outcome(fn, *args, **kwargs):
    """Run ``fn``; a FinetunerError is a fine outcome, any other exception fails the test."""
    try:
        return fn(*args, **kwargs)
    except FinetunerError as exc:
        assert str(exc).strip(), "an error must say something"
        return exc


@FUZZ
@given(any_text, st.sampled_from(["utf-8", "latin-1", "utf-16"]))
def test_read_csv_any_text(text, encoding):
    try:
        raw = text.encode(encoding)
    except UnicodeEncodeError:
        raw = text.encode("utf-8", "surrogatepass")
    path = _write("text.csv", raw)
    result = _outcome(load_data, path, CSVOptions(encoding="utf-8"))
    if isinstance(result, DocumentArray):
        _outcome(to_task_data, result)


@FUZZ
@given(st.binary(max_size=300), st.sampled_from([None, True, False]))
def test_read_csv_any_bytes(raw, labelled):
    path = _write("bytes.csv", raw)
    options = None if labelled is None else CSVOptions(is_labeled=labelled)
    result = _outcome(load_data, path, options)
    if isinstance(result, DocumentArray):
        _outcome(check_data, ValidationReport(), result, "train_data")


@FUZZ
@given(csv_like, st.sampled_from(["auto", "excel", "excel-tab", "unix"]), st.sampled_from([True, False, "auto"]))
def test_read_csv_options(text, dialect, header):
    path = _write("opts.csv", text.encode("utf-8", "surrogatepass"))
    _outcome(load_data, path, CSVOptions(dialect=dialect, header=header))


cells = st.one_of(
    st.text(max_size=20),
    st.none(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.binary(max_size=10),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.just(float("nan")),
    st.just(np.zeros((2, 2))),
    st.just(np.array([np.nan])),
    st.sampled_from(["img.png", "https://x.org/a.jpg", "data:image/png;base64,AAAA", "file:///no.png", "  "]),
)
rows = st.one_of(
    st.lists(st.tuples(cells, cells), max_size=6),
    st.lists(st.tuples(cells, cells, cells), max_size=6),
    st.lists(st.lists(cells, max_size=4), max_size=6),
    st.lists(cells, max_size=6),
    st.lists(st.dictionaries(st.sampled_from(["text", "label", "image", "x"]), cells, max_size=3), max_size=4),
)


@FUZZ
@given(rows, st.sampled_from([None, CSVOptions(is_labeled=True), CSVOptions(is_labeled=False)]))
def test_load_data_any_rows(data, options):
    result = _outcome(load_data, data, options)
    if isinstance(result, DocumentArray):
        _outcome(to_task_data, result)
        _outcome(check_data, ValidationReport(), result, "train_data")


contents = st.one_of(
    st.none(),
    st.text(max_size=10),
    st.binary(max_size=10),
    st.integers(),
    st.floats(),
    st.just(np.array([[1.0, np.nan]])),
    st.just(np.zeros(3)),
    st.lists(st.integers(), max_size=2),
)
labels = st.one_of(
    st.none(),
    st.text(max_size=3),
    st.integers(0, 3),
    st.floats(allow_nan=True),
    st.lists(st.integers(), max_size=2),
    st.tuples(st.lists(st.integers(), max_size=1)),
)


@st.composite
def documents(draw, depth=0):
    fields = {}
    content = draw(contents)
    tags = draw(st.one_of(st.none(), st.dictionaries(st.just("finetuner_label"), labels, max_size=1)))
    fields["uri"] = draw(st.one_of(st.none(), st.sampled_from(["a.png", "s3://b/c.jpg", "", "data:image/png,xx"])))
    fields["modality"] = draw(st.one_of(st.none(), st.sampled_from(["text", "image", "audio"])))
    if depth == 0 and draw(st.booleans()):
        fields["chunks"] = draw(st.lists(documents(depth=1), max_size=3))
    try:
        doc = Document(content, tags=tags, **fields)
    except FinetunerError:
        doc = Document(tags=tags, **fields)
    if draw(st.integers(0, 9)) == 0:  # attributes set after construction bypass the constructor's checks
        doc.tags = draw(st.one_of(st.integers(), st.text(max_size=3), st.lists(st.integers(), max_size=2)))
    if draw(st.integers(0, 9)) == 0:
        doc.text = draw(st.one_of(st.integers(), st.binary(max_size=3), st.text(max_size=3)))
    return doc


@FUZZ
@given(st.lists(documents(), max_size=6))
def test_document_conversion_and_checks(docs):
    da = _outcome(DocumentArray, docs)
    if isinstance(da, DocumentArray):
        _outcome(load_data, da)
        _outcome(to_task_data, da)
        report = ValidationReport()
        check_data(report, da, "train_data")  # reports, never raises
        assert all(isinstance(m, str) and m for m in report.messages())


@FUZZ
@given(contents, st.one_of(st.none(), st.text(max_size=5), st.integers(), st.lists(st.integers(), max_size=2)))
def test_document_constructor(content, tags):
    doc = _outcome(Document, content, tags=tags)
    if isinstance(doc, Document):
        assert doc.content is None or doc.content is content or isinstance(doc.content, bytes)


@FUZZ
@given(st.lists(st.tuples(st.text(max_size=8), st.one_of(st.text(max_size=4), st.integers(), st.none())), max_size=8))
def test_docarray_v1_conversion(rows):
    docarray = pytest.importorskip("docarray")
    da = docarray.DocumentArray(
        [docarray.Document(text=t, tags={} if lbl is None else {"finetuner_label": lbl}) for t, lbl in rows]
    )
    result = _outcome(load_data, da)
    if isinstance(result, DocumentArray):
        assert len(result) == len(rows)
        _outcome(to_task_data, result)


def test_fuzz_helpers_catch_foreign_errors():
    with pytest.raises(ZeroDivisionError):
        _outcome(lambda: 1 / 0)
    assert math.isnan(float("nan"))


column_choices = st.one_of(st.integers(-2, 4), st.sampled_from(["text", "label", "image", "nope", "TEXT "]))


@FUZZ
@given(csv_like, st.tuples(column_choices, column_choices), st.booleans())
def test_read_csv_chosen_columns(text, columns, labelled):
    path = _write("cols.csv", text.encode("utf-8", "surrogatepass"))
    options = _outcome(CSVOptions, columns=columns, is_labeled=labelled)
    if isinstance(options, CSVOptions):
        _outcome(load_data, path, options)


@FUZZ
@given(st.lists(st.tuples(cells, cells, cells), min_size=1, max_size=5), st.sampled_from([None, CSVOptions()]))
def test_dataframe_rows(data, options):
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(data, columns=["text", "label", "extra"])
    result = _outcome(load_data, frame, options)
    if isinstance(result, DocumentArray):
        _outcome(check_data, ValidationReport(), result, "train_data")

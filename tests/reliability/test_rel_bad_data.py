"""Bad data, caught before any model is loaded: each case names the item (index, id, uri, CSV line)."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from tests.reliability.catalogue import (
    GOOD,
    Case,
    check_case,
    clip,
    csv,
    good_docs,
    image,
    images,
    lab,
    no_model_loading,
    retag,
    tensor_doc,
)

import finetuner
from finetuner import CSVOptions, Document, DocumentArray
from finetuner.errors import ConfigError, DataError, InputTypeError

pytestmark = pytest.mark.usefixtures(no_model_loading.__name__)


DATA_CASES = [
    # ---- data: emptiness, labels, classes -------------------------------------------------------------------
    Case("empty-list", DataError, ["train_data is empty"], train=lambda tmp: []),
    Case("empty-documentarray", DataError, ["train_data is empty"], train=lambda tmp: DocumentArray()),
    Case("eval-empty", DataError, ["eval_data is empty"], eval=lambda tmp: []),
    Case(
        "missing-label",
        DataError,
        ["train_data item 1 (id 'b')", "no tags['finetuner_label']"],
        train=lambda tmp: [lab("apple", id="a"), Document(text="pear", id="b"), *good_docs()],
    ),
    Case(
        "none-label",
        DataError,
        ["item 0 (id 'n')", "label None is not a usable label"],
        train=lambda tmp: [lab("apple", None, id="n"), *good_docs()],
    ),
    Case(
        "unhashable-label",
        DataError,
        ["item 4 (id 'u')", "label ['a'] is not a usable label"],
        train=lambda tmp: [*good_docs(), lab("apple", ["a"], id="u")],
    ),
    Case(
        "label-tuple-holding-list",
        DataError,
        ["item 4 (id 'u')", "not hashable"],
        train=lambda tmp: [*good_docs(), lab("apple", (["a"],), id="u")],
    ),
    Case(
        "nan-label",
        DataError,
        ["item 4 (id 'n')", "label is NaN"],
        train=lambda tmp: [*good_docs(), lab("apple", float("nan"), id="n")],
    ),
    Case(
        "tuple-empty-label",
        DataError,
        ["train_data item 2, column 2: empty label"],
        train=lambda tmp: [*GOOD[:2], ("x", "")],
    ),
    Case(
        "one-class",
        DataError,
        ["train_data has a single class ('fruit')", "at least 2 classes"],
        train=lambda tmp: GOOD[:2],
    ),
    Case(
        "singleton-class",
        DataError,
        ["train_data item 4 (id", "the only item of class 'tool'", "no positive"],
        train=lambda tmp: [*GOOD, ("hammer saw", "tool")],
    ),
    Case(
        "every-class-singleton",
        DataError,
        ["the only item of class 'a'", "the only item of class 'b'"],
        train=lambda tmp: [("x y", "a"), ("z w", "b")],
    ),
    # ---- data: content -------------------------------------------------------------------------------------
    Case(
        "empty-text-document",
        DataError,
        ["train_data item 1 (id 'e')", "empty text ('')"],
        train=lambda tmp: [lab("apple", "fruit"), lab("", "fruit", id="e"), *good_docs()],
    ),
    Case(
        "whitespace-text-document",
        DataError,
        ["item 0 (id 'w')", "empty text ('  \\n')"],
        train=lambda tmp: [lab("  \n", "fruit", id="w"), *good_docs()],
    ),
    Case(
        "non-str-text",
        DataError,
        ["item 0 (id 'i')", "text must be a str; received int"],
        train=lambda tmp: [lab(5, "fruit", id="i"), *good_docs()],
    ),
    Case(
        "no-content",
        DataError,
        ["item 4 (id 'nc')", "no content"],
        train=lambda tmp: [*good_docs(), Document(tags={"finetuner_label": "fruit"}, id="nc")],
    ),
    Case(
        "tuple-empty-text",
        DataError,
        ["train_data item 1, column 1: empty field ('')"],
        train=lambda tmp: [GOOD[0], ("", "fruit"), *GOOD[1:]],
    ),
    Case(
        "tuple-none-item",
        DataError,
        ["train_data item 0, column 1: empty field (None)"],
        train=lambda tmp: [(None, "fruit"), *GOOD],
    ),
    Case(
        "tuple-number-item",
        DataError,
        ["train_data item 4, column 1: cannot use int 7 as an item"],
        train=lambda tmp: [*GOOD, (7, "fruit")],
    ),
    Case(
        "several-bad-rows-all-reported",
        DataError,
        ["3 problems found before training", "item 0, column 1", "item 2, column 2", "item 5, column 1"],
        train=lambda tmp: [("", "a"), *GOOD[:1], ("x", None), *GOOD[1:3], (None, "b")],
    ),
    # ---- data: CSV files -----------------------------------------------------------------------------------
    Case("csv-empty-file", DataError, ["'train.csv': the file is empty"], train=lambda tmp: csv(tmp, "")),
    Case("csv-blank-lines", DataError, ["the file is empty"], train=lambda tmp: csv(tmp, "\n \n\n")),
    Case(
        "csv-header-only",
        DataError,
        ["has a header (text, label) but no data rows"],
        train=lambda tmp: csv(tmp, "text,label\n"),
    ),
    Case(
        "csv-ragged-row",
        DataError,
        ["'train.csv' line 3: 3 fields", "expected 2 like the header on line 1", "quoted"],
        train=lambda tmp: csv(tmp, "text,label\napple,fruit\npencil skirt, slim,skirt\ncar,vehicle\n"),
    ),
    Case(
        "csv-two-ragged-rows-and-empty-field",
        DataError,
        ["3 problems", "line 3: 3 fields", "line 4, column 'text': empty field", "line 6: 1 field"],
        train=lambda tmp: csv(tmp, "text,label\napple,fruit\na,b,c\n,fruit\ncar,vehicle\nlonely\n"),
    ),
    Case("csv-missing-file", DataError, ["'nope.csv': no such file"], train=lambda tmp: str(tmp / "nope.csv")),
    Case(
        "csv-bad-encoding",
        DataError,
        ["cannot decode line 3 as utf-8", "CSVOptions(encoding='latin-1')"],
        train=lambda tmp: csv(tmp, b"text,label\napple,fruit\ncaf\xe9,drink\ncar,vehicle\n"),
    ),
    Case(
        "csv-unclosed-quote",
        DataError,
        ["'train.csv' line 3", "a quote that is never closed"],
        train=lambda tmp: csv(tmp, 'text,label\napple,fruit\n"never closed,y\nb,z\n'),
    ),
    Case(
        "csv-missing-image",
        DataError,
        ["'train.csv' line 2, column 'image'", "'img/nope.png' looks like an image path but there is no such file"],
        train=lambda tmp: csv(tmp, "image,label\nimg/nope.png,a\n"),
    ),
    Case("csv-one-column", DataError, ["found 1 column", "need two"], train=lambda tmp: csv(tmp, "apple\nbanana\n")),
    Case(
        "csv-unknown-column",
        ConfigError,
        ["CSVOptions.columns names 'category', which is not a column"],
        train=lambda tmp: csv(tmp, "text,label\na,b\n"),
        options={"csv_options": CSVOptions(columns=("text", "category"))},
    ),
    # ---- data: images --------------------------------------------------------------------------------------
    Case(
        "image-uri-missing",
        DataError,
        ["train_data item 0 (id 'img0', uri", "missing.png' does not exist"],
        train=lambda tmp: images(tmp, str(tmp / "missing.png")),
    ),
    Case(
        "image-uri-is-folder",
        DataError,
        ["item 0 (id 'img0'", "is a folder, not an image file"],
        train=lambda tmp: images(tmp, str(tmp)),
    ),
    Case(
        "image-does-not-decode",
        DataError,
        ["item 1 (id 'img1'", "does not decode as an image"],
        train=lambda tmp: images(tmp, image(tmp, "fine.png"), str(csv(tmp, "not an image", "broken.png"))),
    ),
    Case(
        "image-file-url-missing",
        DataError,
        ["item 0 (id 'img0', uri 'file:///no/such/dir/x.jpg')", "does not exist"],
        train=lambda tmp: images(tmp, "file:///no/such/dir/x.jpg"),
    ),
    Case(
        "image-unsupported-scheme",
        DataError,
        ["item 0 (id 'img0', uri 's3://bucket/a.png')", "unsupported uri scheme 's3'"],
        train=lambda tmp: images(tmp, "s3://bucket/a.png"),
    ),
    Case(
        "image-bad-data-uri",
        DataError,
        ["item 0 (id 'img0'", "does not decode as an image"],
        train=lambda tmp: images(tmp, "data:image/png;base64,!!!notbase64"),
    ),
    Case(
        "image-blob-garbage",
        DataError,
        ["item 0 (id 'b0')", "does not decode as an image"],
        train=lambda tmp: [
            Document(blob=b"\x00garbage", tags={"finetuner_label": "a"}, id="b0"),
            *images(tmp)[1:],
        ],
    ),
    Case(
        "image-blob-empty",
        DataError,
        ["item 0 (id 'b0')", "empty or non-bytes blob"],
        train=lambda tmp: [Document(blob=b"", tags={"finetuner_label": "a"}, id="b0"), *images(tmp)[1:]],
    ),
    Case(
        "tensor-nan",
        DataError,
        ["item 0 (id 't0')", "1 NaN/non-finite value(s)"],
        train=lambda tmp: (
            [tensor_doc(np.array([[np.nan, 0.0], [0.0, 0.0]]), "a", 0)]
            + [tensor_doc(np.zeros((2, 2)), "ab"[i // 2], i) for i in range(1, 4)]
        ),
    ),
    Case(
        "tensor-inf-torch",
        DataError,
        ["item 3 (id 't3')", "inf/non-finite"],
        train=lambda tmp: (
            [tensor_doc(torch.zeros(3, 4, 4), "ab"[i // 2], i) for i in range(3)]
            + [tensor_doc(torch.full((3, 4, 4), math.inf), "b", 3)]
        ),
    ),
    Case(
        "tensor-wrong-shape",
        DataError,
        ["item 0 (id 't0')", "received shape (5,)"],
        train=lambda tmp: (
            [tensor_doc(np.zeros(5), "a", 0)] + [tensor_doc(np.zeros((2, 2)), "ab"[i // 2], i) for i in range(1, 4)]
        ),
    ),
    Case(
        "mixed-text-and-image",
        DataError,
        ["mixes text and image items"],
        train=lambda tmp: [*good_docs(), Document(uri=image(tmp, "m.png"), tags={"finetuner_label": "fruit"})],
    ),
    Case(
        "eval-other-modality",
        DataError,
        ["eval_data holds image items but train_data holds text items"],
        eval=lambda tmp: images(tmp),
    ),
    # ---- data: pairs and CLIP ------------------------------------------------------------------------------
    Case(
        "clip-root-with-two-texts",
        DataError,
        ["train_data item 3 (id 'r3')", "has text and text chunks", "exactly one text and one image chunk"],
        train=lambda tmp: [
            *clip(tmp),
            Document(chunks=[Document(text="a"), Document(text="b")], id="r3"),
        ],
    ),
    Case(
        "clip-root-with-two-images",
        DataError,
        ["item 0 (id 'r0')", "has image and image chunks"],
        train=lambda tmp: [
            Document(chunks=[Document(uri=image(tmp, "x.png")), Document(uri=image(tmp, "y.png"))], id="r0"),
            *clip(tmp),
        ],
    ),
    Case(
        "pair-root-with-three-chunks",
        DataError,
        ["item 1 (id 'r1')", "exactly 2 chunks; found 3"],
        train=lambda tmp: [
            Document(chunks=[Document(text="q"), Document(text="d")]),
            Document(chunks=[Document(text="a"), Document(text="b"), Document(text="c")], id="r1"),
        ],
    ),
    Case(
        "pair-chunk-without-content",
        DataError,
        ["item 0 (id 'r0')", "chunk 1 has no content"],
        train=lambda tmp: [
            Document(chunks=[Document(text="q"), Document()], id="r0"),
            Document(chunks=[Document(text="a"), Document(text="b")]),
        ],
    ),
    Case(
        "pair-chunk-empty-text",
        DataError,
        ["item 1 (id 'r1') chunk 0", "empty text"],
        train=lambda tmp: [
            Document(chunks=[Document(text="q"), Document(text="d")]),
            Document(chunks=[Document(text=" "), Document(text="b")], id="r1"),
        ],
    ),
    Case(
        "pair-score-nan",
        DataError,
        ["item 0 (id 's0')", "tags['finetuner_score'] must be a finite number"],
        train=lambda tmp: [
            Document(chunks=[Document(text="q"), Document(text="d")], tags={"finetuner_score": math.nan}, id="s0"),
            Document(chunks=[Document(text="a"), Document(text="b")], tags={"finetuner_score": 1.0}),
        ],
    ),
    Case(
        "single-pair",
        DataError,
        ["train_data holds a single pair"],
        train=lambda tmp: [Document(chunks=[Document(text="q"), Document(text="d")])],
    ),
    Case(
        "pairs-mixed-with-labelled",
        DataError,
        ["mixes pair documents (with chunks) and labelled documents, first at item 4"],
        train=lambda tmp: [*good_docs(), Document(chunks=[Document(text="q"), Document(text="d")])],
    ),
    # ---- data: triplets and scored pairs with a loss or setting that does not fit them, ambiguous layouts ------
    Case(
        "triplets-with-a-pair-loss",
        ConfigError,
        [
            "train_data holds text-text triplets, which train with InfoNCELoss (the default: in-batch negatives plus "
            "the explicit negatives), TripletMarginLoss (the rows' own triplets) or MarginMSE (a teacher's margins)",
            "received loss='NTXentLoss'",
        ],
        train=lambda tmp: csv(tmp, "anchor,positive,negative\napple,banana,car\nbus,train,grape\n"),
        options={"loss": "NTXentLoss"},
    ),
    Case(
        "triplets-with-a-miner",
        ConfigError,
        ["miners pick pairs from labelled batches; text-text triplets carry their own: drop miner="],
        train=lambda tmp: csv(tmp, "anchor,positive,negative\napple,banana,car\nbus,train,grape\n"),
        options={"miner": "TripletMarginMiner"},
    ),
    Case(
        "scored-pairs-with-infonce",
        ConfigError,
        ["train_data holds text-text scored pairs, which train with CoSENTLoss", "received loss='InfoNCELoss'"],
        train=lambda tmp: [("apple", "banana", 0.0), ("car", "bus", 1.0)],
        options={"loss": "InfoNCELoss"},
    ),
    Case(
        "scores-outside-the-cosine-scale",
        DataError,
        ["train_data row 1 (id", "has score 4.5: CosineSimilarityLoss regresses the cosine on the score",
         "use loss='CoSENTLoss'"],
        train=lambda tmp: [("apple", "banana", 0.0), ("car", "bus", 4.5)],
        options={"loss": "CosineSimilarityLoss"},
    ),
    Case(
        "scored-loss-on-labelled-items",
        ConfigError,
        ["CoSENTLoss trains on scored pairs (a, b, score), but train_data holds labelled text items"],
        options={"loss": "CoSENTLoss"},
    ),
    Case(
        "negative-equals-positive",
        DataError,
        ["'train.csv' line 3, column 'negative': the negative is the same as the row's positive ('train')"],
        train=lambda tmp: csv(tmp, "anchor,positive,negative\napple,banana,car\nbus,train,train\n"),
    ),
    Case(
        "headerless-pairs-or-labels",
        DataError,
        ["2 columns without a header", "'truck'", "CSVOptions(is_labeled=True)", "CSVOptions(is_labeled=False)"],
        train=lambda tmp: csv(tmp, "apple,fruit\nbanana,fruit\ncar,vehicle\nbus,vehicle\ntrain,truck\n"),
    ),
    Case(
        "pair-tuples-read-as-labels-name-is-labeled",
        DataError,
        ["the only item of class 'banana'", "CSVOptions(is_labeled=False)"],
        train=lambda tmp: [("apple", "banana"), ("car", "bus"), ("cherry", "grape")],
    ),
    # ---- data: forms ---------------------------------------------------------------------------------------
    Case("data-of-unknown-type", InputTypeError, ["train_data: cannot read a int"], train=lambda tmp: 42),
    Case(
        "list-mixing-forms",
        InputTypeError,
        ["train_data item 2: a str", "all items of a list must be of one form"],
        train=lambda tmp: [*GOOD[:2], "a loose string"],
    ),
    Case(
        "documents-with-a-non-document",
        InputTypeError,
        ["train_data item 1: a int (5) in a list of Documents"],
        train=lambda tmp: [Document(text="a"), 5],
    ),
    Case(
        "tags-set-to-a-non-dict",
        InputTypeError,
        ["train_data item 4 (id 'tg'): tags must be a dict; received str"],
        train=lambda tmp: [*good_docs(), retag(Document(text="a", id="tg"), "fruit")],
    ),
]


@pytest.mark.parametrize("case", DATA_CASES, ids=[c.id for c in DATA_CASES])
def test_bad_data_is_caught_before_training(case: Case, tmp_path: Path) -> None:
    check_case(case, tmp_path)


def test_a_missing_image_among_many_fails_before_step_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # headers are decoded for a sample only, but every file is checked for existence
    monkeypatch.setattr("finetuner.validation.data.HEADER_CHECKS", 5)
    opened: list[Any] = []
    real = __import__("finetuner.validation.data", fromlist=["_header_problem"])._header_problem
    monkeypatch.setattr("finetuner.validation.data._header_problem", lambda s: opened.append(s) or real(s))
    paths = [image(tmp_path, f"p{i}.png") for i in range(60)]
    paths[47] = str(tmp_path / "p47-missing.png")
    docs = [Document(uri=p, tags={"finetuner_label": i % 3}, id=f"p{i}") for i, p in enumerate(paths)]
    with pytest.raises(DataError, match=re.escape("train_data item 47 (id 'p47'")):
        finetuner.fit("bert-base-en", docs)
    assert len(opened) == 5, "only a sample of headers is decoded"


def test_single_item_classes_in_eval_data_only_warn() -> None:
    from finetuner.validation import ValidationReport
    from finetuner.validation.data import check_data

    report = ValidationReport()
    assert check_data(report, [*GOOD, ("hammer", "tool")], "eval_data", train=False) is not None
    assert not report.problems
    assert any("single item" in w for w in report.warnings)

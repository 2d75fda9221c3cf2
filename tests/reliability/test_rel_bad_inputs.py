"""The catalogue of bad inputs: each one is caught before any model is loaded, with our error and a clear message.

Every case calls ``finetuner.fit`` with one bad input (the model loader is replaced by a tripwire, so a case that
got past validation would fail loudly) and checks the error class and message fragments that name the item (index,
id, uri, CSV line), what was received and how to fix it. ``CASES`` counts them.
"""

from __future__ import annotations

import math
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import finetuner
from finetuner import CSVOptions, Document, DocumentArray
from finetuner.errors import ConfigError, DataError, FinetunerError, InputTypeError, ValidationError
from finetuner.training import Callback, TrainingCheckpoint

PNG = Path(__file__).resolve().parents[1] / "fixtures" / "fashion_mnist" / "train" / "20.png"
GOOD = [("apple banana", "fruit"), ("cherry grape", "fruit"), ("car bus", "vehicle"), ("train truck", "vehicle")]


def lab(text: Any, label: Any = "x", **kw: Any) -> Document:
    return Document(text=text, tags={"finetuner_label": label}, **kw)


def retag(doc: Document, tags: Any) -> Document:
    doc.tags = tags  # set after construction, past the constructor's own check
    return doc


def good_docs() -> DocumentArray:
    return DocumentArray(lab(t, label, id=f"d{i}") for i, (t, label) in enumerate(GOOD))


def csv(tmp: Path, text: str, name: str = "train.csv") -> Path:
    path = tmp / name
    path.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
    return path


def image(tmp: Path, name: str) -> str:
    path = tmp / name
    shutil.copy(PNG, path)
    return str(path)


def images(tmp: Path, *uris: str) -> DocumentArray:
    """Four image items in two classes; the given uris replace the first ones."""
    paths = [*uris, *[image(tmp, f"ok{i}.png") for i in range(4 - len(uris))]]
    return DocumentArray(
        Document(uri=u, tags={"finetuner_label": "ab"[i // 2]}, id=f"img{i}") for i, u in enumerate(paths)
    )


def clip(tmp: Path, roots: int = 3) -> list[Document]:
    return [
        Document(chunks=[Document(text=f"a photo {i}", modality="text"), Document(uri=image(tmp, f"c{i}.png"))])
        for i in range(roots)
    ]


def tensor_doc(array: Any, label: str, i: int) -> Document:
    return Document(tensor=array, tags={"finetuner_label": label}, id=f"t{i}")


@dataclass
class Case:
    """One bad input: how to build ``fit``'s arguments, the error it must raise and message fragments."""

    id: str
    error: type[BaseException]
    fragments: list[str]
    train: Callable[[Path], Any] = lambda tmp: list(GOOD)
    eval: Callable[[Path], Any] | None = None
    options: dict[str, Any] = field(default_factory=dict)
    model: Any = "bert-base-en"
    skip: str | None = None


CASES = [
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
    # ---- options: names ------------------------------------------------------------------------------------
    Case(
        "unknown-loss",
        ConfigError,
        ["unknown loss 'TripletMarginLos'", "did you mean 'TripletMarginLoss'"],
        options={"loss": "TripletMarginLos"},
    ),
    Case(
        "unknown-miner",
        ConfigError,
        ["unknown miner 'TripletMiner'", "did you mean"],
        options={"miner": "TripletMiner"},
    ),
    Case(
        "unknown-optimizer",
        ConfigError,
        ["unknown optimizer 'Adamw'", "did you mean 'AdamW'"],
        options={"optimizer": "Adamw"},
    ),
    Case(
        "unknown-scheduler",
        ConfigError,
        ["unknown scheduler 'cosin'", "did you mean 'cosine'"],
        options={"scheduler": "cosin"},
    ),
    Case(
        "unknown-sampler",
        ConfigError,
        ["unknown sampler 'balanced'", "Valid sampler names"],
        options={"sampler": "balanced"},
    ),
    Case(
        "unknown-model-name",
        ConfigError,
        ["unknown model 'bert-bas-en'", "did you mean 'bert-base-en'"],
        model="bert-bas-en",
    ),
    Case(
        "model-folder-missing",
        ConfigError,
        ["looks like a local folder but there is no such folder"],
        model="./no/such/model",
    ),
    Case("model-wrong-type", InputTypeError, ["model must be a model name", "received int"], model=123),
    Case(
        "unknown-fit-option", ConfigError, ["unknown option(s) 'epoch' (did you mean 'epochs'?)"], options={"epoch": 3}
    ),
    # ---- options: numbers ----------------------------------------------------------------------------------
    Case("epochs-zero", ConfigError, ["epochs must be an int >= 1; received 0"], options={"epochs": 0}),
    Case("epochs-float", ConfigError, ["epochs must be an int >= 1; received 2.5"], options={"epochs": 2.5}),
    Case(
        "learning-rate-negative",
        ConfigError,
        ["learning_rate must be a number in (0, 1); received -0.1"],
        options={"learning_rate": -0.1},
    ),
    Case(
        "learning-rate-nan",
        ConfigError,
        ["learning_rate must be a number in (0, 1); received nan"],
        options={"learning_rate": math.nan},
    ),
    Case("batch-size-one", ConfigError, ["batch_size must be an int >= 2", "received 1"], options={"batch_size": 1}),
    Case(
        "batch-size-str", ConfigError, ["batch_size must be an int >= 2", "received '32'"], options={"batch_size": "32"}
    ),
    Case(
        "val-split-too-big",
        ConfigError,
        ["val_split must be a number in [0, 1); received 1.5"],
        options={"val_split": 1.5},
    ),
    Case(
        "val-split-and-eval-data",
        ConfigError,
        ["give either eval_data or val_split, not both"],
        eval=lambda tmp: list(GOOD),
        options={"val_split": 0.2},
    ),
    Case("output-dim-zero", ConfigError, ["output_dim must be an int >= 1", "received 0"], options={"output_dim": 0}),
    Case(
        "items-per-class-zero",
        ConfigError,
        ["num_items_per_class must be an int >= 1; received 0"],
        options={"num_items_per_class": 0},
    ),
    Case(
        "grad-accumulation-zero",
        ConfigError,
        ["gradient_accumulation_steps must be an int >= 1"],
        options={"gradient_accumulation_steps": 0},
    ),
    Case("log-every-zero", ConfigError, ["log_every must be an int >= 1; received 0"], options={"log_every": 0}),
    Case(
        "max-grad-norm-negative",
        ConfigError,
        ["max_grad_norm must be a positive number"],
        options={"max_grad_norm": -1.0},
    ),
    Case("freeze-str", ConfigError, ["freeze must be True, False or a layer count"], options={"freeze": "yes"}),
    Case("seed-str", ConfigError, ["seed must be an int or None; received 'abc'"], options={"seed": "abc"}),
    Case(
        "warmup-ratio-too-big",
        ConfigError,
        ["warmup_ratio'] must be a number in [0, 1); received 2"],
        options={"scheduler": "linear", "scheduler_options": {"warmup_ratio": 2}},
    ),
    Case(
        "eval-batch-size-zero",
        ConfigError,
        ["eval_batch_size must be an int >= 1; received 0"],
        options={"eval_batch_size": 0},
    ),
    Case("limit-zero", ConfigError, ["limit must be an int >= 1; received 0"], options={"limit": 0}),
    # ---- options: devices ----------------------------------------------------------------------------------
    Case(
        "cuda-without-cuda",
        ConfigError,
        ["device='cuda' but no CUDA device is available", "Use device='cpu'"],
        options={"device": "cuda"},
        skip="this machine has CUDA" if torch.cuda.is_available() else None,
    ),
    Case("cuda-index-without-gpu", ConfigError, ["device='cuda:7'"], options={"device": "cuda:7"}),
    Case(
        "unknown-device",
        ConfigError,
        ["device must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'; received 'gpu'"],
        options={"device": "gpu"},
    ),
    Case(
        "fp16-on-cpu",
        ConfigError,
        ["precision='fp16' needs a CUDA GPU"],
        options={"precision": "fp16", "device": "cpu"},
    ),
    # ---- options: types and option keys --------------------------------------------------------------------
    Case(
        "loss-options-not-dict",
        InputTypeError,
        ["loss_options must be a dict (or None); received list"],
        options={"loss_options": [("margin", 0.1)]},
    ),
    Case(
        "optimizer-options-str",
        InputTypeError,
        ["optimizer_options must be a dict (or None); received str"],
        options={"optimizer_options": "fast"},
    ),
    Case(
        "model-options-not-dict",
        InputTypeError,
        ["model_options must be a dict or None; received str"],
        options={"model_options": "mean"},
    ),
    Case(
        "loss-option-misspelt",
        ConfigError,
        ["loss TripletMarginLoss has no option 'margn' (did you mean 'margin'?)"],
        options={"loss_options": {"margn": 0.2}},
    ),
    Case(
        "miner-option-misspelt",
        ConfigError,
        ["miner TripletMarginMiner has no option 'type_of_triplet'"],
        options={"miner": "TripletMarginMiner", "miner_options": {"type_of_triplet": "hard"}},
    ),
    Case(
        "optimizer-option-misspelt",
        ConfigError,
        ["optimizer Adam has no option 'betaz' (did you mean 'betas'?)"],
        options={"optimizer_options": {"betaz": (0.9, 0.99)}},
    ),
    Case(
        "lr-in-optimizer-options",
        ConfigError,
        ["not optimizer_options={'lr': ...}"],
        options={"optimizer_options": {"lr": 0.1}},
    ),
    Case(
        "miner-options-without-miner",
        ConfigError,
        ["miner_options given without a miner"],
        options={"miner_options": {"margin": 0.1}},
    ),
    Case(
        "scheduler-options-without-scheduler",
        ConfigError,
        ["scheduler_options given without a scheduler"],
        options={"scheduler_options": {"num_warmup_steps": 3}},
    ),
    Case(
        "loss-instance-with-options",
        ConfigError,
        ["loss_options only apply to a loss given by name"],
        options={"loss": torch.nn.MSELoss(), "loss_options": {"margin": 1}},
    ),
    Case(
        "loss-wrong-type",
        InputTypeError,
        ["loss must be a loss name or a torch.nn.Module; received int"],
        options={"loss": 3},
    ),
    Case(
        "callbacks-not-a-list",
        InputTypeError,
        ["callbacks must be a list of callbacks; received TrainingCheckpoint"],
        options={"callbacks": TrainingCheckpoint()},
    ),
    Case(
        "callback-class-not-instance",
        InputTypeError,
        ["callbacks[0] is the class TrainingCheckpoint, not an instance"],
        options={"callbacks": [TrainingCheckpoint]},
    ),
    Case(
        "callback-of-wrong-type",
        InputTypeError,
        ["callbacks[1] is a str, not a callback"],
        options={"callbacks": [Callback(), "early-stop"]},
    ),
    Case(
        "csv-options-as-dict",
        InputTypeError,
        ["csv_options must be a finetuner.CSVOptions; received dict"],
        options={"csv_options": {"is_labeled": True}},
    ),
    Case(
        "run-name-escapes",
        ConfigError,
        ["run_name must be a plain folder name", "received '../escape'"],
        options={"run_name": "../escape"},
    ),
    Case(
        "verbose-not-bool",
        InputTypeError,
        ["verbose must be True or False; received 'yes'"],
        options={"verbose": "yes"},
    ),
    Case(
        "resume-from-unknown-run",
        ConfigError,
        ["resume_from='no-such-run': no run named 'no-such-run'"],
        options={"resume_from": "no-such-run"},
    ),
    Case(
        "resume-from-folder-without-checkpoints",
        ConfigError,
        ["no complete checkpoint in"],
        options={"resume_from": "."},
    ),
]


@pytest.fixture(autouse=True)
def _no_model_loading(monkeypatch: pytest.MonkeyPatch) -> None:
    """Validation runs before the model is built: a case that reaches the loader is a test failure."""

    def tripwire(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a model was loaded: validation let this bad input through")

    monkeypatch.setattr("finetuner.training.fit.build_model", tripwire)


def test_catalogue_size() -> None:
    assert len(CASES) >= 100, len(CASES)
    assert len({c.id for c in CASES}) == len(CASES), "case ids are unique"


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_caught_before_training(case: Case, tmp_path: Path) -> None:
    if case.skip:
        pytest.skip(case.skip)
    train = case.train(tmp_path)
    evals = case.eval(tmp_path) if case.eval else None
    with pytest.raises(case.error) as info:
        finetuner.fit(case.model, train, evals, **case.options)
    err = info.value
    assert isinstance(err, FinetunerError), f"{type(err).__name__} is not one of finetuner's errors"
    assert isinstance(err, (ValueError, TypeError))
    message = str(err)
    for fragment in case.fragments:
        assert fragment in message, f"{fragment!r} not in:\n{message}"


def test_all_problems_are_reported_at_once(tmp_path: Path) -> None:
    train = [
        lab("", "fruit", id="e1"),  # empty text
        lab("apple", None, id="n1"),  # missing label
        *good_docs(),
        Document(uri=str(tmp_path / "gone.png"), tags={"finetuner_label": "fruit"}, id="i1"),  # image among texts
    ]
    evals = [("", "x"), ("b", "y")]
    with pytest.raises(ValidationError) as info:
        finetuner.fit(
            "bert-base-en",
            train,
            evals,
            epochs=0,
            loss="TripletMarginLos",
            loss_options=[1],
            device="gpu",
        )
    err = info.value
    assert isinstance(err, DataError) and isinstance(err, ConfigError) and isinstance(err, TypeError)
    text = "\n".join(err.problems)
    for fragment in (
        "epochs must be an int >= 1",
        "unknown loss 'TripletMarginLos'",
        "loss_options must be a dict",
        "device must be",
        "item 0 (id 'e1'): empty text",
        "item 6 (id 'i1'",
        "gone.png' does not exist",
        "eval_data item 0, column 1: empty field",
    ):
        assert fragment in text, f"{fragment!r} not in:\n{text}"
    assert f"{len(err.problems)} problems found before training" in str(err)


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

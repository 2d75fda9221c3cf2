"""load_data on in-memory forms: Documents, tuples, dicts, plain items, DataFrames, datasets, wrong types."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from finetuner.data import LABEL_TAG, SCORE_TAG, CSVOptions, Document, DocumentArray, load_data
from finetuner.errors import DataError, InputTypeError

IMG = "https://example.org/skirt-1.png"


def test_our_document_array_is_returned_as_is() -> None:
    da = DocumentArray([Document(text="a", tags={LABEL_TAG: "x"})])
    assert load_data(da) is da


def test_lists_of_documents_are_not_copied() -> None:
    docs = [Document(text="a"), ..., Document(text="b")]
    da = load_data(docs)
    assert isinstance(da, DocumentArray) and len(da) == 2
    assert da[0] is docs[0] and da[1] is docs[2]
    single = Document(text="c")
    assert load_data(single)[0] is single
    assert load_data((docs[0],))[0] is docs[0]


def test_labelled_tuples() -> None:
    da = load_data([("pencil skirt", "skirt"), ["striped shirt", "shirt"], ("a dress", 3)])
    assert da.texts == ["pencil skirt", "striped shirt", "a dress"]
    assert [d.tags for d in da] == [{LABEL_TAG: "skirt"}, {LABEL_TAG: "shirt"}, {LABEL_TAG: 3}]
    assert all(d.modality is None and not len(d.chunks) for d in da)


def test_image_label_tuples(
    png: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    png("img/a.png")
    monkeypatch.chdir(tmp_path)
    da = load_data([("img/a.png", "skirt"), (IMG, "skirt")])
    assert [d.uri for d in da] == [str(tmp_path / "img" / "a.png"), IMG]
    assert all(d.label == "skirt" and d.text is None for d in da)


def test_second_element_image_makes_a_clip_pair() -> None:
    da = load_data([("pencil skirt", IMG), ("a shirt", "https://example.org/shirt.jpg")])
    for doc in da:
        assert LABEL_TAG not in doc.tags
        assert [c.modality for c in doc.chunks] == ["text", "image"]
    assert da[0].chunks[0].text == "pencil skirt" and da[0].chunks[1].uri == IMG


def test_pairs_with_is_labeled_false() -> None:
    da = load_data(
        [("how tall is it", "it is 3 m tall"), (IMG, "pencil skirt")], CSVOptions(is_labeled=False)
    )
    assert [(c.modality, c.text) for c in da[0].chunks] == [
        ("text", "how tall is it"),
        ("text", "it is 3 m tall"),
    ]
    assert [c.modality for c in da[1].chunks] == ["text", "image"]  # the text chunk always comes first
    assert da[1].chunks[0].text == "pencil skirt"


def test_is_labeled_true_refuses_image_labels() -> None:
    with pytest.raises(DataError, match=r"data item 0, column 2: the label .* is an image source"):
        load_data([("pencil skirt", IMG)], CSVOptions(is_labeled=True))


def test_scored_pairs() -> None:
    da = load_data([("a", "b", 0.5), ("c", "d", np.float32(1))])
    assert [d.tags[SCORE_TAG] for d in da] == [0.5, 1.0]
    assert [c.text for c in da[0].chunks] == ["a", "b"]
    with pytest.raises(DataError, match=r"item 0 holds a number after its first two elements, data item 1 does not"):
        load_data([("a", "b", 0.5), ("c", "d", "high")])
    with pytest.raises(DataError, match=r"3-tuples are not \(item, label\), which CSVOptions\(is_labeled=True\)"):
        load_data([("a", "b", 0.5)], CSVOptions(is_labeled=True))


def test_tuples_of_other_lengths_name_the_item() -> None:
    with pytest.raises(DataError, match="train_data item 1: a tuple of 4 elements"):
        load_data([("a", "x"), ("b", "y", 1, 2)], name="train_data")
    with pytest.raises(DataError, match="item 0: found 1 column"):
        load_data([("a",)], CSVOptions(columns=(0, 1)))
    da = load_data([("a", "b", "x", "y")], CSVOptions(columns=(0, 3)))
    assert da[0].text == "a" and da[0].tags == {"column_2": "b", "column_3": "x", LABEL_TAG: "y"}


def test_empty_cells_name_the_item() -> None:
    with pytest.raises(DataError, match="item 1, column 1: empty field"):
        load_data([("a", "x"), ("", "y")])
    with pytest.raises(DataError, match="item 0, column 2: empty label"):
        load_data([("a", None)])


def test_mixed_lists_name_the_first_odd_item() -> None:
    with pytest.raises(InputTypeError, match=r"data item 2: a str .* in a list of Documents"):
        load_data([Document(text="a"), ..., "b"])
    with pytest.raises(InputTypeError, match="item 1: a Document"):
        load_data([("a", "x"), Document(text="b")])


def test_plain_items_become_unlabelled_documents(png: Callable[[str], Path], tmp_path: Path) -> None:
    path = png("a.png")
    da = load_data(["a pencil skirt", str(path), Path(path), b"raw", np.zeros(3)])
    assert da[0].text == "a pencil skirt"
    assert da[1].uri == da[2].uri == str(path)
    assert da[3].blob == b"raw" and da[4].tensor is not None
    assert all(not d.tags for d in da)


def test_dicts() -> None:
    da = load_data(
        [{"label": "skirt", "text": "pencil skirt", "id": 7}, {"label": "shirt", "text": "a", "id": 8}]
    )
    assert da[0].text == "pencil skirt" and da[0].tags == {"id": 7, LABEL_TAG: "skirt"}
    pairs = load_data([{"query": "q", "document": "d"}])
    assert [c.text for c in pairs[0].chunks] == ["q", "d"]
    with pytest.raises(DataError, match=r"item 1: keys .* differ .*missing: \['label'\]"):
        load_data([{"text": "a", "label": "x"}, {"text": "b"}])


def test_size_and_sampling_apply_to_tuples() -> None:
    rows = [(f"text {i}", f"label {i % 3}") for i in range(200)]
    assert len(load_data(rows, CSVOptions(size=7))) == 7
    a = load_data(rows, CSVOptions(sampling_rate=0.25, seed=3)).texts
    b = load_data(rows, CSVOptions(sampling_rate=0.25, seed=3)).texts
    assert a == b and 20 < len(a) < 80


def test_empty_list_gives_an_empty_array() -> None:
    assert len(load_data([])) == 0 and len(load_data([..., ...])) == 0


@pytest.mark.parametrize("bad", [3, 2.5, {"text": ["a"]}, {("a", "b")}, np.zeros(3), None, b"a,b"])
def test_other_types_are_input_type_errors(bad: object) -> None:
    with pytest.raises(InputTypeError, match=r"eval_data: cannot read a .*; give .*CSV file path.*DataFrame"):
        load_data(bad, name="eval_data")


def test_dataframes() -> None:
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"label": [0, 1, 1], "text": ["a", "b", "c"], "source": ["x", None, "z"]})
    da = load_data(frame)
    assert da.texts == ["a", "b", "c"]
    assert [d.label for d in da] == [0, 1, 1] and type(da[0].label) is int
    assert da[0].tags["source"] == "x" and "source" not in da[1].tags  # empty extra cells are skipped
    pairs = load_data(pd.DataFrame({"query": ["q1"], "document": ["d1"]}))
    assert [c.text for c in pairs[0].chunks] == ["q1", "d1"]
    clip = load_data(pd.DataFrame({"image": [IMG], "caption": ["a skirt"]}))
    assert [c.modality for c in clip[0].chunks] == ["text", "image"]
    with pytest.raises(DataError, match="train_data row 5, column 'text': empty field"):
        load_data(pd.DataFrame({"text": ["a", None], "label": [1, 2]}, index=[4, 5]), name="train_data")
    with pytest.raises(DataError, match="found 1 column"):
        load_data(pd.DataFrame({"text": ["a"]}))


class FakeDataset:
    """Behaves like a Hugging Face ``datasets.Dataset``: ``column_names`` and iteration over dict rows."""

    def __init__(self, columns: dict[str, list[Any]], streaming: bool = False) -> None:
        self.columns = columns
        self.column_names = None if streaming else list(columns)

    def __len__(self) -> int:
        return len(next(iter(self.columns.values())))

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for i in range(len(self)):
            yield {name: values[i] for name, values in self.columns.items()}


def test_hugging_face_datasets() -> None:
    data = {"sentence": ["good", "bad", "fine"], "label": [1, 0, 1], "idx": [0, 1, 2]}
    da = load_data(FakeDataset(data))
    assert da.texts == ["good", "bad", "fine"] and [d.label for d in da] == [1, 0, 1]
    assert da[2].tags == {"idx": 2, LABEL_TAG: 1}
    assert load_data(FakeDataset(data, streaming=True)).texts == da.texts
    assert len(load_data(FakeDataset(data), CSVOptions(size=2))) == 2
    images = FakeDataset({"image": [{"bytes": b"png", "path": None}], "text": ["a cat"]})
    pair = load_data(images)[0]
    assert (pair.chunks[0].text, pair.chunks[1].blob) == ("a cat", b"png")


def test_hugging_face_dataset_dict_asks_for_a_split() -> None:
    class FakeDatasetDict(dict):
        @property
        def column_names(self) -> dict[str, list[str]]:
            return {"train": ["text", "label"], "test": ["text", "label"]}

    with pytest.raises(InputTypeError, match=r"pass one split, e\.g\. data\['train'\]"):
        load_data(FakeDatasetDict())

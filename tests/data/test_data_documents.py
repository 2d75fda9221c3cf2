"""Document content routing and DocumentArray behaviour (indexing, embeddings, Ellipsis placeholders)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from finetuner.data import LABEL_TAG, Document, DocumentArray
from finetuner.errors import InputTypeError


@pytest.mark.parametrize(
    ("content", "field"),
    [
        ("pencil skirt", "text"),
        (b"\x89PNG", "blob"),
        (bytearray(b"ab"), "blob"),
        (memoryview(b"ab"), "blob"),
        (np.zeros((2, 3)), "tensor"),
        (torch.zeros(2, 3), "tensor"),
    ],
)
def test_content_routes_to_one_field(content: object, field: str) -> None:
    doc = Document(content=content)
    assert doc.content_type == field
    others = {"text", "blob", "tensor"} - {field}
    assert all(getattr(doc, name) is None for name in others)
    if field == "blob":
        assert doc.blob == bytes(content)  # type: ignore[arg-type]
    else:
        assert doc.content is content


def test_content_setter_replaces_previous_content() -> None:
    doc = Document(content="text")
    doc.content = b"raw"
    assert (doc.text, doc.blob) == (None, b"raw")
    doc.content = None
    assert doc.content is None and doc.content_type is None


def test_content_of_unknown_type_names_it() -> None:
    with pytest.raises(InputTypeError, match="received dict"):
        Document(content={"a": 1})
    with pytest.raises(TypeError):  # InputTypeError is a TypeError
        Document(content=3.5)


def test_fields_ids_and_label() -> None:
    doc = Document(uri="img/a.png", tags={LABEL_TAG: "skirt"}, modality="image", mime_type="image/png")
    assert (doc.uri, doc.label, doc.modality, doc.mime_type) == ("img/a.png", "skirt", "image", "image/png")
    assert len({Document().id for _ in range(50)}) == 50
    assert Document(id=7).id == "7"
    tags = {"a": 1}
    assert Document(tags=tags).tags is not tags  # the caller's dict is not shared


def test_chunks_are_a_document_array() -> None:
    root = Document(chunks=[Document(text="a", modality="text"), Document(uri="b.png", modality="image")])
    assert isinstance(root.chunks, DocumentArray)
    assert [c.modality for c in root.chunks] == ["text", "image"]


def test_document_array_drops_ellipsis_placeholders() -> None:
    da = DocumentArray([Document(text="a"), ..., Document(text="b"), ...])
    assert da.texts == ["a", "b"]
    da.append(...)
    da.extend([..., Document(text="c")])
    assert da.texts == ["a", "b", "c"]


@pytest.mark.parametrize("bad", ["a text", ("a", "b"), None, 3])
def test_document_array_rejects_other_items_naming_the_index(bad: object) -> None:
    with pytest.raises(InputTypeError, match=rf"item 1 is {type(bad).__name__}"):
        DocumentArray([Document(text="ok"), bad])


def test_document_array_checks_every_way_in() -> None:
    da = DocumentArray([Document(text="a")])
    with pytest.raises(InputTypeError, match="appended item"):
        da.append("b")  # type: ignore[arg-type]
    with pytest.raises(InputTypeError, match="inserted item"):
        da.insert(0, "b")  # type: ignore[arg-type]
    with pytest.raises(InputTypeError, match="assigned item"):
        da[0] = "b"
    with pytest.raises(InputTypeError, match="item 0"):
        da += ["b"]  # type: ignore[list-item]
    combined = da + DocumentArray([Document(text="c")])
    assert isinstance(combined, DocumentArray) and combined.texts == ["a", "c"]
    da += [Document(text="d")]
    assert isinstance(da, DocumentArray) and da.texts == ["a", "d"]


def test_indexing_by_position_slice_id_and_lists() -> None:
    da = DocumentArray([Document(text=t, id=t) for t in "abcd"])
    assert da[0].text == "a" and da[-1].text == "d"
    assert isinstance(da[1:3], DocumentArray) and da[1:3].texts == ["b", "c"]
    assert da["c"].text == "c"
    assert da[[3, 0]].texts == ["d", "a"]
    assert da[("b", "a")].texts == ["b", "a"]
    assert da[np.array([2, 1])].texts == ["c", "b"]
    assert isinstance(da[[0]], DocumentArray)
    with pytest.raises(KeyError, match="'zz'"):
        da["zz"]
    with pytest.raises(KeyError, match="'zz'"):
        da[["a", "zz"]]
    with pytest.raises(IndexError):
        da[10]


def test_embeddings_get_and_set() -> None:
    da = DocumentArray([Document(text="a"), Document(text="b")])
    assert da.embeddings is None
    da.embeddings = np.arange(6, dtype=np.float32).reshape(2, 3)
    assert da.embeddings.shape == (2, 3)
    np.testing.assert_array_equal(da[1].embedding, [3, 4, 5])
    da.embeddings = torch.ones(2, 4)
    assert da.embeddings.shape == (2, 4) and da.embeddings.dtype == np.float32
    da[0].embedding = None
    assert da.embeddings is None
    assert DocumentArray().embeddings is None
    with pytest.raises(ValueError, match=r"received shape \(3, 4\)"):
        da.embeddings = np.zeros((3, 4))


def test_repr_is_short() -> None:
    doc = Document(text="x" * 100, tags={LABEL_TAG: "a"}, chunks=[Document(text="c")])
    assert len(repr(doc)) < 150 and "chunks=<1>" in repr(doc)
    assert repr(DocumentArray([doc])) == "<DocumentArray (length=1)>"

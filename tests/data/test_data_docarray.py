"""Real docarray v1 (docarray<0.30) objects convert field by field, chunks included."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from finetuner.data import LABEL_TAG, Document, DocumentArray, load_data
from finetuner.data.readers.docarray_v1 import is_docarray_array, is_docarray_document
from finetuner.errors import InputTypeError

docarray = pytest.importorskip("docarray")
DaDocument, DaArray = docarray.Document, docarray.DocumentArray

SRC = Path(__file__).resolve().parents[2] / "src"


def test_labelled_documents_keep_every_field() -> None:
    source = DaArray(
        [
            DaDocument(id="t1", text="pencil skirt", tags={LABEL_TAG: "skirt", "meta": {"shop": ["a", "b"]}}),
            DaDocument(uri="https://example.org/skirt-1.png", tags={LABEL_TAG: "skirt"}),
            DaDocument(blob=b"\x89PNG raw", mime_type="image/png", tags={LABEL_TAG: "shirt"}),
            DaDocument(
                tensor=np.ones((2, 3), dtype=np.float32), embedding=np.arange(4.0), tags={LABEL_TAG: 1}
            ),
            DaDocument(tensor=torch.zeros(3, 4, 4), tags={LABEL_TAG: 2}),
        ]
    )
    da = load_data(source)
    assert isinstance(da, DocumentArray) and len(da) == 5
    assert all(type(d) is Document for d in da)
    assert [d.id for d in da] == [d.id for d in source]
    assert [d.label for d in da] == ["skirt", "skirt", "shirt", 1, 2]
    text, uri, blob, array, tensor = da
    assert (text.text, text.blob, text.tensor, text.uri, text.mime_type) == (
        "pencil skirt",
        None,
        None,
        None,
        None,
    )
    assert text.tags["meta"] == {"shop": ["a", "b"]}
    assert text.tags["meta"] is not source[0].tags["meta"]  # deep-copied
    assert (uri.uri, uri.mime_type, uri.text) == ("https://example.org/skirt-1.png", "image/png", None)
    assert (blob.blob, blob.mime_type, blob.content_type) == (b"\x89PNG raw", "image/png", "blob")
    np.testing.assert_array_equal(array.tensor, np.ones((2, 3)))
    np.testing.assert_array_equal(array.embedding, np.arange(4.0))
    assert isinstance(tensor.tensor, torch.Tensor) and tensor.tensor.shape == (3, 4, 4)
    assert all(d.modality is None for d in da)


def test_text_pairs() -> None:
    source = DaArray(
        [DaDocument(chunks=[DaDocument(text="fecundity"), DaDocument(text="fruitfulness")], tags={"src": 1})]
    )
    (root,) = load_data(source)
    assert [c.text for c in root.chunks] == ["fecundity", "fruitfulness"]
    assert root.tags == {"src": 1} and root.content is None


def test_clip_chunks_keep_modality() -> None:
    source = DaArray(
        [
            DaDocument(
                chunks=[
                    DaDocument(content="pencil skirt slim fit", modality="text"),
                    DaDocument(uri="https://example.org/skirt-1.png", modality="image"),
                ]
            )
        ]
    )
    (root,) = load_data(source)
    assert isinstance(root.chunks, DocumentArray)
    text, image = root.chunks
    assert (text.modality, text.text) == ("text", "pencil skirt slim fit")
    assert (image.modality, image.uri, image.mime_type) == (
        "image",
        "https://example.org/skirt-1.png",
        "image/png",
    )
    assert [c.id for c in root.chunks] == [c.id for c in source[0].chunks]


def test_nested_chunks() -> None:
    leaf = DaDocument(text="leaf", modality="text", tags={"depth": 3})
    source = DaDocument(text="root", chunks=[DaDocument(text="mid", chunks=[leaf])])
    (root,) = load_data(source)  # a single docarray Document
    assert root.text == "root"
    assert root.chunks[0].text == "mid"
    converted = root.chunks[0].chunks[0]
    assert (converted.text, converted.modality, converted.tags, converted.id) == (
        "leaf",
        "text",
        {"depth": 3},
        leaf.id,
    )


def test_chunk_arrays_and_mixed_lists() -> None:
    source = DaDocument(chunks=[DaDocument(text="a"), DaDocument(text="b")])
    assert is_docarray_array(source.chunks) and is_docarray_document(source)
    assert load_data(source.chunks).texts == ["a", "b"]
    ours = Document(text="c")
    mixed = load_data([DaDocument(text="a"), ours])
    assert mixed.texts == ["a", "c"] and mixed[1] is ours


def test_objects_from_other_docarray_versions_get_a_hint() -> None:
    fake = type("BaseDoc", (), {"__module__": "docarray.base_doc.doc"})()
    with pytest.raises(InputTypeError, match=r"docarray<0\.30"):
        load_data(fake)


def test_docarray_is_not_imported_for_other_data() -> None:
    code = (
        "import sys; from finetuner.data import load_data; "
        "load_data([('a', 'x'), ('b', 'y')]); "
        "assert 'docarray' not in sys.modules, 'docarray was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env={"PYTHONPATH": str(SRC), "PATH": ""})

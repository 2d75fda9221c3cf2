"""Routing of one item (a CSV field, a tuple element) to text, uri, blob or tensor."""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from finetuner.data.items import is_missing, item_fields, label_value, looks_like_image
from finetuner.errors import DataError


@pytest.mark.parametrize(
    "value",
    [
        "img/1f600.png",
        "photos/my cat.JPG",
        "https://example.org/a/b.jpeg?size=2",
        "http://example.org/x.webp",
        "https://...skirt-1.png",
        "file:///tmp/a.png",
        "data:image/png;base64,iVBORw0KGgo=",
        b"\x89PNG",
        np.zeros((2, 2)),
        torch.zeros(2),
        {"bytes": b"..", "path": None},
    ],
)
def test_image_sources(value: object) -> None:
    assert looks_like_image(value)


@pytest.mark.parametrize(
    "value",
    [
        "pencil skirt",
        "a photo of my cat.png",  # prose that ends in .png: spaces and no '/'
        "https://example.org/page",
        "data:text/plain,hello",
        "two\nlines.png",
        "",
        "skirt",
    ],
)
def test_not_image_sources(value: str) -> None:
    assert not looks_like_image(value)


def test_text_item(tmp_path: Path) -> None:
    assert item_fields("\tindented text ", where="w", base_dir=tmp_path) == (
        {"text": "\tindented text "},
        "text",
    )


def test_relative_image_path_resolves_against_base_dir(png: Callable[[str], Path], tmp_path: Path) -> None:
    path = png("img/a.png")
    fields, modality = item_fields("img/a.png", where="w", base_dir=tmp_path)
    assert modality == "image"
    assert fields == {"uri": str(path), "mime_type": "image/png"}
    fields, _ = item_fields(str(path), where="w", base_dir=Path("/nonexistent"))
    assert fields["uri"] == str(path)


def test_convert_to_blob_reads_files_and_data_uris(png: Callable[[str], Path], tmp_path: Path) -> None:
    path = png("a.png")
    fields, _ = item_fields("a.png", where="w", base_dir=tmp_path, convert_to_blob=True)
    assert fields["blob"] == path.read_bytes() and fields["uri"] == str(path)
    fields, _ = item_fields(path.as_uri(), where="w", base_dir=tmp_path, convert_to_blob=True)
    assert fields["blob"] == path.read_bytes()
    uri = "data:image/png;base64," + base64.b64encode(b"\x89PNGxyz").decode()
    fields, _ = item_fields(uri, where="w", base_dir=tmp_path, convert_to_blob=True)
    assert fields == {"uri": uri, "mime_type": "image/png", "blob": b"\x89PNGxyz"}
    fields, _ = item_fields("https://example.org/a.png", where="w", base_dir=tmp_path, convert_to_blob=True)
    assert "blob" not in fields  # remote images are fetched later, by preprocessing


def test_missing_image_file_is_an_error_naming_the_item(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"line 7.*'img/nope\.png' looks like an image path.*no such file"):
        item_fields("img/nope.png", where="line 7", base_dir=tmp_path)
    with pytest.raises(DataError, match="names no existing file"):
        item_fields((tmp_path / "nope.png").as_uri(), where="line 7", base_dir=tmp_path)


def test_binary_items(tmp_path: Path) -> None:
    assert item_fields(b"abc", where="w", base_dir=tmp_path) == ({"blob": b"abc"}, "image")
    array = np.ones((2, 2))
    fields, modality = item_fields(array, where="w", base_dir=tmp_path)
    assert fields["tensor"] is array and modality == "image"
    assert item_fields({"bytes": b"xy", "path": None}, where="w", base_dir=tmp_path) == (
        {"blob": b"xy"},
        "image",
    )


def test_pil_image_becomes_a_tensor(tmp_path: Path) -> None:
    image_module = pytest.importorskip("PIL.Image")
    fields, modality = item_fields(image_module.new("RGB", (4, 3)), where="w", base_dir=tmp_path)
    assert fields["tensor"].shape == (3, 4, 3) and modality == "image"


@pytest.mark.parametrize("value", [None, float("nan"), "", "   "])
def test_empty_items_are_errors(value: object, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="line 3: empty field"):
        item_fields(value, where="line 3", base_dir=tmp_path)


def test_numbers_are_not_items(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="item 2: cannot use int 5 as an item"):
        item_fields(5, where="item 2", base_dir=tmp_path)


def test_labels() -> None:
    assert label_value("  skirt ", where="w") == "skirt"
    assert type(label_value(np.int64(3), where="w")) is int
    with pytest.raises(DataError, match="line 4: empty label"):
        label_value("", where="line 4")
    with pytest.raises(DataError, match="is_labeled=False"):
        label_value("img/a.png", where="line 4")
    with pytest.raises(DataError, match="hashable"):
        label_value(["a"], where="line 4")


def test_is_missing() -> None:
    pd = pytest.importorskip("pandas")
    assert is_missing(pd.NA) and is_missing(np.float32("nan")) and is_missing(None)
    assert not is_missing(0) and not is_missing("x")

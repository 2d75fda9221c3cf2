"""The code blocks of the page users start from (prepare-training-data.md) run verbatim.

The page imports ``from docarray import Document, DocumentArray``. Our run swaps that one line for
``from finetuner.data import Document, DocumentArray`` (and for ``from finetuner import ...`` once the package
root exports them); everything else, including the literal ``...`` placeholders, runs as written. The same
blocks also run with real docarray v1 and convert with ``load_data``; docarray itself rejects the ``...``
placeholder (``AttributeError: 'ellipsis' object has no attribute 'id'``), so for that run only the ``...,``
lines are removed.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

from finetuner.data import LABEL_TAG, DocumentArray, load_data

PAGE = Path(__file__).resolve().parents[1] / "fixtures" / "prepare-training-data.md"
DOCARRAY_IMPORT = "from docarray import Document, DocumentArray"


def python_blocks() -> list[str]:
    """The page's ```python blocks, in order."""
    return re.findall(r"```python\n(.*?)```", PAGE.read_text(encoding="utf-8"), flags=re.DOTALL)


def run(code: str) -> object:
    namespace: dict[str, object] = {}
    exec(compile(code, str(PAGE), "exec"), namespace)
    return namespace["train_da"]


def check(train_da: object, block: int) -> None:
    """Each block's train_da, whatever built it, once converted."""
    da = load_data(train_da, name="train_da")
    assert isinstance(da, DocumentArray) and len(da) == 2
    if block == 0:  # text-to-text
        assert da.texts == ["pencil skirt slim fit available for sell", "stripped over-sized shirt for sell"]
        assert [d.tags[LABEL_TAG] for d in da] == ["skirt", "t-shirt"]
    elif block == 1:  # image-to-image
        assert [d.uri for d in da] == ["https://...skirt-1.png", "https://...t-shirt-1.png"]
        assert [d.tags[LABEL_TAG] for d in da] == ["skirt", "t-shirt"]
        assert all(d.text is None for d in da)
    else:  # CLIP
        for root, uri in zip(da, ["https://...skirt-1.png", "https://...shirt-1.png"]):
            assert LABEL_TAG not in root.tags and len(root.chunks) == 2
            text, image = root.chunks
            assert text.modality == "text" and text.text.endswith("for sell")
            assert (image.modality, image.uri) == ("image", uri)


def test_the_page_has_three_blocks_importing_docarray() -> None:
    blocks = python_blocks()
    assert len(blocks) == 3
    assert all(DOCARRAY_IMPORT in b for b in blocks)
    assert sum("...," in b for b in blocks) == 2


@pytest.mark.parametrize("block", [0, 1, 2])
@pytest.mark.parametrize("module", ["finetuner.data", "finetuner"])
def test_blocks_run_verbatim_with_our_classes(block: int, module: str) -> None:
    assert hasattr(importlib.import_module(module), "DocumentArray")
    code = python_blocks()[block].replace(DOCARRAY_IMPORT, f"from {module} import Document, DocumentArray")
    train_da = run(code)
    assert isinstance(train_da, DocumentArray)
    assert load_data(train_da) is train_da
    check(train_da, block)


@pytest.mark.parametrize("block", [0, 1, 2])
def test_blocks_run_with_real_docarray_and_convert(block: int) -> None:
    pytest.importorskip("docarray")
    code = "\n".join(line for line in python_blocks()[block].splitlines() if line.strip() != "...,")
    train_da = run(code)
    assert type(train_da).__module__.startswith("docarray")
    check(train_da, block)

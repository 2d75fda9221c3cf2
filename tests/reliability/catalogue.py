"""The catalogue of bad inputs (helpers): a :class:`Case` is one bad input to ``finetuner.fit``, the error class
it must raise and message fragments that name the item (index, id, uri, CSV line), what was received and how to
fix it. The cases live in ``test_rel_bad_data.py`` and ``test_rel_bad_options.py``; :func:`check_case` runs one
with the model loader replaced by a tripwire, so a case that got past validation fails loudly.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import finetuner
from finetuner import Document, DocumentArray
from finetuner.errors import FinetunerError

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


@pytest.fixture
def no_model_loading(monkeypatch: pytest.MonkeyPatch) -> None:
    """Validation runs before the model is built: a case that reaches the loader is a test failure."""

    def tripwire(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a model was loaded: validation let this bad input through")

    monkeypatch.setattr("finetuner.training.build.build_model", tripwire)


def check_case(case: Case, tmp_path: Path) -> None:
    """Run ``fit`` on the case's inputs and check the error class and every message fragment."""
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

"""Shared helpers of the data tests: fixture paths and a CSV writer."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


@pytest.fixture
def fixtures() -> Path:
    """The tests/fixtures folder (tiny slices of the real data in ../shared/data)."""
    return FIXTURES


@pytest.fixture
def write_csv(tmp_path: Path) -> Callable[..., Path]:
    """Write text (or bytes) to a file in tmp_path and return its path."""

    def write(content: str | bytes, name: str = "data.csv", encoding: str = "utf-8") -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            content = content.encode(encoding)
        path.write_bytes(content)
        return path

    return write


@pytest.fixture
def png(tmp_path: Path) -> Callable[[str], Path]:
    """Copy a real 28x28 PNG from the fixtures to tmp_path/<name>."""
    source = FIXTURES / "fashion_mnist" / "train" / "20.png"

    def make(name: str) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(source.read_bytes())
        return path

    return make

"""Every ```python block in docs/ runs: the blocks of one page run in order in one namespace, in a temporary
folder. A block right after a ``<!-- skip-test -->`` line is shown but not run (it needs the network, a GPU or an
API still being built); the test of a page without runnable blocks is skipped."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs"
SKIP_MARK = "<!-- skip-test -->"
PAGES = sorted(DOCS.rglob("*.md"))


@dataclass
class Block:
    line: int  # 1-based line of the opening fence
    code: str
    skipped: bool


def python_blocks(text: str) -> list[Block]:
    """The ```python fenced blocks of a Markdown text, each marked skipped when a skip mark precedes it."""
    blocks: list[Block] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        if re.fullmatch(r"\s*```python\s*", lines[i]):
            start = i
            body = []
            i += 1
            while i < len(lines) and lines[i].strip() != "```":
                body.append(lines[i])
                i += 1
            previous = next((lines[j].strip() for j in range(start - 1, -1, -1) if lines[j].strip()), "")
            blocks.append(Block(start + 1, "\n".join(body) + "\n", previous == SKIP_MARK))
        i += 1
    return blocks


def test_block_parser_honours_skip_marks():
    text = "intro\n```python\na = 1\n```\n<!-- skip-test -->\n\n```python\nimport network\n```\n```bash\nls\n```\n"
    blocks = python_blocks(text)
    assert [(b.line, b.code, b.skipped) for b in blocks] == [(2, "a = 1\n", False), (7, "import network\n", True)]


def test_docs_exist_for_every_topic():
    names = {p.stem for p in PAGES}
    for topic in (
        "index",
        "text-to-text",
        "image-to-image",
        "text-to-image",
        "data",
        "models",
        "losses",
        "callbacks",
        "distributed",
        "export",
        "report",
        "architecture",
    ):
        assert topic in names, f"docs/{topic}.md is missing"
    assert (DOCS / "img" / "report.png").is_file()


@pytest.mark.integration
@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(DOCS)) for p in PAGES])
def test_page_examples_run(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runnable = [b for b in python_blocks(page.read_text(encoding="utf-8")) if not b.skipped]
    if not runnable:
        pytest.skip(f"{page.name} has no runnable python blocks")
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": f"docs_{page.stem.replace('-', '_')}"}
    for block in runnable:
        try:
            exec(compile(block.code, f"{page}:{block.line}", "exec"), namespace)
        except Exception as exc:
            raise AssertionError(
                f"{page.name}, block at line {block.line} failed: {type(exc).__name__}: {exc}"
            ) from exc

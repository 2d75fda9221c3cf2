"""The package's shape: no import cycle between its modules, no module over 400 lines, layers pointing one way."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "finetuner"
MAX_LINES = 400

#: the upper layers (see docs/architecture.md): nothing below them imports them
UPPER = ("finetuner.training", "finetuner.api", "finetuner.cli")
#: what may import them: the package's root, the public callbacks, the demos and ``python -m finetuner``
ENTRY = ("finetuner.callback", "finetuner.demos", "finetuner.__main__")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The package modules ``name`` imports (at any depth in the file: lazy imports count too)."""
    is_package = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".") if is_package else name.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{a.name}" for a in node.names] + [base]
        for target in targets:
            while target and target not in known:  # `from pkg import name`: the module pkg.name, or pkg itself
                target = target.rpartition(".")[0]
            if target and target != name and target.startswith("finetuner"):
                out.add(target)
    # importing a.b.c runs the __init__ of a.b first
    out |= {".".join(t.split(".")[:i]) for t in out for i in range(2, t.count(".") + 1)} - {name}
    return out


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, set(modules)) for name, path in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm), i.e. the import cycles.

    A package's ``__init__`` importing its own modules is not a cycle of interest by itself: edges from a package
    to the modules inside it are left out.
    """
    edges = {a: {b for b in bs if not b.startswith(a + ".")} for a, bs in graph.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(frozenset(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_finds_cycles():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "p": {"p.x"}, "p.x": {"p"}}
    assert _cycles(graph) == [frozenset({"a", "b", "c"})]


def test_no_import_cycles():
    cycles = _cycles(_graph())
    assert cycles == [], "import cycles: " + "; ".join(" <-> ".join(sorted(c)) for c in cycles)


def _units(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The graph between the package's parts: each sub-package (``finetuner.training``) and top-level module."""

    def unit(module: str) -> str:
        return ".".join(module.split(".")[:2])

    out: dict[str, set[str]] = {}
    for a, bs in graph.items():
        if a == "finetuner":
            continue  # the public re-exports
        out.setdefault(unit(a), set()).update(unit(b) for b in bs if unit(b) not in (unit(a), "finetuner"))
    return out


def test_no_import_cycles_between_parts():
    """E.g. validation importing the training package while training imports validation."""
    cycles = _cycles(_units(_graph()))
    assert cycles == [], "cycles between parts: " + "; ".join(" <-> ".join(sorted(c)) for c in cycles)


def test_no_module_over_the_line_limit():
    long = {name: n for name, path in _modules().items() if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert long == {}, f"modules over {MAX_LINES} lines: {long}"


def test_lower_layers_never_import_training_api_or_cli():
    lower = {a: bs for a, bs in _graph().items() if a != "finetuner" and not a.startswith((*UPPER, *ENTRY))}
    assert {"finetuner.validation", "finetuner.artifacts", "finetuner.models.io"} <= set(lower)
    assert {(a, b) for a, bs in lower.items() for b in bs if b.startswith(UPPER)} == set()

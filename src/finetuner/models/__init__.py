"""Model registry, encoders (text, vision, CLIP), heads and persistence."""

from finetuner.models.base import EmbeddingModel
from finetuner.models.factory import build_model, detect_family
from finetuner.models.io import load_model, save_model
from finetuner.models.registry import MODELS, ModelSpec, register_model
from finetuner.models.text import TextEncoder
from finetuner.models.vision_builders import from_pretrained_vision as _register_vision  # noqa: F401

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

"""Finetuner's Jina AI Cloud calls, given their local meaning: there is no account, no token and no cloud storage.

- :func:`login` does nothing (there is nothing to log into) and says so once;
- :func:`get_token` returns None, which ``get_model(token=...)`` accepts and ignores;
- :func:`list_model_options` lists the ``model_options`` each kind of model takes;
- :func:`cos_sim` is Finetuner's cosine similarity of two vectors.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

logger = logging.getLogger("finetuner")

_said: set[str] = set()

#: the ``model_options`` of each kind of model (name, type, default)
MODEL_OPTIONS: dict[str, list[dict[str, Any]]] = {
    "text": [
        {"name": "pooling", "type": "str", "default": "mean", "choices": ["mean", "cls", "max", "gem"]},
        {"name": "pooling_options", "type": "dict", "default": None, "choices": "GeM: {'p': 3.0, 'eps': 1e-6}"},
        {"name": "max_length", "type": "int", "default": "the tokenizer's, at most 512"},
        {"name": "normalize", "type": "bool", "default": "the sentence-transformers folder's setting, else False"},
        {"name": "pooler / pooler_options", "type": "Finetuner's names", "default": None, "choices": ["GeM"]},
    ],
    "image": [
        {"name": "pooling", "type": "str", "default": "auto", "choices": ["auto", "mean", "max", "cls", "gem"]},
        {"name": "pooling_options", "type": "dict", "default": None, "choices": "GeM: {'p': 3.0, 'eps': 1e-6}"},
        {"name": "normalize", "type": "bool", "default": False},
        {"name": "augment", "type": "bool or dict", "default": None},
        {"name": "input_size / mean / std / crop_pct / interpolation", "type": "transform", "default": "the model's"},
    ],
    "clip": [
        {"name": "text / vision options", "type": "dict", "default": None, "choices": "as for text and image models"},
    ],
    "mlp": [
        {"name": "input_size", "type": "int", "default": "required"},
        {"name": "hidden_sizes", "type": "list[int]", "default": []},
        {"name": "bias", "type": "bool", "default": True},
        {"name": "activation", "type": "str", "default": "relu", "choices": ["relu", "gelu", "tanh", "sigmoid", None]},
        {"name": "l2", "type": "bool", "default": False},
    ],
}


def _once(key: str, message: str) -> None:
    if key not in _said:
        _said.add(key)
        logger.warning(message)


def login(force: bool = False, interactive: bool | None = None) -> None:
    """Finetuner's ``login``: nothing to do, as finetuner runs on this machine without an account.

    Example:
        >>> login()
    """
    _once("login", "finetuner.login(): there is no Jina AI Cloud account to log into; runs happen on this machine")


def get_token() -> None:
    """Finetuner's ``get_token``: there is no token here; None, which ``get_model(token=None)`` accepts.

    Example:
        >>> get_token() is None
        True
    """
    return None


def list_model_options() -> dict[str, list[dict[str, Any]]]:
    """The ``model_options`` each kind of model takes (Finetuner listed them per model name; here the options
    depend on the kind: text, image, CLIP or MLP).

    Example:
        >>> sorted(list_model_options())
        ['clip', 'image', 'mlp', 'text']
    """
    return {kind: [dict(option) for option in options] for kind, options in MODEL_OPTIONS.items()}


def cos_sim(a: Any, b: Any) -> float:
    """The cosine similarity of two vectors (Finetuner's ``cos_sim``).

    Example:
        >>> round(cos_sim([1.0, 0.0], [1.0, 1.0]), 4)
        0.7071
    """
    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"cos_sim takes two vectors of one size; received sizes {a.size} and {b.size}")
    norm = float(np.linalg.norm(a) * np.linalg.norm(b))
    if norm == 0.0:
        raise ValueError("cos_sim of a zero vector is undefined")
    return float(np.dot(a, b) / norm)

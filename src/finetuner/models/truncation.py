"""The first N dimensions of embeddings (Matryoshka models): ``encode(model, items, dim=N)`` and a saved model's
``truncate_dim``."""

from __future__ import annotations

from typing import Any

import numpy as np

from finetuner.errors import ConfigError


def output_prefix(model: Any, dim: int | None) -> int | None:
    """The prefix ``encode`` returns: ``dim``, else the model's ``truncate_dim`` (None: the whole embedding);
    checked against the model's size.

    Example:
        >>> from types import SimpleNamespace
        >>> output_prefix(SimpleNamespace(output_dim=8, truncate_dim=4), None), output_prefix(object(), None)
        (4, None)
        >>> output_prefix(SimpleNamespace(output_dim=8), 16)
        Traceback (most recent call last):
        ...
        finetuner.errors.ConfigError: dim=16 exceeds the model's embedding size 8
    """
    dim = dim if dim is not None else getattr(model, "truncate_dim", None)
    if dim is None:
        return None
    width = getattr(model, "output_dim", None)
    if not isinstance(dim, int) or isinstance(dim, bool) or dim < 1:
        raise ConfigError(f"dim must be an int >= 1 (or None for the whole embedding); received {dim!r}")
    if isinstance(width, int) and width and dim > width:
        raise ConfigError(f"dim={dim} exceeds the model's embedding size {width}")
    return dim


def truncate(vectors: np.ndarray, dim: int | None, normalize: bool = False) -> np.ndarray:
    """The first ``dim`` columns of ``vectors`` ``(n, d)``, L2-normalised again when ``normalize``.

    Example:
        >>> truncate(np.array([[3.0, 4.0, 1.0]]), 2, normalize=True).tolist()
        [[0.6, 0.8]]
    """
    if dim is None:
        return vectors
    vectors = vectors[:, :dim]  # (n, dim)
    if normalize:
        vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    return vectors

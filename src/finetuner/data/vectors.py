"""Feature vectors as items: a ``Document`` whose ``tensor`` is one-dimensional (or whose ``modality`` is
``'vector'``) holds a vector, which the ``mlp`` model embeds (Finetuner's model for tensor inputs).

An image tensor is 2-D or 3-D, so a 1-D tensor is never read as an image.
"""

from __future__ import annotations

from typing import Any

import numpy as np

VECTOR = "vector"


def is_vector(value: Any) -> bool:
    """Whether ``value`` is a one-dimensional array or tensor.

    Example:
        >>> is_vector(np.zeros(8)), is_vector(np.zeros((8, 8))), is_vector('text')
        (True, False, False)
    """
    return getattr(value, "ndim", None) == 1 and hasattr(value, "shape")


def as_array(value: Any) -> np.ndarray:
    """A vector (numpy array, torch tensor on any device, list) as a float32 numpy array.

    Example:
        >>> as_array([1, 2]).dtype
        dtype('float32')
    """
    if type(value).__module__.startswith("torch"):
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=np.float32)


def vector_problem(value: Any) -> str | None:
    """What is wrong with a vector item (not numeric, not 1-D, empty, NaN/inf), or None.

    Example:
        >>> vector_problem(np.array([1.0, np.nan]))
        'the vector has 1 NaN/inf value(s); clean it'
    """
    try:
        raw = value.detach().cpu().numpy() if type(value).__module__.startswith("torch") else np.asarray(value)
    except Exception as exc:
        return f"the vector cannot be read as an array ({type(exc).__name__}: {exc})"
    if raw.dtype == object or not (np.issubdtype(raw.dtype, np.number) or raw.dtype == bool):
        return f"the vector holds {raw.dtype} values; a feature vector holds numbers"
    if raw.ndim != 1 or raw.size == 0:
        return f"a feature vector is one-dimensional and not empty; received shape {raw.shape}"
    bad = ~np.isfinite(raw.astype(np.float64))
    if bad.any():
        return f"the vector has {int(bad.sum())} NaN/inf value(s); clean it"
    return None

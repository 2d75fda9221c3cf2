"""Retrieval metrics at several embedding sizes (Matryoshka runs): the items are embedded once, and each size is
measured on the first ``d`` dimensions of those vectors, as ``encode(model, items, dim=d)`` gives them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from finetuner.evaluation.embedders import Embedder
from finetuner.evaluation.model_eval import RetrievalSets, evaluate_all


def cached_embedder(embed: Embedder) -> Embedder:
    """``embed`` that embeds each (list of items, modality) once and hands back the same vectors afterwards.

    Example:
        >>> calls = []
        >>> def embed(items, modality):
        ...     calls.append(len(items))
        ...     return torch.ones(len(items), 4)
        >>> cached = cached_embedder(embed); items = ['a', 'b']
        >>> _ = cached(items, 'text'); _ = cached(items, 'text'); calls
        [2]
    """
    cache: dict[tuple[int, str], tuple[list[Any], torch.Tensor]] = {}

    def embed_once(items: list[Any], modality: str) -> torch.Tensor:
        key = (id(items), modality)
        if key not in cache or cache[key][0] is not items:
            cache[key] = (items, embed(items, modality))  # the list is kept, so its id stays its own
        return cache[key][1]

    return embed_once


def truncated_embedder(embed: Embedder, dim: int) -> Embedder:
    """``embed`` whose vectors keep their first ``dim`` dimensions.

    Example:
        >>> truncated_embedder(lambda items, m: torch.arange(6.0).reshape(1, 6), 2)(['x'], 'text').tolist()
        [[0.0, 1.0]]
    """

    def embed_prefix(items: list[Any], modality: str) -> torch.Tensor:
        return embed(items, modality)[:, :dim]  # (n, dim)

    return embed_prefix


def evaluate_with_dimensions(
    evaluations: list[tuple[str, RetrievalSets]], embed: Embedder, limit: int, dims: Sequence[int] = ()
) -> tuple[dict[str, float], list[dict[str, Any]], dict[int, dict[str, float]]]:
    """:func:`~finetuner.evaluation.model_eval.evaluate_all` on the full vectors, plus the metrics of each
    prefix size in ``dims`` (``{dim: metrics}``; empty without ``dims``), from one embedding of the items.

    Example:
        >>> metrics, examples, by_dim = evaluate_with_dimensions(evaluations, embed, 20, [64, 32])  # doctest: +SKIP
        >>> sorted(by_dim)  # doctest: +SKIP
        [32, 64]
    """
    once = cached_embedder(embed) if dims else embed
    metrics, examples = evaluate_all(evaluations, once, limit)
    by_dim = {int(d): evaluate_all(evaluations, truncated_embedder(once, int(d)), limit)[0] for d in dims}
    return metrics, examples, by_dim

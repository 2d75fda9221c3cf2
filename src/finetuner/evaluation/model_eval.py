"""Evaluate a model on task data: embed, search, score; plus a few example retrievals to show people.

How items become vectors (one model, two towers, split across processes) is :mod:`finetuner.evaluation.embedders`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from finetuner.data.tasks import LabelledData, PairData
from finetuner.evaluation.embedders import Embedder
from finetuner.evaluation.evaluator import evaluate_embeddings, retrieve


@dataclass
class RetrievalSets:
    """Queries and index of one evaluation, with labels for relevance and ids for self-exclusion."""

    queries: list[Any]
    query_labels: list[Any]
    query_ids: list[str]
    query_modality: str
    index: list[Any] | None = None
    index_labels: list[Any] | None = None
    index_ids: list[str] | None = None
    index_modality: str | None = None


def retrieval_sets(data: LabelledData | PairData, direction: str = "left-to-right") -> RetrievalSets:
    """How ``data`` is evaluated: labelled items search each other (same label relevant, self excluded); pairs
    search from one side into the other (the partner, or a shared label, is relevant).

    Example:
        >>> p = PairData(['q1', 'q2'], ['d1', 'd2'], 'text', 'text', ['a', 'b'])
        >>> retrieval_sets(p).query_labels
        [0, 1]
    """
    if isinstance(data, LabelledData):
        return RetrievalSets(data.items, [data.classes[c] for c in data.labels], data.ids, data.modality)
    labels = data.labels if data.labels is not None else list(range(len(data)))
    left_ids = [f"{i}:q" for i in data.ids]
    right_ids = [f"{i}:d" for i in data.ids]
    sides = [(data.left, left_ids, data.left_modality), (data.right, right_ids, data.right_modality)]
    if direction == "right-to-left":
        sides.reverse()
    (q, qi, qm), (x, xi, xm) = sides
    return RetrievalSets(q, list(labels), qi, qm, x, list(labels), xi, xm)


def evaluate_sets(
    sets: RetrievalSets,
    embed: Embedder,
    *,
    limit: int = 20,
    distance: str = "cosine",
    exclude_self: bool = True,
    num_examples: int = 3,
) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Metrics for ``sets`` and up to ``num_examples`` example queries with their top results.

    Example:
        >>> metrics, examples = evaluate_sets(retrieval_sets(data), model_embedder(model))  # doctest: +SKIP
    """
    q_emb = embed(sets.queries, sets.query_modality)  # (nq, dim)
    i_emb = embed(sets.index, sets.index_modality or sets.query_modality) if sets.index is not None else None
    metrics = evaluate_embeddings(
        q_emb,
        sets.query_labels,
        i_emb,
        sets.index_labels,
        query_ids=sets.query_ids,
        index_ids=sets.index_ids if sets.index is not None else None,
        limit=limit,
        distance=distance,
        exclude_self=exclude_self,
    )
    examples = _examples(sets, q_emb, i_emb, distance, exclude_self, num_examples)
    return {k: float(v) for k, v in metrics.items()}, examples


def evaluate_all(
    evaluations: list[tuple[str, RetrievalSets]], embed: Embedder, limit: int = 20
) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Several evaluations of one model: the metrics of each under its prefix (``''`` for the main direction,
    ``'image_to_text/'`` for CLIP's other one), and example retrievals of the first.

    Example:
        >>> metrics, examples = evaluate_all([('', retrieval_sets(data))], model_embedder(model))  # doctest: +SKIP
    """
    metrics: dict[str, float] = {}
    examples: list[dict[str, Any]] = []
    for prefix, sets in evaluations:
        values, shown = evaluate_sets(sets, embed, limit=limit, num_examples=0 if prefix else 3)
        metrics.update({f"{prefix}{k}": v for k, v in values.items()})
        examples = examples or shown
    return metrics, examples


def _examples(
    sets: RetrievalSets,
    q_emb: torch.Tensor,
    i_emb: torch.Tensor | None,
    distance: str,
    exclude_self: bool,
    num_examples: int,
) -> list[dict[str, Any]]:
    if num_examples <= 0:
        return []
    picks = np.linspace(0, len(sets.queries) - 1, num=min(num_examples, len(sets.queries))).astype(int)
    picks = np.unique(picks)
    scores, indices = retrieve(
        q_emb[picks],
        i_emb if i_emb is not None else q_emb,
        query_ids=[sets.query_ids[i] for i in picks],
        index_ids=sets.index_ids if i_emb is not None else sets.query_ids,
        limit=5,
        distance=distance,
        exclude_self=exclude_self,
    )
    index_items = sets.index if sets.index is not None else sets.queries
    index_labels = sets.index_labels if sets.index_labels is not None else sets.query_labels
    out = []
    for row, qi in enumerate(picks):
        results = [
            {"item": _show(index_items[j]), "label": _plain(index_labels[j]), "score": round(float(s), 4)}
            for s, j in zip(scores[row], indices[row])
            if j >= 0
        ]
        out.append(
            {"query": _show(sets.queries[qi]), "label": _plain(sets.query_labels[qi]), "results": results}
        )
    return out


def _show(item: Any) -> str:
    if isinstance(item, str):
        return item
    uri = getattr(item, "uri", None)
    return str(uri) if uri else f"<{type(item).__name__}>"


def _plain(value: Any) -> Any:
    return value if isinstance(value, (str, int, float, bool)) or value is None else str(value)

"""Evaluate a model on task data: embed, search, score; plus a few example retrievals to show people.

How items become vectors (one model, two towers, split across processes) is :mod:`finetuner.evaluation.embedders`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from finetuner.data.groups import dedup_relevance, item_key, pair_groups
from finetuner.data.shapes import LabelledData, PairData, ScoredPairData, TripletData
from finetuner.errors import DataError
from finetuner.evaluation.embedders import Embedder, embed_as
from finetuner.evaluation.evaluator import evaluate_embeddings, retrieve
from finetuner.evaluation.standard_metrics import retrieval_metrics, search_depth


@dataclass
class RetrievalSets:
    """Queries and index of one evaluation, with labels for relevance and ids for self-exclusion.

    ``relevant`` (when set) lists for every query the index positions relevant to it, and is the relevance the
    metrics use; the labels then only name the results shown as examples (the group of each item). The roles
    choose the prompts of a model that has them: queries get the query prompt and the index the document prompt,
    except for labelled items, which are documents on both sides.
    """

    queries: list[Any]
    query_labels: list[Any]
    query_ids: list[Any]
    query_modality: str
    index: list[Any] | None = None
    index_labels: list[Any] | None = None
    index_ids: list[Any] | None = None
    index_modality: str | None = None
    relevant: list[list[int]] | None = None
    query_role: str = "query"
    index_role: str = "document"


def retrieval_sets(
    data: LabelledData | PairData | TripletData | ScoredPairData, direction: str = "left-to-right"
) -> RetrievalSets:
    """How ``data`` is evaluated. Labelled items search each other (same label relevant, self excluded). Pairs
    search from one side into the other, both sides de-duplicated: every distinct query once, every distinct item
    once in the index, and every item paired with the query relevant (five captions of one image: the image is the
    answer of each caption, and all five captions are the answers of the image); pair roots that all carry a label
    are evaluated by label instead. Triplets search from the query into all positives and negatives (de-duplicated);
    the query's positives are relevant. Scored pairs are not evaluated yet (a DataError says so).

    Example:
        >>> p = PairData(['cat', 'cat', 'dog'], ['c1.png', 'c2.png', 'c1.png'], 'text', 'text', ['a', 'b', 'c'])
        >>> sets = retrieval_sets(p)
        >>> sets.queries, sets.index, sets.relevant
        (['cat', 'dog'], ['c1.png', 'c2.png'], [[0, 1], [0]])
    """
    if isinstance(data, LabelledData):
        labels = [data.classes[c] for c in data.labels]
        return RetrievalSets(data.items, labels, data.ids, data.modality, query_role="document")
    if isinstance(data, ScoredPairData):
        raise DataError(
            "scored pairs are evaluated by the correlation of cosine similarity with the score (Spearman, "
            "Pearson), which is coming in a later version; evaluate on pairs, triplets or labelled items"
        )
    if isinstance(data, PairData) and data.labels is not None:  # relevance by the roots' labels, as before
        sides = [(data.left, [f"{i}:q" for i in data.ids], data.left_modality)]
        sides.append((data.right, [f"{i}:d" for i in data.ids], data.right_modality))
        if direction == "right-to-left":
            sides.reverse()
        (q, qi, qm), (x, xi, xm) = sides
        return RetrievalSets(q, list(data.labels), qi, qm, x, list(data.labels), xi, xm)
    if isinstance(data, TripletData):  # the positive is relevant; the negatives are only candidates
        queries, candidates = data.queries, [(p, *n) for p, n in zip(data.positives, data.negatives)]
        modalities = (data.query_modality, data.document_modality)
    elif direction == "right-to-left":
        queries, candidates = data.right, [(q,) for q in data.left]
        modalities = (data.right_modality, data.left_modality)
    else:
        queries, candidates = data.left, [(d,) for d in data.right]
        modalities = (data.left_modality, data.right_modality)
    q_keys = [item_key(q) for q in queries]
    c_keys = [[item_key(c) for c in row] for row in candidates]
    query_rows, refs, relevant = dedup_relevance(q_keys, c_keys, relevant=1)
    groups = pair_groups(q_keys, [row[0] for row in c_keys], shared=modalities[0] == modalities[1])
    group_of = {}
    for row, keys in enumerate(c_keys):
        group_of.setdefault(keys[0], groups[row])
    index_keys = [c_keys[r][p] for r, p in refs]
    return RetrievalSets(
        [queries[r] for r in query_rows],
        [groups[r] for r in query_rows],
        [q_keys[r] for r in query_rows],
        modalities[0],
        [candidates[r][p] for r, p in refs],
        [group_of.get(k, -1) for k in index_keys],  # -1: an item that is only ever a negative
        index_keys,
        modalities[1],
        relevant,
    )


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
    q_emb = embed_as(embed, sets.queries, sets.query_modality, sets.query_role)  # (nq, dim)
    i_emb = None
    if sets.index is not None:
        i_emb = embed_as(embed, sets.index, sets.index_modality or sets.query_modality, sets.index_role)
    if sets.relevant is not None and i_emb is not None:
        metrics = _relevance_metrics(sets, q_emb, i_emb, limit, distance, exclude_self)
        examples = _examples(sets, q_emb, i_emb, distance, exclude_self, num_examples)
        return {k: float(v) for k, v in metrics.items()}, examples
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


def _relevance_metrics(
    sets: RetrievalSets, q_emb: torch.Tensor, i_emb: torch.Tensor, limit: int, distance: str, exclude_self: bool
) -> dict[str, float]:
    """Retrieval metrics where ``sets.relevant`` lists each query's relevant index positions."""
    assert sets.relevant is not None and sets.index is not None
    _, indices = retrieve(
        q_emb,
        i_emb,
        query_ids=sets.query_ids,
        index_ids=sets.index_ids,
        limit=search_depth(limit),
        distance=distance,
        exclude_self=exclude_self,
    )  # (n_queries, n_results), -1 where exclusion left a slot empty
    n_index = len(sets.index)
    counts = np.asarray([len(r) for r in sets.relevant])  # (n_queries,)
    pairs = np.repeat(np.arange(len(counts)), counts) * n_index + np.concatenate([*sets.relevant, []]).astype(np.int64)
    found = np.arange(len(indices))[:, None] * n_index + indices  # (n_queries, n_results)
    relevance = (indices >= 0) & np.isin(found, pairs)  # (n_queries, n_results)
    return retrieval_metrics(relevance, counts, limit)


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

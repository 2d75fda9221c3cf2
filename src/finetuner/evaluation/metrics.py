"""Finetuner's nine retrieval metrics at k, vectorised over queries.

Finetuner computed its metrics with docarray v1's ``docarray.math.evaluation`` functions on the top-``limit``
matches of every query, then averaged them over the queries. The functions here follow those definitions
exactly (``tests/evaluation`` checks them against docarray 0.21.1), with two deliberate differences on inputs
where docarray's answer is unusable, both documented where they apply:

* a query with no relevant item in the index gets recall (and F1) 0.0; docarray divides 0 by 0 and returns
  NaN, which turns the mean of the whole evaluation into NaN;
* every metric looks at the first ``k`` retrieved items only. docarray's ``r_precision``,
  ``average_precision``, ``reciprocal_rank`` ignore ``k`` and ``ndcg_at_k`` sorts the whole list for its ideal
  ranking; Finetuner always passed exactly ``limit`` = k matches, so on its inputs the results are the same.

Every metric takes ``relevance``: the relevance of the retrieved items in rank order, shape ``(n_retrieved,)``
for one query or ``(n_queries, n_retrieved)`` for many; nonzero (or True) means relevant. It returns one
score per query, an array of shape ``relevance.shape[:-1]`` (0-d for a single query: ``float()`` it).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from finetuner.errors import ConfigError, DataError

#: The metric names, in Finetuner's order; ``compute_metrics`` returns a dict with these keys.
METRIC_NAMES: tuple[str, ...] = (
    "precision_at_k",
    "recall_at_k",
    "f1_score_at_k",
    "hit_at_k",
    "r_precision",
    "average_precision",
    "reciprocal_rank",
    "dcg_at_k",
    "ndcg_at_k",
)


def _top(relevance: ArrayLike, k: int | None) -> np.ndarray:
    """Validate ``relevance`` and ``k``; return the first ``k`` columns as float64, shape (n_queries, k')."""
    if k is not None and (isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1):
        raise ConfigError(f"k must be an integer >= 1 or None, got {k!r}")
    rel = np.asarray(relevance)
    if rel.ndim not in (1, 2):
        raise DataError(f"relevance must have shape (n_retrieved,) or (n_queries, n_retrieved), got shape {rel.shape}")
    if rel.dtype == object or not (np.issubdtype(rel.dtype, np.number) or rel.dtype == bool):
        raise DataError(f"relevance must hold numbers or booleans, got dtype {rel.dtype}")
    rel = np.atleast_2d(rel).astype(np.float64, copy=False)  # (n_queries, n_retrieved)
    return rel[:, :k]


def _binary(relevance: ArrayLike, k: int | None) -> np.ndarray:
    return (_top(relevance, k) != 0).astype(np.float64)  # (n_queries, k')


def _shape_like(values: np.ndarray, relevance: ArrayLike) -> np.ndarray:
    """Per-query values (n_queries,) -> shape ``relevance.shape[:-1]`` (0-d for one query)."""
    return values.reshape(np.shape(relevance)[:-1])


def relevant_totals(num_relevant: ArrayLike, n_queries: int) -> np.ndarray:
    """The number of relevant items per query as floats ``(n_queries,)`` (a scalar applies to every query), checked.

    Example:
        >>> relevant_totals(2, 3).tolist()
        [2.0, 2.0, 2.0]
    """
    total = np.asarray(num_relevant)
    if total.dtype == object or not np.issubdtype(total.dtype, np.number):
        raise DataError(f"num_relevant must hold integers, got dtype {total.dtype}")
    total = np.broadcast_to(total, (n_queries,)) if total.ndim == 0 else total.reshape(-1)
    if total.shape != (n_queries,):
        raise DataError(f"num_relevant must have one entry per query ({n_queries}), got shape {total.shape}")
    if np.any(total < 0):
        raise DataError(f"num_relevant must be >= 0, got {int(total.min())} (query {int(np.argmin(total))})")
    return total.astype(np.float64)  # (n_queries,)


def _num_relevant(num_relevant: ArrayLike, n_queries: int, found: np.ndarray) -> np.ndarray:
    """Validate the number of relevant items per query against the number found in the top k."""
    total = relevant_totals(num_relevant, n_queries)
    too_many = np.nonzero(found > total)[0]
    if too_many.size:
        q = int(too_many[0])
        raise DataError(
            f"query {q}: {int(found[q])} relevant items retrieved but num_relevant says the index holds only "
            f"{int(total[q])}; num_relevant must count every relevant item in the index"
        )
    return total.astype(np.float64)


def precision_at_k(relevance: ArrayLike, k: int | None = 20) -> np.ndarray:
    """Precision at k: the fraction of the first k retrieved items that are relevant.

    ``sum(rel[:k] != 0) / len(rel[:k])``; when fewer than k items were retrieved it divides by the number
    retrieved (as docarray does); an empty list scores 0.0.

    Args:
        relevance: relevance in rank order, shape (n_retrieved,) or (n_queries, n_retrieved).
        k: how many of the top items count; None: all retrieved.

    Returns:
        Per-query precision, shape ``relevance.shape[:-1]``.

    Example:
        >>> float(precision_at_k([1, 0, 1, 0], k=4))
        0.5
    """
    rel = _binary(relevance, k)  # (n_queries, k')
    if rel.shape[1] == 0:
        return _shape_like(np.zeros(rel.shape[0]), relevance)
    return _shape_like(rel.mean(axis=1), relevance)


def recall_at_k(relevance: ArrayLike, num_relevant: ArrayLike, k: int | None = 20) -> np.ndarray:
    """Recall at k: the fraction of all relevant items in the index that are among the first k retrieved.

    ``sum(rel[:k] != 0) / num_relevant``. A query with ``num_relevant == 0`` scores 0.0 (docarray: NaN).

    Args:
        relevance: relevance in rank order, shape (n_retrieved,) or (n_queries, n_retrieved).
        num_relevant: how many relevant items each query has in the whole index (excluding the query itself
            when it was excluded from its own results), shape (n_queries,) or a scalar.
        k: how many of the top items count; None: all retrieved.

    Returns:
        Per-query recall, shape ``relevance.shape[:-1]``.

    Raises:
        DataError: if more relevant items were retrieved than ``num_relevant`` allows.

    Example:
        >>> float(recall_at_k([1, 0, 1, 0], num_relevant=4, k=4))
        0.5
    """
    rel = _binary(relevance, k)  # (n_queries, k')
    found = rel.sum(axis=1)  # (n_queries,)
    total = _num_relevant(num_relevant, rel.shape[0], found)
    recall = np.divide(found, total, out=np.zeros_like(found), where=total > 0)
    return _shape_like(recall, relevance)


def f1_score_at_k(relevance: ArrayLike, num_relevant: ArrayLike, k: int | None = 20) -> np.ndarray:
    """F1 at k: the harmonic mean of precision at k and recall at k.

    ``2 p r / (p + r)``, 0.0 when ``p + r == 0``.

    Args:
        relevance: relevance in rank order, shape (n_retrieved,) or (n_queries, n_retrieved).
        num_relevant: how many relevant items each query has in the whole index, shape (n_queries,) or a
            scalar.
        k: how many of the top items count; None: all retrieved.

    Returns:
        Per-query F1, shape ``relevance.shape[:-1]``.

    Example:
        >>> round(float(f1_score_at_k([1, 0, 1, 0], num_relevant=2, k=4)), 4)  # p = 0.5, r = 1
        0.6667
    """
    p = np.atleast_1d(precision_at_k(relevance, k)).reshape(-1)
    r = np.atleast_1d(recall_at_k(relevance, num_relevant, k)).reshape(-1)
    denominator = p + r
    f1 = np.divide(2 * p * r, denominator, out=np.zeros_like(p), where=denominator > 0)
    return _shape_like(f1, relevance)


def hit_at_k(relevance: ArrayLike, k: int | None = 20) -> np.ndarray:
    """Hit at k: 1.0 if any of the first k retrieved items is relevant, else 0.0.

    Args:
        relevance: relevance in rank order, shape (n_retrieved,) or (n_queries, n_retrieved).
        k: how many of the top items count; None: all retrieved.

    Returns:
        Per-query hit (0.0 or 1.0), shape ``relevance.shape[:-1]``.

    Example:
        >>> float(hit_at_k([0, 0, 1], k=2)), float(hit_at_k([0, 0, 1], k=3))
        (0.0, 1.0)
    """
    rel = _binary(relevance, k)  # (n_queries, k')
    return _shape_like(rel.any(axis=1).astype(np.float64), relevance)


def r_precision(relevance: ArrayLike, k: int | None = 20) -> np.ndarray:
    """R-precision as docarray (and so Finetuner) computed it: precision at R within the top k.

    R is the number of relevant items *among the first k retrieved* (not in the whole index, unlike the
    textbook R-precision): ``mean(rel[:R] != 0)`` with ``R = sum(rel[:k] != 0)``; 0.0 when R is 0.

    Args:
        relevance: relevance in rank order, shape (n_retrieved,) or (n_queries, n_retrieved).
        k: how many of the top items count; None: all retrieved.

    Returns:
        Per-query R-precision, shape ``relevance.shape[:-1]``.

    Example:
        >>> float(r_precision([0, 1, 1, 0], k=4))  # R = 2, rel[:2] = [0, 1]
        0.5
    """
    rel = _binary(relevance, k)  # (n_queries, k')
    n_queries, width = rel.shape
    r = rel.sum(axis=1).astype(np.int64)  # (n_queries,)
    if width == 0:
        return _shape_like(np.zeros(n_queries), relevance)
    hits = np.cumsum(rel, axis=1)  # (n_queries, k'): relevant items in the first i+1
    hits_at_r = hits[np.arange(n_queries), np.maximum(r - 1, 0)]  # (n_queries,)
    out = np.divide(hits_at_r, r, out=np.zeros(n_queries), where=r > 0)
    return _shape_like(out, relevance)


def average_precision(relevance: ArrayLike, k: int | None = 20) -> np.ndarray:
    """Average precision over the relevant items among the first k retrieved (docarray's definition).

    ``mean(precision@(i+1) for each i < k with rel[i] != 0)``: the divisor is the number of relevant items
    retrieved, not the number in the index; 0.0 when nothing relevant was retrieved.

    Args:
        relevance: relevance in rank order, shape (n_retrieved,) or (n_queries, n_retrieved).
        k: how many of the top items count; None: all retrieved.

    Returns:
        Per-query average precision, shape ``relevance.shape[:-1]``.

    Example:
        >>> float(average_precision([1, 0, 1, 0], k=4))  # (1/1 + 2/3) / 2
        0.8333333333333333
    """
    rel = _binary(relevance, k)  # (n_queries, k')
    ranks = np.arange(1, rel.shape[1] + 1)  # (k',)
    precisions = np.cumsum(rel, axis=1) / ranks  # (n_queries, k'): precision@(i+1)
    found = rel.sum(axis=1)  # (n_queries,)
    summed = (precisions * rel).sum(axis=1)  # (n_queries,)
    return _shape_like(np.divide(summed, found, out=np.zeros_like(found), where=found > 0), relevance)


def reciprocal_rank(relevance: ArrayLike, k: int | None = 20) -> np.ndarray:
    """Reciprocal rank: 1 / (1-based rank of the first relevant item within the top k), 0.0 if none.

    Args:
        relevance: relevance in rank order, shape (n_retrieved,) or (n_queries, n_retrieved).
        k: how many of the top items count; None: all retrieved.

    Returns:
        Per-query reciprocal rank, shape ``relevance.shape[:-1]``.

    Example:
        >>> float(reciprocal_rank([0, 0, 1, 1], k=4))
        0.3333333333333333
    """
    rel = _binary(relevance, k) != 0  # (n_queries, k')
    if rel.shape[1] == 0:
        return _shape_like(np.zeros(rel.shape[0]), relevance)
    any_hit = rel.any(axis=1)  # (n_queries,)
    first = rel.argmax(axis=1) + 1  # (n_queries,), 1-based rank of the first hit (1 when there is none)
    return _shape_like(np.where(any_hit, 1.0 / first, 0.0), relevance)


def _dcg_weights(width: int) -> np.ndarray:
    """docarray's ``method=0`` discounts: 1 for ranks 1 and 2, then 1/log2(rank); shape (width,)."""
    ranks = np.arange(1, width + 1, dtype=np.float64)  # (width,)
    weights = np.ones(width)
    weights[1:] = 1.0 / np.log2(ranks[1:])
    return weights


def dcg_at_k(relevance: ArrayLike, k: int | None = 20) -> np.ndarray:
    """Discounted cumulative gain at k, docarray's default (``method=0``) discount.

    ``rel[0] + sum(rel[i] / log2(i + 1) for 1 <= i < k)`` (0-based i), so the weights are
    ``[1, 1, 0.6309, 0.5, 0.4307, ...]``. The relevance values are the gains (binary relevance gives 0/1).

    Args:
        relevance: relevance (gain) in rank order, shape (n_retrieved,) or (n_queries, n_retrieved).
        k: how many of the top items count; None: all retrieved.

    Returns:
        Per-query DCG, shape ``relevance.shape[:-1]``.

    Example:
        >>> float(dcg_at_k([0, 1, 0, 1], k=4))  # 0 + 1/log2(2) + 0 + 1/log2(4)
        1.5
    """
    rel = _top(relevance, k)  # (n_queries, k')
    return _shape_like(rel @ _dcg_weights(rel.shape[1]), relevance)


def ndcg_at_k(relevance: ArrayLike, k: int | None = 20) -> np.ndarray:
    """Normalised DCG at k as docarray computes it: DCG over the DCG of the same top k, sorted best first.

    The ideal ranking is built from the retrieved items only (docarray sorts the relevance list it is given),
    not from every relevant item in the index: a query whose relevant hits all come before its misses scores
    1.0 however many relevant items it missed. 0.0 when nothing relevant was retrieved. With the ``method=0``
    discount ranks 1 and 2 weigh the same, so ``[0, 1]`` also scores 1.0.

    Args:
        relevance: relevance (gain) in rank order, shape (n_retrieved,) or (n_queries, n_retrieved).
        k: how many of the top items count; None: all retrieved.

    Returns:
        Per-query NDCG, shape ``relevance.shape[:-1]``.

    Example:
        >>> round(float(ndcg_at_k([0, 0, 1, 1], k=4)), 4)  # (1/log2(3) + 1/log2(4)) / (1 + 1)
        0.5655
    """
    rel = _top(relevance, k)  # (n_queries, k')
    weights = _dcg_weights(rel.shape[1])  # (k',)
    dcg = rel @ weights  # (n_queries,)
    ideal = -np.sort(-rel, axis=1) @ weights  # (n_queries,)
    return _shape_like(np.divide(dcg, ideal, out=np.zeros_like(dcg), where=ideal != 0), relevance)


def compute_metrics(relevance: ArrayLike, num_relevant: ArrayLike, k: int | None = 20) -> dict[str, float]:
    """All nine metrics at k, each averaged over the queries (every query counts, as in Finetuner).

    Queries without any relevant item in the index (``num_relevant == 0``) are still counted: they score 0.0
    on every metric (docarray would give them a NaN recall, spoiling the mean).

    Args:
        relevance: binary relevance of the retrieved items in rank order, shape (n_queries, n_retrieved);
            bool or 0/1.
        num_relevant: how many relevant items each query has in the whole index, shape (n_queries,).
        k: how many of the top items count; None: all retrieved.

    Returns:
        ``{name: mean over queries}`` for every name in :data:`METRIC_NAMES`, in that order.

    Example:
        >>> m = compute_metrics([[1, 0], [0, 1]], num_relevant=[1, 2], k=2)
        >>> m['precision_at_k'], m['recall_at_k'], m['reciprocal_rank']
        (0.5, 0.75, 0.75)
    """
    rel = np.asarray(relevance)
    if rel.ndim != 2:
        raise DataError(f"relevance must have shape (n_queries, n_retrieved), got shape {rel.shape}")
    if rel.shape[0] == 0:
        raise DataError("relevance has no queries (shape (0, ...)); there is nothing to evaluate")
    rel = _binary(rel, k)  # (n_queries, k'), validated once; every metric below reads all of it
    per_query = {
        "precision_at_k": precision_at_k(rel, None),
        "recall_at_k": recall_at_k(rel, num_relevant, None),
        "f1_score_at_k": f1_score_at_k(rel, num_relevant, None),
        "hit_at_k": hit_at_k(rel, None),
        "r_precision": r_precision(rel, None),
        "average_precision": average_precision(rel, None),
        "reciprocal_rank": reciprocal_rank(rel, None),
        "dcg_at_k": dcg_at_k(rel, None),
        "ndcg_at_k": ndcg_at_k(rel, None),
    }
    return {name: float(np.mean(per_query[name])) for name in METRIC_NAMES}

"""The retrieval metrics of BEIR and MTEB, beside Finetuner's: nDCG@10, MRR@10, MAP@k and Recall@k.

BEIR and MTEB compute nDCG, MAP and recall with ``pytrec_eval`` (trec_eval's ``ndcg_cut``, ``map_cut`` and
``recall`` measures) and MRR by hand on the top 10; ``tests/evaluation`` checks these functions against
``pytrec_eval`` on the same rankings. The definitions, for one query whose retrieved items have gains
``rel[0], rel[1], ...`` in rank order (0: not relevant; binary relevance gives 0/1):

* **nDCG@k**: ``DCG = sum(rel[i] / log2(i + 2) for i < k)`` (linear gain, the log discount from rank 1 on) over
  the DCG of the *ideal* ranking: every item judged relevant to the query in the whole index, sorted by gain,
  cut at k. Missing relevant items lower it (Finetuner's ``ndcg_at_k`` builds its ideal from the retrieved items
  only, and weighs ranks 1 and 2 alike).
* **MAP@k**: ``sum(precision@(i+1) for i < k if rel[i] >= 1) / R``, R the number of relevant items in the whole
  index (trec_eval's ``map_cut``; Finetuner's ``average_precision`` divides by the relevant items retrieved).
* **Recall@k**: relevant items among the first k over R.
* **MRR@k**: 1 / (rank of the first relevant item among the first k), 0 if none.

An item counts as relevant for MAP, recall and MRR when its gain is at least 1 (trec_eval's default relevance
level). Queries with no relevant item in the index are left out of the mean, as they are absent from BEIR's and
MTEB's relevance judgements (Finetuner's metrics count them as 0); when no query has one, every metric is 0.0.
Ranks are the order the search returns: items with exactly equal scores keep the search's order, where trec_eval
would order them by document id (with float embeddings exact ties are rare).

The names follow MTEB's: ``ndcg_at_10``, ``mrr_at_10``, ``map_at_{k}``, ``recall_at_{k}`` with k the evaluation's
``limit`` (so ``map_at_20`` and ``recall_at_20`` by default).
"""

from __future__ import annotations

import re

import numpy as np
from numpy.typing import ArrayLike

from finetuner.errors import ConfigError, DataError
from finetuner.evaluation.metrics import METRIC_NAMES, compute_metrics, relevant_totals

#: the fixed cutoff of nDCG and MRR (BEIR's and MTEB's headline figures)
STANDARD_CUTOFF = 10


def standard_metric_names(limit: int = 20) -> list[str]:
    """The names :func:`standard_metrics` returns for an evaluation at ``limit``.

    Example:
        >>> standard_metric_names(20)
        ['ndcg_at_10', 'mrr_at_10', 'map_at_20', 'recall_at_20']
    """
    return [f"ndcg_at_{STANDARD_CUTOFF}", f"mrr_at_{STANDARD_CUTOFF}", f"map_at_{limit}", f"recall_at_{limit}"]


def search_depth(limit: int) -> int:
    """How many results per query an evaluation at ``limit`` retrieves: enough for every metric.

    Example:
        >>> search_depth(5), search_depth(20)
        (10, 20)
    """
    return max(int(limit), STANDARD_CUTOFF)


def _gains(relevance: ArrayLike) -> np.ndarray:
    rel = np.asarray(relevance)
    if rel.ndim != 2:
        raise DataError(f"relevance must have shape (n_queries, n_retrieved), got shape {rel.shape}")
    if rel.dtype == object or not (np.issubdtype(rel.dtype, np.number) or rel.dtype == bool):
        raise DataError(f"relevance must hold numbers or booleans, got dtype {rel.dtype}")
    return rel.astype(np.float64)  # (n_queries, n_retrieved)


def _cutoff(k: int) -> int:
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ConfigError(f"k must be an integer >= 1, got {k!r}")
    return int(k)


def _discounts(width: int) -> np.ndarray:
    return 1.0 / np.log2(np.arange(2, width + 2, dtype=np.float64))  # (width,): 1, 0.6309, 0.5, ...


def ndcg_cut(relevance: ArrayLike, ideal_gains: ArrayLike, k: int = STANDARD_CUTOFF) -> np.ndarray:
    """Per-query nDCG@k (trec_eval's ``ndcg_cut.k``): DCG of the first k over the DCG of the ideal ranking.

    Args:
        relevance: gains of the retrieved items in rank order, shape (n_queries, n_retrieved).
        ideal_gains: the gains of every item judged for each query in the whole index, in any order, shape
            (n_queries, m) padded with 0.
        k: the cutoff.

    Returns:
        Shape (n_queries,); 0.0 where the ideal DCG is 0.

    Example:
        >>> round(float(ndcg_cut([[0, 1, 0, 1]], [[1, 1]], k=10)[0]), 4)  # (1/log2(3) + 1/log2(5)) / (1 + 1/log2(3))
        0.6509
    """
    k = _cutoff(k)
    rel = _gains(relevance)[:, :k]  # (n_queries, <=k)
    ideal = -np.sort(-_gains(ideal_gains), axis=1)[:, :k]  # (n_queries, <=k), best first
    if ideal.shape[0] != rel.shape[0]:
        raise DataError(f"ideal_gains has {ideal.shape[0]} rows but relevance has {rel.shape[0]}")
    dcg = np.clip(rel, 0, None) @ _discounts(rel.shape[1])  # (n_queries,)
    best = np.clip(ideal, 0, None) @ _discounts(ideal.shape[1])  # (n_queries,)
    return np.divide(dcg, best, out=np.zeros_like(dcg), where=best > 0)


def map_cut(relevance: ArrayLike, num_relevant: ArrayLike, k: int) -> np.ndarray:
    """Per-query average precision at k over all R relevant items of the index (trec_eval's ``map_cut.k``).

    Example:
        >>> round(float(map_cut([[1, 0, 1, 0]], [3], k=4)[0]), 4)  # (1/1 + 2/3) / 3
        0.5556
    """
    k = _cutoff(k)
    hits = (_gains(relevance)[:, :k] >= 1).astype(np.float64)  # (n_queries, <=k)
    total = relevant_totals(num_relevant, hits.shape[0])
    precision = np.cumsum(hits, axis=1) / np.arange(1, hits.shape[1] + 1)  # (n_queries, <=k)
    summed = (precision * hits).sum(axis=1)  # (n_queries,)
    return np.divide(summed, total, out=np.zeros_like(summed), where=total > 0)


def recall_cut(relevance: ArrayLike, num_relevant: ArrayLike, k: int) -> np.ndarray:
    """Per-query recall at k: relevant items among the first k over all R relevant items (``recall.k``).

    Example:
        >>> recall_cut([[1, 0, 1, 0]], [4], k=3).tolist()
        [0.5]
    """
    k = _cutoff(k)
    found = (_gains(relevance)[:, :k] >= 1).sum(axis=1).astype(np.float64)  # (n_queries,)
    total = relevant_totals(num_relevant, found.shape[0])
    return np.divide(found, total, out=np.zeros_like(found), where=total > 0)


def mrr_cut(relevance: ArrayLike, k: int = STANDARD_CUTOFF) -> np.ndarray:
    """Per-query reciprocal rank of the first relevant item among the first k (0.0 when there is none).

    Example:
        >>> mrr_cut([[0, 0, 1], [0, 0, 0]], k=10).tolist()
        [0.3333333333333333, 0.0]
    """
    k = _cutoff(k)
    hits = _gains(relevance)[:, :k] >= 1  # (n_queries, <=k)
    if hits.shape[1] == 0:
        return np.zeros(hits.shape[0])
    first = hits.argmax(axis=1) + 1  # (n_queries,), 1-based
    return np.where(hits.any(axis=1), 1.0 / first, 0.0)


def standard_metrics(
    relevance: ArrayLike, num_relevant: ArrayLike, limit: int = 20, ideal_gains: ArrayLike | None = None
) -> dict[str, float]:
    """nDCG@10, MRR@10, MAP@limit and Recall@limit averaged over the queries that have a relevant item.

    Args:
        relevance: gains (binary: bool or 0/1) of the retrieved items in rank order, shape (n_queries,
            n_retrieved); at least ``max(limit, 10)`` columns when that many items exist.
        num_relevant: how many relevant items each query has in the whole index, shape (n_queries,).
        limit: the k of MAP and recall.
        ideal_gains: for graded relevance, the gains of every judged item of each query, shape (n_queries, m)
            padded with 0; None: binary, ``num_relevant`` ones.

    Returns:
        ``{name: mean}`` in :func:`standard_metric_names` order.

    Example:
        >>> m = standard_metrics([[0, 1], [0, 0]], num_relevant=[1, 0], limit=2)
        >>> m['mrr_at_10'], m['recall_at_2']  # the second query has no relevant item: left out
        (0.5, 1.0)
    """
    limit = _cutoff(limit)
    rel = _gains(relevance)  # (n_queries, n_retrieved)
    total = relevant_totals(num_relevant, rel.shape[0])
    if ideal_gains is None:
        width = int(min(total.max(initial=0), STANDARD_CUTOFF))
        ideal = (np.arange(width)[None, :] < total[:, None]).astype(np.float64)  # (n_queries, width)
    else:
        ideal = _gains(ideal_gains)
    per_query = dict(
        zip(
            standard_metric_names(limit),
            (ndcg_cut(rel, ideal), mrr_cut(rel), map_cut(rel, total, limit), recall_cut(rel, total, limit)),
        )
    )
    judged = total > 0  # (n_queries,)
    if not judged.any():
        return {name: 0.0 for name in per_query}
    return {name: float(values[judged].mean()) for name, values in per_query.items()}


def metric_names(limit: int = 20) -> list[str]:
    """Every metric name an evaluation at ``limit`` gives: Finetuner's nine, then the four standard ones.

    Example:
        >>> metric_names(20)[-5:]
        ['ndcg_at_k', 'ndcg_at_10', 'mrr_at_10', 'map_at_20', 'recall_at_20']
    """
    return [*METRIC_NAMES, *standard_metric_names(limit)]


def retrieval_metrics(relevance: ArrayLike, num_relevant: ArrayLike, limit: int = 20) -> dict[str, float]:
    """Finetuner's nine metrics at ``limit`` (:func:`~finetuner.evaluation.metrics.compute_metrics`) and the four
    standard ones (:func:`standard_metrics`), from one ranking of binary relevance.

    Args:
        relevance: binary relevance of the retrieved items in rank order, shape (n_queries, n_retrieved), with
            :func:`search_depth` columns (or as many as the index holds).
        num_relevant: how many relevant items each query has in the whole index, shape (n_queries,).
        limit: the k of the metrics.

    Example:
        >>> m = retrieval_metrics([[0, 1, 0]], [1], limit=2)
        >>> m['reciprocal_rank'], m['mrr_at_10'], m['ndcg_at_k'], round(m['ndcg_at_10'], 4)
        (0.5, 0.5, 1.0, 0.6309)
    """
    metrics = compute_metrics(relevance, num_relevant, k=limit)
    metrics.update(standard_metrics(relevance, num_relevant, limit))
    return metrics


_STANDARD_NAME = re.compile(r"(?:^|[_/])(?:ndcg|mrr|map|recall)_at_\d+$")


def is_standard_metric(name: str) -> bool:
    """Whether ``name`` is one of the standard metrics (with or without a caption or direction prefix).

    Example:
        >>> is_standard_metric('ndcg_at_10'), is_standard_metric('image_to_text/map_at_20')
        (True, True)
        >>> is_standard_metric('ndcg_at_k')
        False
    """
    return bool(_STANDARD_NAME.search(name))


def is_metric_name(name: str) -> bool:
    """Whether ``name`` is a retrieval metric of an evaluation: Finetuner's or a standard one, maybe prefixed.

    Example:
        >>> is_metric_name('caption_hit_at_k'), is_metric_name('mrr_at_10'), is_metric_name('train_loss')
        (True, True, False)
    """
    return name.endswith(METRIC_NAMES) or is_standard_metric(name)

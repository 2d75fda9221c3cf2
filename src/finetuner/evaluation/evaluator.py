"""Retrieval evaluation of fixed embeddings: label relevance, chunked search, Finetuner's metrics.

The model side embeds the evaluation data and calls :func:`evaluate_embeddings` (labelled data: items with the
same label are relevant to each other) or :func:`evaluate_pairs` (pairs such as CLIP's text/image: query i's
only relevant item is index item i). :func:`retrieve` gives the ranked neighbours themselves, for example
results.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np
import torch

from finetuner.errors import DataError, InputTypeError
from finetuner.evaluation.search import top_k
from finetuner.evaluation.standard_metrics import retrieval_metrics, search_depth


def _as_list(values: Any, name: str) -> Sequence[Any]:
    if isinstance(values, torch.Tensor):
        return values.detach().cpu().numpy()
    if isinstance(values, np.ndarray | Sequence) and not isinstance(values, str | bytes):
        return values
    try:
        return list(values)
    except TypeError as error:
        raise InputTypeError(f"{name} must be a sequence, got {type(values).__name__}") from error


def encode_labels(*groups: Any, names: Sequence[str] | None = None) -> list[np.ndarray]:
    """Map arbitrary hashable labels (or ids) to shared integer codes: equal labels get equal codes.

    Equality is Python's (``1 == 1.0``; ``'1' != 1``). Numeric or string numpy arrays take a vectorised path.

    Args:
        *groups: one or more sequences of hashable labels (lists, tuples, numpy arrays, 1-D tensors).
        names: what to call each group in error messages.

    Returns:
        One int64 array per group, in the same order, with codes shared across the groups.

    Example:
        >>> [c.tolist() for c in encode_labels(['skirt', 'shirt', 'skirt'], ['shirt', 'hat'])]
        [[0, 1, 0], [1, 2]]
    """
    names = list(names) if names is not None else [f"labels[{g}]" for g in range(len(groups))]
    values = [_as_list(group, name) for group, name in zip(groups, names)]
    arrays = [v for v in values if isinstance(v, np.ndarray)]
    if len(arrays) == len(values) and all(a.ndim == 1 and a.dtype.kind in "biufUS" for a in arrays):
        kinds = {a.dtype.kind if a.dtype.kind in "US" else "n" for a in arrays}
        if len(kinds) == 1:  # all numbers, all str or all bytes: np.unique agrees with Python equality
            joined = np.concatenate(arrays) if arrays else np.empty(0)
            _, inverse = np.unique(joined, return_inverse=True)
            splits = np.cumsum([len(a) for a in arrays])[:-1]
            return [part.astype(np.int64) for part in np.split(inverse.reshape(-1), splits)]
    codes: dict[Hashable, int] = {}
    out = []
    for group, name in zip(values, names):
        group_codes = np.empty(len(group), dtype=np.int64)
        for position, label in enumerate(group):
            if isinstance(label, np.generic):
                label = label.item()
            try:
                group_codes[position] = codes.setdefault(label, len(codes))
            except TypeError as error:
                raise DataError(
                    f"{name}[{position}] = {label!r} is not hashable; labels must be strings, numbers or "
                    "other hashable values"
                ) from error
        out.append(group_codes)
    return out


def _check_length(values: Any, n: int, name: str, against: str) -> None:
    if len(values) != n:
        raise DataError(f"{name} has {len(values)} entries but {against} has {n} rows; give one per row")


def _search_setup(
    query_embeddings: Any, index_embeddings: Any, query_ids: Any, index_ids: Any, exclude_self: bool
) -> tuple[Any, bool, np.ndarray | None, np.ndarray | None]:
    """Resolve the index (default: the queries) and the integer ids whose equal pairs are excluded."""
    same_set = index_embeddings is None
    index = query_embeddings if same_set else index_embeddings
    n_queries, n_index = len(query_embeddings), len(index)
    if same_set and index_ids is not None and query_ids is None:
        raise DataError("index_ids was given without index_embeddings; give query_ids instead")
    if same_set and index_ids is None:
        index_ids = query_ids
    if not exclude_self:
        return index, same_set, None, None
    if query_ids is None and index_ids is None:
        if not same_set:
            return index, same_set, None, None  # separate sets without ids: nothing is the same item
        ids = np.arange(n_queries)
        return index, same_set, ids, ids
    if query_ids is None or index_ids is None:
        raise DataError("give both query_ids and index_ids (or neither) to exclude self-matches")
    _check_length(query_ids, n_queries, "query_ids", "query_embeddings")
    _check_length(index_ids, n_index, "index_ids", "index_embeddings")
    q_codes, i_codes = encode_labels(query_ids, index_ids, names=["query_ids", "index_ids"])
    return index, same_set, q_codes, i_codes


def retrieve(
    query_embeddings: Any,
    index_embeddings: Any = None,
    *,
    query_ids: Any = None,
    index_ids: Any = None,
    limit: int = 20,
    distance: str = "cosine",
    exclude_self: bool = True,
    query_chunk_size: int = 1024,
    index_chunk_size: int = 8192,
) -> tuple[np.ndarray, np.ndarray]:
    """The top ``limit`` index items of every query, best first (for example results and evaluation).

    Without ``index_embeddings`` the queries are searched against themselves; ``exclude_self`` then drops
    each query from its own results. With separate sets, ``exclude_self`` drops index items whose id equals
    the query's id (``query_ids``/``index_ids``, arbitrary hashables), as Finetuner did with document ids.

    Args:
        query_embeddings: shape (n_queries, dim); tensor (CPU or CUDA) or numpy array.
        index_embeddings: shape (n_index, dim); None: the queries themselves.
        query_ids: an id per query; used only to exclude self-matches.
        index_ids: an id per index item (defaults to ``query_ids`` when the index is the query set).
        limit: how many results per query (fewer when the index is smaller).
        distance: ``'cosine'``, ``'euclidean'``, ``'sqeuclidean'``, ``'inner_product'`` or ``'dot'``.
        exclude_self: drop self-matches (see above).
        query_chunk_size: query rows per search block.
        index_chunk_size: index rows per search block.

    Returns:
        ``(scores, indices)`` numpy arrays of shape (n_queries, n_results): scores as in
        :func:`~finetuner.evaluation.search.top_k` (similarities descending, distances ascending) and row
        positions into the index; -1 marks a result slot that exclusion left empty.

    Example:
        >>> emb = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
        >>> scores, indices = retrieve(emb, limit=1)
        >>> indices.tolist()
        [[1], [0], [1]]
    """
    index, _, q_ids, i_ids = _search_setup(query_embeddings, index_embeddings, query_ids, index_ids, exclude_self)
    scores, indices = top_k(
        query_embeddings,
        index,
        limit,
        distance=distance,
        query_ids=q_ids,
        index_ids=i_ids,
        query_chunk_size=query_chunk_size,
        index_chunk_size=index_chunk_size,
    )
    return scores.cpu().numpy(), indices.cpu().numpy()


def evaluate_embeddings(
    query_embeddings: Any,
    query_labels: Any,
    index_embeddings: Any = None,
    index_labels: Any = None,
    *,
    query_ids: Any = None,
    index_ids: Any = None,
    limit: int = 20,
    distance: str = "cosine",
    exclude_self: bool = True,
    query_chunk_size: int = 1024,
    index_chunk_size: int = 8192,
) -> dict[str, float]:
    """Retrieval metrics for labelled embeddings (items with the same label are relevant): Finetuner's nine at
    ``limit``, then nDCG@10, MRR@10, MAP@limit and Recall@limit (:mod:`~finetuner.evaluation.standard_metrics`).

    Without an index the queries are searched against themselves, and with ``exclude_self`` each query is
    neither among its own results nor counted among its relevant items (so a label held by one item only
    gives a query with no relevant item: it is counted and scores 0). In general the number of relevant items
    of a query is the number of index items with its label, less those excluded as the query itself.

    Args:
        query_embeddings: shape (n_queries, dim); tensor (CPU or CUDA) or numpy array.
        query_labels: a hashable label per query (strings, ints, ...).
        index_embeddings: shape (n_index, dim); None: the queries themselves.
        index_labels: a label per index item; required with ``index_embeddings``.
        query_ids: an id per query; with ``exclude_self``, index items with the same id are excluded.
        index_ids: an id per index item (defaults to ``query_ids`` when the index is the query set).
        limit: k of the metrics: how many results per query are retrieved and scored.
        distance: ``'cosine'``, ``'euclidean'``, ``'sqeuclidean'``, ``'inner_product'`` or ``'dot'``.
        exclude_self: drop self-matches (the diagonal for a self-search, equal ids otherwise).
        query_chunk_size: query rows per search block.
        index_chunk_size: index rows per search block.

    Returns:
        ``{metric name: mean over queries}``: :data:`~finetuner.evaluation.metrics.METRIC_NAMES`, then
        :func:`~finetuner.evaluation.standard_metrics.standard_metric_names`.

    Example:
        >>> emb = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
        >>> m = evaluate_embeddings(emb, ['a', 'a', 'b', 'b'], limit=1)
        >>> m['precision_at_k'], m['recall_at_k']
        (1.0, 1.0)
    """
    if index_embeddings is None and index_labels is not None:
        raise DataError("index_labels was given without index_embeddings; give both, or neither")
    if index_embeddings is not None and index_labels is None:
        raise DataError("index_embeddings needs index_labels (one label per index item)")
    index, same_set, q_ids, i_ids = _search_setup(
        query_embeddings, index_embeddings, query_ids, index_ids, exclude_self
    )
    labels = query_labels if same_set else index_labels
    _check_length(query_labels, len(query_embeddings), "query_labels", "query_embeddings")
    _check_length(labels, len(index), "index_labels", "index_embeddings")
    q_labels, i_labels = encode_labels(query_labels, labels, names=["query_labels", "index_labels"])

    _, indices = top_k(
        query_embeddings,
        index,
        search_depth(limit),  # nDCG@10 and MRR@10 need 10 results even when limit is smaller
        distance=distance,
        query_ids=q_ids,
        index_ids=i_ids,
        query_chunk_size=query_chunk_size,
        index_chunk_size=index_chunk_size,
    )
    indices = indices.cpu().numpy()  # (n_queries, n_results)
    retrieved = np.where(indices >= 0, i_labels[np.maximum(indices, 0)], -1)  # (n_queries, n_results)
    relevance = retrieved == q_labels[:, None]  # (n_queries, n_results)
    num_relevant = _count_relevant(q_labels, i_labels, q_ids, i_ids)
    return retrieval_metrics(relevance, num_relevant, limit)


def _count_relevant(
    q_labels: np.ndarray, i_labels: np.ndarray, q_ids: np.ndarray | None, i_ids: np.ndarray | None
) -> np.ndarray:
    """Index items sharing each query's label, less those excluded as the query itself; shape (n_queries,)."""
    n_codes = int(max(q_labels.max(initial=-1), i_labels.max(initial=-1))) + 1
    per_label = np.bincount(i_labels, minlength=n_codes)  # (n_codes,)
    count = per_label[q_labels]  # (n_queries,)
    if q_ids is None or i_ids is None:
        return count
    # index items with the query's label AND the query's id were excluded from its results: uncount them
    n_ids = int(max(q_ids.max(initial=-1), i_ids.max(initial=-1))) + 1
    index_keys = i_labels * n_ids + i_ids  # (n_index,): one key per (label, id) pair
    keys, key_counts = np.unique(index_keys, return_counts=True)
    query_keys = q_labels * n_ids + q_ids  # (n_queries,)
    pos = np.clip(np.searchsorted(keys, query_keys), 0, max(len(keys) - 1, 0))
    excluded = np.where(keys[pos] == query_keys, key_counts[pos], 0) if len(keys) else 0
    return count - excluded


def evaluate_pairs(
    query_embeddings: Any,
    index_embeddings: Any,
    *,
    limit: int = 20,
    distance: str = "cosine",
    query_chunk_size: int = 1024,
    index_chunk_size: int = 8192,
) -> dict[str, float]:
    """Finetuner's metrics for aligned pairs (CLIP text i <-> image i): query i's only relevant item is i.

    Equivalent to :func:`evaluate_embeddings` with ``labels = range(n)`` for both sides; nothing is excluded.

    Args:
        query_embeddings: shape (n, dim), e.g. the text embeddings.
        index_embeddings: shape (n, dim), row i pairs with query row i (e.g. the image embeddings).
        limit: k of the metrics.
        distance: ``'cosine'``, ``'euclidean'``, ``'sqeuclidean'``, ``'inner_product'`` or ``'dot'``.
        query_chunk_size: query rows per search block.
        index_chunk_size: index rows per search block.

    Returns:
        ``{metric name: mean over queries}``.

    Example:
        >>> text = np.array([[1.0, 0.0], [0.0, 1.0]])
        >>> evaluate_pairs(text, text + 0.1, limit=2)['reciprocal_rank']
        1.0
    """
    n = len(query_embeddings)
    _check_length(index_embeddings, n, "index_embeddings", "query_embeddings")
    labels = np.arange(n)
    return evaluate_embeddings(
        query_embeddings,
        labels,
        index_embeddings,
        labels,
        limit=limit,
        distance=distance,
        exclude_self=False,
        query_chunk_size=query_chunk_size,
        index_chunk_size=index_chunk_size,
    )

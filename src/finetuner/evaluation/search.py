"""Exact top-k nearest-neighbour search in chunks, so evaluation never builds the full query x index matrix.

The index is scanned ``index_chunk_size`` items at a time (each chunk moved to the compute device and normalised
once) and scored against the queries ``query_chunk_size`` at a time while a running top-k per query is merged.
Peak working memory is ``O(query_chunk_size * index_chunk_size + n_queries * (k + dim))`` whatever the index size
(the index is not copied: numpy inputs are converted one chunk at a time, so an index can stay in host memory
while the search runs on a GPU).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from finetuner.errors import ConfigError, DataError, InputTypeError, unknown_name

#: Accepted ``distance`` names and what they compute (aliases map to the same computation).
DISTANCES: dict[str, str] = {
    "cosine": "cosine",
    "euclidean": "euclidean",
    "sqeuclidean": "sqeuclidean",
    "inner_product": "inner_product",
    "dot": "inner_product",
}

#: Distances whose score is a distance (smaller is better); the others are similarities (larger is better).
SMALLER_IS_BETTER: frozenset[str] = frozenset({"euclidean", "sqeuclidean"})


def _as_matrix(x: Any, name: str) -> torch.Tensor | np.ndarray:
    """A 2-D tensor or numpy array (not copied); lists are converted to numpy."""
    if not isinstance(x, torch.Tensor | np.ndarray):
        try:
            x = np.asarray(x)
        except (TypeError, ValueError) as error:
            raise InputTypeError(f"{name} must be a 2-D array or tensor, got {type(x).__name__}") from error
    if x.ndim != 2:
        raise DataError(f"{name} must have shape (n, dim), got shape {tuple(x.shape)}")
    if isinstance(x, np.ndarray) and not (np.issubdtype(x.dtype, np.number) or x.dtype == bool):
        raise DataError(f"{name} must hold numbers, got dtype {x.dtype}")
    return x


def _chunk(
    x: torch.Tensor | np.ndarray, start: int, stop: int, device: torch.device, dtype: torch.dtype
) -> torch.Tensor:
    """Rows ``start:stop`` of ``x`` as a tensor on ``device`` with ``dtype``; shape (stop - start, dim)."""
    return torch.as_tensor(x[start:stop]).to(device=device, dtype=dtype)


def _ranges(n: int, size: int) -> Iterator[tuple[int, int]]:
    for start in range(0, n, size):
        yield start, min(start + size, n)


def _check_positive(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ConfigError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def _ids(ids: Any, n: int, name: str) -> torch.Tensor:
    out = torch.as_tensor(np.asarray(ids) if not isinstance(ids, torch.Tensor) else ids)
    if out.ndim != 1 or out.shape[0] != n:
        raise DataError(f"{name} must have one id per row ({n}), got shape {tuple(out.shape)}")
    if out.is_floating_point() or out.is_complex():
        raise DataError(f"{name} must hold integers (map other ids to integer codes first), got {out.dtype}")
    return out.to(torch.int64)


def _scores(
    q: torch.Tensor, x: torch.Tensor, measure: str, x_sq: torch.Tensor | None, buffer: torch.Tensor
) -> torch.Tensor:
    """Larger-is-better ranking scores of one query chunk against one index chunk; shape (nq_chunk, ni_chunk).

    Written into ``buffer`` (reused across chunks: no fresh allocation, no page faults per block). Euclidean
    ranks by ``2 q.x - |x|^2`` (the squared distance minus the query's constant ``|q|^2``).
    """
    sims = buffer[: q.shape[0] * x.shape[0]].view(q.shape[0], x.shape[0])  # (nq_chunk, ni_chunk)
    torch.mm(q, x.T, out=sims)
    if measure in SMALLER_IS_BETTER:
        sims.mul_(2).sub_(x_sq)  # (nq_chunk, ni_chunk) - (ni_chunk,)
    return sims


def top_k(
    queries: Any,
    index: Any,
    k: int,
    *,
    distance: str = "cosine",
    query_ids: Any = None,
    index_ids: Any = None,
    query_chunk_size: int = 1024,
    index_chunk_size: int = 8192,
    device: str | torch.device | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The k nearest index rows of every query row, best first, computed chunk by chunk.

    Scores are cosine similarity (``'cosine'``), inner product (``'inner_product'`` or ``'dot'``), Euclidean
    distance (``'euclidean'``) or squared Euclidean distance (``'sqeuclidean'``): similarities come sorted
    largest first, distances smallest first. Ties are ordered arbitrarily. A zero vector has cosine similarity
    0 with everything.

    Self-matches are dropped with ids: when ``query_ids`` and ``index_ids`` are both given, index row j is
    never returned for query i if ``query_ids[i] == index_ids[j]``. When the queries *are* the index, pass the
    same ids for both (e.g. ``torch.arange(n)``) to mask the diagonal.

    When the index has fewer than k rows, fewer columns come back (``min(k, n_index)``). A query for which
    exclusion leaves fewer than that many candidates gets index -1 and score -inf (+inf for distances) in the
    unfilled tail; columns unfilled for every query are dropped (so a self-search with k >= n gives n - 1).

    Args:
        queries: query embeddings, shape (n_queries, dim); a torch tensor, numpy array or nested list.
        index: index embeddings, shape (n_index, dim); may live on another device than the computation (it
            is moved one chunk at a time).
        k: how many neighbours to return per query.
        distance: ``'cosine'``, ``'euclidean'``, ``'sqeuclidean'``, ``'inner_product'`` or ``'dot'``.
        query_ids: integer id per query row, shape (n_queries,); with ``index_ids``, equal ids are excluded.
        index_ids: integer id per index row, shape (n_index,).
        query_chunk_size: query rows per block.
        index_chunk_size: index rows per block; a block's scores take query_chunk_size x index_chunk_size
            floats.
        device: where to compute; default the device of ``queries`` when it is a tensor, else CPU.

    Returns:
        ``(scores, indices)``: tensors of shape (n_queries, min(k, n_index)) on the compute device, the
        scores in the embeddings' floating dtype (float32 for integer inputs), the indices int64 row
        positions into ``index``.

    Example:
        >>> q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
        >>> scores, indices = top_k(q, q, k=1, query_ids=[0, 1], index_ids=[0, 1])
        >>> indices.tolist(), scores.tolist()
        ([[1], [0]], [[0.0], [0.0]])
    """
    if not isinstance(distance, str) or distance not in DISTANCES:
        raise unknown_name("distance", distance, DISTANCES)
    measure = DISTANCES[distance]
    k = _check_positive(k, "k")
    query_chunk_size = _check_positive(query_chunk_size, "query_chunk_size")
    index_chunk_size = _check_positive(index_chunk_size, "index_chunk_size")
    queries = _as_matrix(queries, "queries")
    index = _as_matrix(index, "index")
    n_queries, n_index = queries.shape[0], index.shape[0]
    if queries.shape[1] != index.shape[1]:
        raise DataError(f"queries and index must have the same dimension, got {queries.shape[1]} and {index.shape[1]}")
    if (query_ids is None) != (index_ids is None):
        raise ConfigError("give both query_ids and index_ids to exclude self-matches, or neither")
    if device is None:
        device = queries.device if isinstance(queries, torch.Tensor) else torch.device("cpu")
    device = torch.device(device)
    dtype = _float_dtype(queries, index)
    exclude = query_ids is not None
    if exclude:
        q_ids = _ids(query_ids, n_queries, "query_ids").to(device)  # (n_queries,)
        i_ids = _ids(index_ids, n_index, "index_ids").to(device)  # (n_index,)

    width = min(k, n_index)
    # (query_chunk_size * index_chunk_size,): the one block of scores, reused for every pair of chunks
    buffer = torch.empty(min(query_chunk_size, n_queries) * min(index_chunk_size, n_index), dtype=dtype, device=device)
    best = torch.full((n_queries, width), -torch.inf, dtype=dtype, device=device)  # (n_queries, width)
    best_idx = torch.full((n_queries, width), -1, dtype=torch.int64, device=device)  # (n_queries, width)
    # the queries once, prepared for scoring: (n_queries, dim), the size of the inputs, not of the index
    all_q = _chunk(queries, 0, n_queries, device, dtype)
    if measure == "cosine":
        all_q = torch.nn.functional.normalize(all_q, dim=1)
    # index chunks outside, query chunks inside: each index chunk is moved and normalised once
    for i_start, i_stop in _ranges(n_index, index_chunk_size):
        x = _chunk(index, i_start, i_stop, device, dtype)  # (ni_chunk, dim)
        x_sq = None
        if measure == "cosine":
            x = torch.nn.functional.normalize(x, dim=1)
        elif measure in SMALLER_IS_BETTER:
            x_sq = (x * x).sum(dim=1)  # (ni_chunk,)
        for q_start, q_stop in _ranges(n_queries, query_chunk_size):
            q = all_q[q_start:q_stop]  # (nq_chunk, dim)
            run = best[q_start:q_stop]  # (nq_chunk, width), a view: updated in place below
            run_idx = best_idx[q_start:q_stop]  # (nq_chunk, width)
            sims = _scores(q, x, measure, x_sq, buffer)  # (nq_chunk, ni_chunk)
            if exclude:
                same = q_ids[q_start:q_stop, None] == i_ids[None, i_start:i_stop]  # (nq_chunk, ni_chunk)
                sims.masked_fill_(same, -torch.inf)
            chunk_best, chunk_idx = sims.topk(min(width, i_stop - i_start), dim=1)  # (nq_chunk, <=width)
            chunk_idx = torch.where(torch.isneginf(chunk_best), -1, chunk_idx + i_start)
            if i_start == 0 and chunk_best.shape[1] == width:  # the first chunk fills the running top-k
                run.copy_(chunk_best)
                run_idx.copy_(chunk_idx)
                continue
            merged = torch.cat([run, chunk_best], dim=1)  # (nq_chunk, width + <=width)
            merged_idx = torch.cat([run_idx, chunk_idx], dim=1)
            top, pos = merged.topk(width, dim=1)  # (nq_chunk, width), sorted largest first
            run.copy_(top)
            run_idx.copy_(merged_idx.gather(1, pos))
    if measure in SMALLER_IS_BETTER:
        # back from 2 q.x - |x|^2 to |q - x|^2 = |q|^2 - (2 q.x - |x|^2)
        q_sq = (all_q * all_q).sum(dim=1, keepdim=True)  # (n_queries, 1)
        best.neg_().add_(q_sq).clamp_(min=0)  # -inf (unfilled) becomes +inf
        if measure == "euclidean":
            best.sqrt_()

    filled = (best_idx >= 0).any(dim=0)  # (width,): columns filled for at least one query
    keep = int(filled.sum())  # filled columns form a prefix: results are sorted
    return best[:, :keep], best_idx[:, :keep]


def _float_dtype(queries: torch.Tensor | np.ndarray, index: torch.Tensor | np.ndarray) -> torch.dtype:
    """The floating dtype to compute in: the promoted floating dtype of both inputs, float32 for integers."""

    def torch_dtype(x: torch.Tensor | np.ndarray) -> torch.dtype:
        if isinstance(x, torch.Tensor):
            return x.dtype
        return torch.from_numpy(np.empty(0, dtype=x.dtype)).dtype

    dtype = torch.promote_types(torch_dtype(queries), torch_dtype(index))
    return dtype if dtype.is_floating_point else torch.float32

"""Chunked top-k search: equal to a brute-force full-matrix search, and memory bounded by the chunk sizes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from finetuner.errors import ConfigError, DataError
from finetuner.evaluation.search import top_k

SIMILARITIES = ("cosine", "inner_product", "dot")
ALL_DISTANCES = ("cosine", "inner_product", "euclidean", "sqeuclidean")  # 'dot' is inner_product's alias


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tiny tensors: one thread is fastest, and immune to waiting on descheduled threads on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def brute_force(q: torch.Tensor, x: torch.Tensor, k: int, distance: str, mask: torch.Tensor | None = None):
    """The full (nq, ni) matrix, masked, then torch.topk: the reference the chunked search must equal."""
    if distance == "cosine":
        full = torch.nn.functional.normalize(q, dim=1) @ torch.nn.functional.normalize(x, dim=1).T
    elif distance in ("inner_product", "dot"):
        full = q @ x.T
    else:
        full = torch.cdist(q, x) ** (2 if distance == "sqeuclidean" else 1)
    largest = distance in SIMILARITIES
    if mask is not None:
        full = full.masked_fill(mask, -torch.inf if largest else torch.inf)
    return full.topk(min(k, x.shape[0]), dim=1, largest=largest)


@pytest.fixture
def data() -> tuple[torch.Tensor, torch.Tensor]:
    """Queries (37, 8) and index (101, 8); float64 keeps distinct scores distinct whatever the summation order."""
    gen = torch.Generator().manual_seed(0)
    queries = torch.randn(37, 8, generator=gen, dtype=torch.float64)
    index = torch.randn(101, 8, generator=gen, dtype=torch.float64)
    return queries, index


@pytest.mark.parametrize("distance", ALL_DISTANCES)
@pytest.mark.parametrize(("query_chunk", "index_chunk"), [(1, 7), (5, 3), (16, 50), (37, 101), (64, 1000)])
def test_chunked_equals_brute_force_separate_sets(data, distance, query_chunk, index_chunk) -> None:
    q, x = data
    scores, indices = top_k(q, x, 6, distance=distance, query_chunk_size=query_chunk, index_chunk_size=index_chunk)
    ref_scores, ref_indices = brute_force(q, x, 6, distance)
    assert scores.shape == indices.shape == (37, 6)
    torch.testing.assert_close(scores, ref_scores)
    assert torch.equal(indices, ref_indices)


@pytest.mark.parametrize("distance", ALL_DISTANCES)
@pytest.mark.parametrize(("query_chunk", "index_chunk"), [(1, 7), (8, 3), (40, 200)])
def test_chunked_equals_brute_force_self_search_excluding_diagonal(data, distance, query_chunk, index_chunk):
    _, x = data
    ids = torch.arange(len(x))
    scores, indices = top_k(
        x,
        x,
        10,
        distance=distance,
        query_ids=ids,
        index_ids=ids,
        query_chunk_size=query_chunk,
        index_chunk_size=index_chunk,
    )
    ref_scores, ref_indices = brute_force(x, x, 10, distance, mask=torch.eye(len(x), dtype=torch.bool))
    torch.testing.assert_close(scores, ref_scores)
    assert torch.equal(indices, ref_indices)
    assert not (indices == ids[:, None]).any()


def test_exclusion_by_ids_with_repeated_ids(data) -> None:
    q, x = data
    query_ids = np.arange(37) % 5  # several queries share an id
    index_ids = np.arange(101) % 7
    mask = torch.as_tensor(query_ids[:, None] == index_ids[None, :])  # (37, 101)
    scores, indices = top_k(q, x, 9, query_ids=query_ids, index_ids=index_ids, query_chunk_size=4, index_chunk_size=11)
    ref_scores, ref_indices = brute_force(q, x, 9, "cosine", mask=mask)
    torch.testing.assert_close(scores, ref_scores)
    assert torch.equal(indices, ref_indices)


def test_k_larger_than_index_and_unfillable_slots() -> None:
    x = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]])
    scores, indices = top_k(x, x, 10, index_chunk_size=2)
    assert indices.shape == (3, 3)  # fewer columns than k
    assert indices[:, 0].tolist() == [0, 1, 2]  # without exclusion each item finds itself first
    ids = [0, 1, 2]
    scores, indices = top_k(x, x, 10, query_ids=ids, index_ids=ids, index_chunk_size=2)
    assert indices.shape == (3, 2)  # self excluded: n - 1 columns
    # query 0 shares its id with index rows 0 and 1: one candidate left, the other slot stays empty
    scores, indices = top_k(x, x, 2, query_ids=[0, 5, 6], index_ids=[0, 0, 1], distance="euclidean")
    assert indices[0].tolist() == [2, -1]
    assert scores[0, 1] == torch.inf
    s, i = top_k(x, x, 2, query_ids=[0, 5, 6], index_ids=[0, 0, 1])
    assert i[0].tolist() == [2, -1] and s[0, 1] == -torch.inf


def test_accepts_numpy_and_lists_and_sorts_best_first() -> None:
    rng = np.random.default_rng(0)
    q, x = rng.normal(size=(4, 3)), rng.normal(size=(9, 3)).astype(np.float32)
    scores, indices = top_k(q, x, 4, distance="euclidean", index_chunk_size=2)
    assert scores.dtype == torch.float64 and indices.dtype == torch.int64  # promoted float32 + float64
    assert torch.all(scores[:, 1:] >= scores[:, :-1])  # distances ascending
    expected = np.sort(np.linalg.norm(q[:, None] - x[None], axis=-1), axis=1)[:, :4]
    np.testing.assert_allclose(scores.numpy(), expected, rtol=1e-5)
    for alias in ("dot", "inner_product"):
        scores, _ = top_k([[1, 0], [0, 1]], [[2, 0], [0, 3], [1, 1]], 3, distance=alias)
        assert scores.dtype == torch.float32  # integers compute in float32
        assert scores.tolist() == [[2.0, 1.0, 0.0], [3.0, 1.0, 0.0]]  # similarities descending


def test_input_errors() -> None:
    x = torch.zeros(3, 2)
    with pytest.raises(ConfigError, match="did you mean 'cosine'"):
        top_k(x, x, 1, distance="cosin")
    with pytest.raises(DataError, match="same dimension"):
        top_k(x, torch.zeros(3, 4), 1)
    with pytest.raises(ConfigError, match="both query_ids and index_ids"):
        top_k(x, x, 1, query_ids=[0, 1, 2])
    with pytest.raises(ConfigError, match="k must be"):
        top_k(x, x, 0)
    with pytest.raises(DataError, match="one id per row"):
        top_k(x, x, 1, query_ids=[0, 1], index_ids=[0, 1, 2])


class LargestAllocation(TorchDispatchMode):
    """Record the largest tensor any torch op allocates (views and in-place results share input storage)."""

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        return False  # no torch.compile here: skip wrapping in dynamo.disable (saves a 2 s import)

    def __init__(self) -> None:
        super().__init__()
        self.max_numel = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {t.untyped_storage().data_ptr() for t in tree_flatten((args, kwargs))[0] if torch.is_tensor(t)}
        for t in tree_flatten(out)[0]:
            if torch.is_tensor(t) and t.untyped_storage().data_ptr() not in inputs:
                self.max_numel = max(self.max_numel, t.numel())
        return out


def test_largest_allocation_bounded_by_chunks_not_index_size() -> None:
    rng = np.random.default_rng(0)
    nq, dim, k, qc, ic = 16, 16, 5, 8, 64
    queries = rng.normal(size=(nq, dim)).astype(np.float32)
    peaks = {}
    for n_index in (256, 1024):
        index = rng.normal(size=(n_index, dim)).astype(np.float32)
        for distance in ("cosine", "euclidean"):
            with LargestAllocation() as mode:
                top_k(
                    queries,
                    index,
                    k,
                    distance=distance,
                    query_ids=np.arange(nq),
                    index_ids=np.arange(n_index),
                    query_chunk_size=qc,
                    index_chunk_size=ic,
                )
            peaks[n_index, distance] = mode.max_numel
    assert peaks[256, "cosine"] == peaks[1024, "cosine"]
    assert peaks[256, "euclidean"] == peaks[1024, "euclidean"]
    # the largest is a block of scores (qc, ic), a normalised index block (ic, dim) or the (nq, k) result
    assert max(peaks.values()) <= max(qc * ic, ic * dim, nq * k)
    # the probe does see a full matrix when one is built
    with LargestAllocation() as mode:
        torch.as_tensor(queries) @ torch.as_tensor(index).T
    assert mode.max_numel == nq * 1024


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_queries_with_index_in_host_memory(data) -> None:
    q, x = data
    scores, indices = top_k(q.cuda(), x.numpy(), 5, index_chunk_size=10)
    assert scores.is_cuda and indices.is_cuda
    ref_scores, ref_indices = brute_force(q, x, 5, "cosine")
    torch.testing.assert_close(scores.cpu(), ref_scores)
    assert torch.equal(indices.cpu(), ref_indices)

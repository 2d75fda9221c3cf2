"""The evaluator: label relevance, self-exclusion, pairs; docarray's own embed_and_evaluate as reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from finetuner.errors import DataError
from finetuner.evaluation import (
    METRIC_NAMES,
    compute_metrics,
    encode_labels,
    evaluate_embeddings,
    evaluate_pairs,
    retrieve,
)


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tiny tensors: one thread is fastest, and immune to waiting on descheduled threads on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def clustered(n_labels: int, per_label: int, dim: int = 16, noise: float = 0.05, seed: int = 0):
    """Tight clusters around orthogonal centres: nearest neighbours always share the label."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(n_labels), per_label)
    emb = np.eye(dim)[labels] + noise * rng.normal(size=(len(labels), dim))  # (n, dim)
    return emb.astype(np.float32), labels


def test_separable_embeddings_score_one_and_shuffled_labels_less() -> None:
    emb, labels = clustered(n_labels=4, per_label=6)
    m = evaluate_embeddings(emb, labels, limit=5)  # each item has exactly 5 others with its label
    assert list(m) == [*METRIC_NAMES, "ndcg_at_10", "mrr_at_10", "map_at_5", "recall_at_5"]
    for name in m:
        if name != "dcg_at_k":
            assert m[name] == pytest.approx(1.0), name
    assert m["dcg_at_k"] == pytest.approx(1 + 1 + 1 / np.log2(3) + 1 / np.log2(4) + 1 / np.log2(5))
    shuffled = np.random.default_rng(1).permutation(labels)
    m_shuffled = evaluate_embeddings(emb, shuffled, limit=5)
    assert m_shuffled["precision_at_k"] < 0.6
    assert m_shuffled["ndcg_at_k"] < 1.0


def test_self_is_neither_retrieved_nor_counted_as_relevant() -> None:
    emb = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
    # query 0 ('a'): 1 relevant (item 1); query 1: 1 relevant; query 2 ('b'): 0 relevant, counted with zeros
    m = evaluate_embeddings(emb, ["a", "a", "b"], limit=2)
    assert m["recall_at_k"] == pytest.approx((1 + 1 + 0) / 3)
    assert m["precision_at_k"] == pytest.approx((0.5 + 0.5 + 0) / 3)  # 2 results each, 1 relevant
    # without exclusion each query finds itself first and counts itself
    m = evaluate_embeddings(emb, ["a", "a", "b"], limit=2, exclude_self=False)
    assert m["recall_at_k"] == 1.0 and m["reciprocal_rank"] == 1.0


def test_queries_as_subset_of_index_exclude_themselves_by_id() -> None:
    emb, labels = clustered(n_labels=5, per_label=8, noise=0.5)
    ids = np.array([f"doc-{i}" for i in range(len(labels))])
    rows = np.arange(0, 40, 3)  # the queries are some of the index items
    m = evaluate_embeddings(emb[rows], labels[rows], emb, labels, query_ids=ids[rows], index_ids=ids, limit=6)
    # reference: the self-search (diagonal excluded) restricted to those queries; 7 relevant items each
    _, indices = retrieve(emb, limit=6)
    relevance = labels[indices[rows]] == labels[rows, None]
    finetuner_metrics = {k: m[k] for k in METRIC_NAMES}  # the standard ones are checked against pytrec_eval
    assert finetuner_metrics == pytest.approx(compute_metrics(relevance, np.full(len(rows), 7), k=6))
    # the whole index as queries with ids is the self-search
    assert evaluate_embeddings(emb, labels, emb, labels, query_ids=ids, index_ids=ids, limit=6) == pytest.approx(
        evaluate_embeddings(emb, labels, limit=6)
    )
    # without ids nothing is excluded: each query finds itself first
    assert evaluate_embeddings(emb[rows], labels[rows], emb, labels, limit=6)["reciprocal_rank"] == 1.0


def test_torch_inputs_and_hashable_labels() -> None:
    emb, labels = clustered(n_labels=3, per_label=4)
    as_strings = [f"label {x}" for x in labels]
    as_tuples = [("t", int(x)) for x in labels]
    expected = evaluate_embeddings(emb, labels, limit=3)
    assert evaluate_embeddings(torch.as_tensor(emb), as_strings, limit=3) == expected
    assert evaluate_embeddings(emb, as_tuples, limit=3, distance="euclidean") == pytest.approx(expected)
    assert evaluate_embeddings(emb, torch.as_tensor(labels), limit=3, distance="dot") == pytest.approx(expected)


def test_encode_labels_shares_codes_across_groups() -> None:
    q, i = encode_labels(np.array([3, 1, 3]), np.array([1.0, 7.0]))  # numpy path: 1 == 1.0
    assert q[1] == i[0] and q[0] == q[2] and len({*q, *i}) == 3
    q, i = encode_labels(["x", 1, ("a", 2)], [1.0, ("a", 2), "y"])  # Python equality
    assert q.tolist() == [0, 1, 2] and i.tolist() == [1, 2, 3]
    with pytest.raises(DataError, match=r"query_labels\[1\]"):
        encode_labels(["a", ["unhashable"]], names=["query_labels"])


def test_pairs_relevance_is_the_same_row() -> None:
    rng = np.random.default_rng(0)
    text = rng.normal(size=(30, 8))
    image = text + 0.01 * rng.normal(size=(30, 8))  # row i pairs with row i
    m = evaluate_pairs(text, image, limit=5)
    assert m["reciprocal_rank"] == 1.0 and m["recall_at_k"] == 1.0
    assert m["precision_at_k"] == pytest.approx(1 / 5)  # one relevant item in 5 results
    permuted = evaluate_pairs(text, image[rng.permutation(30)], limit=5)
    assert permuted["reciprocal_rank"] < 0.5
    labels = np.arange(30)
    assert m == evaluate_embeddings(text, labels, image, labels, limit=5)


def test_retrieve_returns_ranked_numpy_results() -> None:
    emb, _ = clustered(n_labels=2, per_label=3)
    scores, indices = retrieve(emb, limit=10)
    assert isinstance(scores, np.ndarray) and indices.shape == (6, 5)  # 6 items less itself
    assert not (indices == np.arange(6)[:, None]).any()
    assert set(indices[0, :2]) == {1, 2}  # its own cluster first
    assert np.all(np.diff(scores, axis=1) <= 0)
    scores, indices = retrieve(emb[:2], emb, limit=1, exclude_self=False)
    assert indices[:, 0].tolist() == [0, 1]


def test_input_errors() -> None:
    emb, labels = clustered(n_labels=2, per_label=3)
    with pytest.raises(DataError, match="index_labels"):
        evaluate_embeddings(emb, labels, index_labels=labels)
    with pytest.raises(DataError, match="needs index_labels"):
        evaluate_embeddings(emb, labels, emb)
    with pytest.raises(DataError, match="query_labels has 5 entries"):
        evaluate_embeddings(emb, labels[:5])
    with pytest.raises(DataError, match="both query_ids and index_ids"):
        evaluate_embeddings(emb, labels, emb, labels, query_ids=list(range(6)))


@pytest.mark.parametrize("separate_index", [False, True])
def test_equals_docarray_embed_and_evaluate(monkeypatch: pytest.MonkeyPatch, separate_index: bool) -> None:
    docarray = pytest.importorskip("docarray")
    # docarray 0.21.1's dcg_at_k calls np.asfarray, which numpy 2 removed
    monkeypatch.setattr(np, "asfarray", lambda a: np.asarray(a, dtype=np.float64), raising=False)
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(60, 8)).astype(np.float32)
    labels = rng.integers(0, 6, size=60)

    def docs(rows: range) -> docarray.DocumentArray:
        return docarray.DocumentArray(
            [docarray.Document(id=str(i), embedding=emb[i], tags={"label": int(labels[i])}) for i in rows]
        )

    kwargs = {
        "metrics": list(METRIC_NAMES),
        "embed_funcs": lambda _: None,
        "limit": 5,
        "query_sample_size": None,
    }
    if separate_index:
        queries, index = range(20), range(20, 60)
        ref = docs(queries).embed_and_evaluate(index_data=docs(index), exclude_self=False, **kwargs)
        ours = evaluate_embeddings(emb[:20], labels[:20], emb[20:], labels[20:], limit=5)
    else:
        ref = docs(range(60)).embed_and_evaluate(exclude_self=True, **kwargs)
        ours = evaluate_embeddings(emb, labels, limit=5)
    assert {k: ours[k] for k in METRIC_NAMES} == pytest.approx(ref, rel=1e-9)

"""The standard metrics (nDCG@10, MRR@10, MAP@k, Recall@k) against pytrec_eval, the trec_eval bindings BEIR and
MTEB compute them with, on the same rankings; then through the evaluators, on real searches."""

from __future__ import annotations

import numpy as np
import pytest

from finetuner.data.shapes import PairData
from finetuner.evaluation import evaluate_embeddings
from finetuner.evaluation.metrics import METRIC_NAMES, compute_metrics
from finetuner.evaluation.model_eval import evaluate_sets, retrieval_sets
from finetuner.evaluation.standard_metrics import (
    map_cut,
    metric_names,
    mrr_cut,
    ndcg_cut,
    recall_cut,
    retrieval_metrics,
    standard_metrics,
)

pytrec_eval = pytest.importorskip("pytrec_eval")


def _reference(qrels: dict, run: dict, k: int) -> dict[str, dict[str, float]]:
    """pytrec_eval's per-query figures; MRR@10 on the run cut to its top 10 (as BEIR's and MTEB's MRR)."""
    measures = {"ndcg_cut.10", f"map_cut.{k}", f"recall.{k}"}
    full = pytrec_eval.RelevanceEvaluator(qrels, measures).evaluate(run)
    top10 = {q: dict(sorted(docs.items(), key=lambda kv: -kv[1])[:10]) for q, docs in run.items()}
    rr = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(top10)
    return {
        q: {
            "ndcg_at_10": full[q]["ndcg_cut_10"],
            f"map_at_{k}": full[q][f"map_cut_{k}"],
            f"recall_at_{k}": full[q][f"recall_{k}"],
            "mrr_at_10": rr[q]["recip_rank"],
        }
        for q in full
    }


def _random_case(rng: np.random.Generator, n_queries: int, n_docs: int, depth: int, graded: bool):
    """Random judgements and rankings: relevance of the retrieved items in rank order, plus the same as qrels/run."""
    qrels, run = {}, {}
    relevance = np.zeros((n_queries, depth))
    ideal = np.zeros((n_queries, n_docs))
    num_relevant = np.zeros(n_queries, dtype=int)
    for q in range(n_queries):
        n_rel = int(rng.integers(1, 8))
        judged = rng.choice(n_docs, size=n_rel, replace=False)
        gains = rng.integers(1, 4, size=n_rel) if graded else np.ones(n_rel, dtype=int)
        qrels[f"q{q}"] = {f"d{d}": int(g) for d, g in zip(judged, gains)}
        ranking = rng.permutation(n_docs)[:depth]  # distinct scores: no ties, so the order is the same for both
        run[f"q{q}"] = {f"d{d}": float(depth - r) + 0.5 for r, d in enumerate(ranking)}
        gain_of = dict(zip(judged.tolist(), gains.tolist()))
        relevance[q] = [gain_of.get(int(d), 0) for d in ranking]
        ideal[q, :n_rel] = gains
        num_relevant[q] = n_rel
    return qrels, run, relevance, ideal, num_relevant


@pytest.mark.parametrize("k", [5, 10, 20])
def test_binary_relevance_matches_pytrec_eval_per_query(k: int) -> None:
    rng = np.random.default_rng(k)
    qrels, run, relevance, _, num_relevant = _random_case(rng, n_queries=60, n_docs=40, depth=max(k, 10), graded=False)
    expected = _reference(qrels, run, k)
    got = {
        "ndcg_at_10": ndcg_cut(relevance, (np.arange(10) < num_relevant[:, None]).astype(float), 10),
        "mrr_at_10": mrr_cut(relevance, 10),
        f"map_at_{k}": map_cut(relevance, num_relevant, k),
        f"recall_at_{k}": recall_cut(relevance, num_relevant, k),
    }
    for name, values in got.items():
        reference = np.array([expected[f"q{q}"][name] for q in range(60)])
        np.testing.assert_allclose(values, reference, atol=1e-6, err_msg=name)
    means = standard_metrics(relevance, num_relevant, limit=k)
    for name in means:
        assert means[name] == pytest.approx(np.mean([expected[q][name] for q in expected]), abs=1e-6)


def test_graded_relevance_ndcg_matches_pytrec_eval() -> None:
    rng = np.random.default_rng(7)
    qrels, run, relevance, ideal, num_relevant = _random_case(rng, n_queries=50, n_docs=30, depth=20, graded=True)
    expected = _reference(qrels, run, 20)
    means = standard_metrics(relevance, num_relevant, limit=20, ideal_gains=ideal)
    for name in means:
        assert means[name] == pytest.approx(np.mean([expected[q][name] for q in expected]), abs=1e-6), name
    per_query = ndcg_cut(relevance, ideal, 10)
    np.testing.assert_allclose(per_query, [expected[f"q{q}"]["ndcg_at_10"] for q in range(50)], atol=1e-6)


def test_queries_without_relevant_items_are_left_out_as_beir_does() -> None:
    # q1 has nothing relevant in the index: BEIR's qrels do not list it, so it is not averaged
    relevance = np.array([[0, 1, 0], [0, 0, 0]])
    means = standard_metrics(relevance, num_relevant=[1, 0], limit=3)
    qrels = {"q0": {"d1": 1}}
    run = {"q0": {"d0": 3.0, "d1": 2.0, "d2": 1.0}}
    expected = _reference(qrels, run, 3)["q0"]
    assert means == pytest.approx(expected)
    assert standard_metrics(np.zeros((2, 3)), num_relevant=[0, 0], limit=3) == dict.fromkeys(means, 0.0)
    # Finetuner's metrics keep counting the query, as 0
    assert compute_metrics(relevance, [1, 0], k=3)["reciprocal_rank"] == 0.25


def test_standard_and_finetuner_definitions_differ_where_documented() -> None:
    # one relevant item retrieved at rank 2, two more relevant items the search missed
    m = retrieval_metrics([[0, 1, 0, 0]], [3], limit=4)
    assert m["ndcg_at_k"] == 1.0  # docarray's ideal is the retrieved list sorted, and ranks 1 and 2 weigh alike
    assert m["ndcg_at_10"] == pytest.approx((1 / np.log2(3)) / (1 + 1 / np.log2(3) + 1 / np.log2(4)))
    assert m["average_precision"] == 0.5  # over the relevant items retrieved
    assert m["map_at_4"] == pytest.approx(0.5 / 3)  # over all relevant items of the index
    assert m["recall_at_k"] == m["recall_at_4"] == pytest.approx(1 / 3)
    assert m["reciprocal_rank"] == m["mrr_at_10"] == 0.5
    assert list(m) == metric_names(4)


def test_mrr_and_ndcg_look_at_ten_results_even_when_limit_is_smaller() -> None:
    relevance = np.array([[0, 0, 0, 0, 0, 0, 1, 0, 0, 0]])
    m = retrieval_metrics(relevance, [1], limit=5)
    assert m["reciprocal_rank"] == 0.0 and m["recall_at_5"] == 0.0  # at k = 5
    assert m["mrr_at_10"] == pytest.approx(1 / 7)  # at 10


def _reference_from_embeddings(query, index, relevant_sets, exclude=None, k=20):
    """qrels/run from a full cosine score matrix (the index is small), fed to pytrec_eval."""
    qn = query / np.linalg.norm(query, axis=1, keepdims=True)
    xn = index / np.linalg.norm(index, axis=1, keepdims=True)
    scores = qn @ xn.T  # (n_queries, n_index)
    qrels, run = {}, {}
    for q, relevant in enumerate(relevant_sets):
        if not relevant:
            continue
        qrels[f"q{q}"] = {f"d{d}": 1 for d in relevant}
        run[f"q{q}"] = {f"d{d}": float(scores[q, d]) for d in range(len(index)) if exclude is None or exclude(q) != d}
    per_query = _reference(qrels, run, k)
    return {name: np.mean([v[name] for v in per_query.values()]) for name in next(iter(per_query.values()))}


def test_labelled_evaluation_matches_pytrec_eval_on_a_real_search() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 12, size=150)
    labels[0] = 99  # a label held by one item: with the query itself excluded it has no relevant item
    emb = rng.normal(size=(150, 16)) + 0.8 * np.eye(16)[labels % 16]
    got = evaluate_embeddings(emb, labels.tolist(), limit=20)
    relevant = [[j for j in range(150) if labels[j] == labels[i] and j != i] for i in range(150)]
    expected = _reference_from_embeddings(emb, emb, relevant, exclude=lambda q: q, k=20)
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, abs=1e-6), name
    assert list(got)[: len(METRIC_NAMES)] == list(METRIC_NAMES)


def test_pair_evaluation_with_repeated_items_matches_pytrec_eval() -> None:
    rng = np.random.default_rng(1)
    # 40 documents; 60 pairs: some queries have several documents, some documents several queries
    queries = [f"q{int(i)}" for i in rng.integers(0, 30, size=60)]
    documents = [f"d{int(i)}" for i in rng.integers(0, 40, size=60)]
    vectors = {name: rng.normal(size=8) for name in {*queries, *documents}}
    data = PairData(queries, documents, "text", "text", [str(i) for i in range(60)])
    sets = retrieval_sets(data)

    def embed(items, modality):
        import torch

        return torch.tensor(np.stack([vectors[x] for x in items]), dtype=torch.float32)

    got, _ = evaluate_sets(sets, embed, limit=10, num_examples=0)
    q = np.stack([vectors[x] for x in sets.queries])
    x = np.stack([vectors[x] for x in sets.index])
    expected = _reference_from_embeddings(q, x, sets.relevant, k=10)
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, abs=1e-5), name

"""Finetuner's nine metrics: hand-computed examples, edge cases and docarray 0.21.1 as the reference."""

from __future__ import annotations

import math

import numpy as np
import pytest

from finetuner.errors import ConfigError, DataError
from finetuner.evaluation import metrics as M
from finetuner.evaluation.metrics import METRIC_NAMES, compute_metrics

LOG2_3 = math.log2(3)  # 1.5849625...


def test_metric_names_in_finetuner_order() -> None:
    assert METRIC_NAMES == (
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


def test_hand_computed_full_list() -> None:
    rel, n_rel = [1, 0, 1, 1, 0], 5
    # precision = 3 relevant / 5 retrieved
    assert float(M.precision_at_k(rel, k=5)) == pytest.approx(0.6)
    # recall = 3 retrieved / 5 relevant in the index
    assert float(M.recall_at_k(rel, n_rel, k=5)) == pytest.approx(0.6)
    # f1 = 2 * 0.6 * 0.6 / (0.6 + 0.6)
    assert float(M.f1_score_at_k(rel, n_rel, k=5)) == pytest.approx(0.6)
    assert float(M.hit_at_k(rel, k=5)) == 1.0
    # R = 3 relevant in the list; rel[:3] = [1, 0, 1] -> 2/3
    assert float(M.r_precision(rel, k=5)) == pytest.approx(2 / 3)
    # precision at the relevant ranks 1, 3, 4: 1/1, 2/3, 3/4 -> mean = (1 + 2/3 + 3/4) / 3 = 29/36
    assert float(M.average_precision(rel, k=5)) == pytest.approx(29 / 36)
    assert float(M.reciprocal_rank(rel, k=5)) == 1.0
    # weights [1, 1, 1/log2(3), 1/log2(4), 1/log2(5)]: 1 + 0 + 1/log2(3) + 0.5 + 0
    dcg = 1.5 + 1 / LOG2_3
    assert float(M.dcg_at_k(rel, k=5)) == pytest.approx(dcg)
    # ideal = [1, 1, 1, 0, 0]: 1 + 1 + 1/log2(3)
    assert float(M.ndcg_at_k(rel, k=5)) == pytest.approx(dcg / (2 + 1 / LOG2_3))


def test_hand_computed_truncated_at_k() -> None:
    rel, n_rel = [1, 0, 1, 1, 0], 5  # k = 3 sees [1, 0, 1]
    assert float(M.precision_at_k(rel, k=3)) == pytest.approx(2 / 3)
    assert float(M.recall_at_k(rel, n_rel, k=3)) == pytest.approx(2 / 5)
    # 2 * (2/3) * (2/5) / (2/3 + 2/5) = (8/15) / (16/15)
    assert float(M.f1_score_at_k(rel, n_rel, k=3)) == pytest.approx(0.5)
    # R = 2; rel[:2] = [1, 0] -> 1/2
    assert float(M.r_precision(rel, k=3)) == pytest.approx(0.5)
    # (1/1 + 2/3) / 2
    assert float(M.average_precision(rel, k=3)) == pytest.approx(5 / 6)
    # 1 + 0 + 1/log2(3); ideal [1, 1, 0] = 2
    assert float(M.dcg_at_k(rel, k=3)) == pytest.approx(1 + 1 / LOG2_3)
    assert float(M.ndcg_at_k(rel, k=3)) == pytest.approx((1 + 1 / LOG2_3) / 2)


def test_hand_computed_late_hit() -> None:
    rel, n_rel = [0, 0, 0, 1], 2
    assert float(M.precision_at_k(rel, k=4)) == pytest.approx(0.25)  # 1/4
    assert float(M.recall_at_k(rel, n_rel, k=4)) == pytest.approx(0.5)  # 1/2
    assert float(M.f1_score_at_k(rel, n_rel, k=4)) == pytest.approx(1 / 3)  # 2 * 1/4 * 1/2 / (3/4)
    assert float(M.hit_at_k(rel, k=3)) == 0.0  # the hit is at rank 4
    assert float(M.r_precision(rel, k=4)) == 0.0  # R = 1; rel[:1] = [0]
    assert float(M.average_precision(rel, k=4)) == pytest.approx(0.25)  # precision@4 = 1/4
    assert float(M.reciprocal_rank(rel, k=4)) == pytest.approx(0.25)  # 1/4
    assert float(M.dcg_at_k(rel, k=4)) == pytest.approx(0.5)  # 1/log2(4)
    assert float(M.ndcg_at_k(rel, k=4)) == pytest.approx(0.5)  # 0.5 / ideal [1, 0, 0, 0] = 1


def test_docarray_quirks_kept() -> None:
    # method-0 discount: ranks 1 and 2 weigh the same, so [0, 1] is "ideal"
    assert float(M.ndcg_at_k([0, 1], k=2)) == 1.0
    # ideal from the retrieved list only: one hit first is perfect although 9 relevant items were missed
    assert float(M.ndcg_at_k([1, 0, 0], k=3)) == 1.0
    # graded gains for dcg: 3 + 2 + 1/log2(3)
    assert float(M.dcg_at_k([3, 2, 1], k=3)) == pytest.approx(5 + 1 / LOG2_3)


def test_vectorised_shapes_and_empty_lists() -> None:
    rel = np.array([[1, 0, 1], [0, 0, 0]])
    assert M.precision_at_k(rel, k=3).shape == (2,)
    assert M.precision_at_k([1, 0], k=2).shape == ()
    np.testing.assert_allclose(M.reciprocal_rank(rel, k=3), [1.0, 0.0])
    # fewer retrieved than k: divide by what was retrieved (docarray)
    assert float(M.precision_at_k([1, 0], k=20)) == 0.5
    for name in METRIC_NAMES:
        fn = getattr(M, name)
        args = (np.zeros((3, 0)), [1, 1, 1]) if name in ("recall_at_k", "f1_score_at_k") else (np.zeros((3, 0)),)
        np.testing.assert_array_equal(fn(*args, k=5), np.zeros(3))


def test_zero_relevant_in_index_scores_zero_and_counts() -> None:
    rel = np.array([[0, 0], [1, 0]], dtype=bool)
    np.testing.assert_array_equal(M.recall_at_k(rel, [0, 1], k=2), [0.0, 1.0])  # docarray: [nan, 1]
    m = compute_metrics(rel, [0, 1], k=2)
    assert m["recall_at_k"] == 0.5  # (0 + 1) / 2: the query without relevant items is counted
    assert m["precision_at_k"] == 0.25  # (0 + 1/2) / 2
    assert all(math.isfinite(v) for v in m.values())


def test_validation_errors() -> None:
    with pytest.raises(ConfigError, match="k must be"):
        M.precision_at_k([1, 0], k=0)
    with pytest.raises(DataError, match="shape"):
        M.precision_at_k(np.zeros((2, 2, 2)))
    with pytest.raises(DataError, match="num_relevant"):
        M.recall_at_k([1, 1, 1], 2, k=3)  # 3 retrieved relevant items but only 2 in the index
    with pytest.raises(DataError, match="one entry per query"):
        compute_metrics(np.ones((3, 2)), [5, 5], k=2)
    with pytest.raises(DataError, match="no queries"):
        compute_metrics(np.ones((0, 2)), [], k=2)


def _docarray_evaluation(monkeypatch: pytest.MonkeyPatch):
    evaluation = pytest.importorskip("docarray.math.evaluation")
    # docarray 0.21.1's dcg_at_k calls np.asfarray, which numpy 2 removed
    monkeypatch.setattr(np, "asfarray", lambda a: np.asarray(a, dtype=np.float64), raising=False)
    return evaluation


@pytest.mark.parametrize("width", [1, 7, 20])
def test_compute_metrics_equals_docarray(monkeypatch: pytest.MonkeyPatch, width: int) -> None:
    evaluation = _docarray_evaluation(monkeypatch)
    rng = np.random.default_rng(width)
    n = 300
    rel = rng.random((n, width)) < rng.random((n, 1))  # (n, width): hit rates from 0 to 1 per query
    rel[:10] = False  # some queries without any hit
    num_relevant = rel.sum(axis=1) + rng.integers(0, 5, size=n)
    num_relevant = np.maximum(num_relevant, 1)  # docarray gives NaN for 0 (we give 0, tested above)
    for k in (width, None):
        ours = compute_metrics(rel, num_relevant, k=k)
        for name in METRIC_NAMES:
            fn = getattr(evaluation, name)
            ref = [fn(list(r.astype(int)), max_rel=int(m), k=k) for r, m in zip(rel, num_relevant)]
            assert ours[name] == pytest.approx(float(np.mean(ref)), rel=1e-12, abs=1e-12), name


def test_each_metric_equals_docarray_per_query_and_at_smaller_k(monkeypatch: pytest.MonkeyPatch) -> None:
    evaluation = _docarray_evaluation(monkeypatch)
    rng = np.random.default_rng(1)
    rel = (rng.random((100, 20)) < 0.3).astype(int)  # (100, 20)
    num_relevant = rel.sum(axis=1) + 3
    for k in (5, 20):
        for name in METRIC_NAMES:
            args = (num_relevant,) if name in ("recall_at_k", "f1_score_at_k") else ()
            ours = getattr(M, name)(rel, *args, k=k)  # (100,)
            # every metric sees the top k only: docarray on the list cut at k
            ref = [getattr(evaluation, name)(list(r[:k]), max_rel=int(m), k=k) for r, m in zip(rel, num_relevant)]
            np.testing.assert_allclose(ours, ref, rtol=1e-12, atol=1e-12, err_msg=name)

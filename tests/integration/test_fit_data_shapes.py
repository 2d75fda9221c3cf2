"""Data shapes end to end with a tiny random BERT: triplets evaluate (query -> positive, negatives in the index) as a
hand computation says; pairs whose queries and documents repeat train as groups; triplets never train as pairs."""

from __future__ import annotations

import numpy as np
import pytest
from tests.conftest import make_texts

import finetuner
from finetuner.errors import DataError

pytestmark = pytest.mark.integration


def _triplets() -> list[tuple[str, str, str]]:
    rows = make_texts(3, seed=5)  # 4 classes x 3 texts
    by_label: dict[str, list[str]] = {}
    for text, label in rows:
        by_label.setdefault(label, []).append(text)
    labels = list(by_label)
    return [
        (texts[0], texts[1], by_label[labels[(k + 1) % len(labels)]][2]) for k, texts in enumerate(by_label.values())
    ]


def test_evaluate_triplets_matches_a_hand_computation(tiny_bert: str) -> None:
    model = finetuner.build_model(tiny_bert)
    triplets = _triplets()
    metrics = finetuner.evaluate(model, triplets, limit=20)
    queries = [q for q, _, _ in triplets]
    index = list(dict.fromkeys(x for _, p, n in triplets for x in (p, n)))
    q = finetuner.encode(model, queries)
    x = finetuner.encode(model, index)
    q, x = q / np.linalg.norm(q, axis=1, keepdims=True), x / np.linalg.norm(x, axis=1, keepdims=True)
    ranks = []
    for row, (_, positive, _) in enumerate(triplets):
        order = np.argsort(-(x @ q[row]), kind="stable")
        ranks.append(int(np.flatnonzero(order == index.index(positive))[0]) + 1)
    assert metrics["reciprocal_rank"] == pytest.approx(np.mean([1 / r for r in ranks]), abs=1e-6)
    assert metrics["hit_at_k"] == pytest.approx(1.0)  # 8 candidates, all within limit 20


def test_triplets_are_refused_for_training_but_evaluate_as_eval_data(tiny_bert: str) -> None:
    with pytest.raises(DataError, match="will not train these rows as plain pairs"):
        finetuner.fit(tiny_bert, _triplets(), epochs=1, verbose=False)
    run = finetuner.fit(tiny_bert, make_texts(4), _triplets(), epochs=1, batch_size=8, verbose=False)
    assert set(run.metrics()) == {"before", "after"} and 0 <= run.metrics()["after"]["reciprocal_rank"] <= 1


def test_pairs_with_repeated_queries_and_documents_train_as_groups(tiny_bert: str) -> None:
    rows = make_texts(6, seed=2)
    by_label: dict[str, list[str]] = {}
    for text, label in rows:
        by_label.setdefault(label, []).append(text)
    pairs = []
    for texts in by_label.values():  # every class: one query with three documents, two more queries on one of them
        pairs += [(texts[0], texts[1]), (texts[0], texts[2]), (texts[0], texts[3]), (texts[4], texts[1])]
        pairs += [(texts[5], texts[1])]
    options = finetuner.CSVOptions(is_labeled=False)
    run = finetuner.fit(tiny_bert, pairs, pairs, epochs=2, batch_size=8, learning_rate=1e-3, csv_options=options,
                        verbose=False)
    metrics = run.metrics()
    assert run.status()["status"] == "FINISHED"
    assert metrics["after"]["reciprocal_rank"] > metrics["before"]["reciprocal_rank"]

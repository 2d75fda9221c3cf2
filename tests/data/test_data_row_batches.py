"""Batches and splits of pairs, triplets and scored pairs that share items: one row of a duplicate group per batch,
the promised number of batches even when one group holds most rows, and val_split never cuts a group in two."""

from __future__ import annotations

import warnings
from collections import Counter

import numpy as np
import pytest

from finetuner.data.length_sampler import LengthBucketPairSampler
from finetuner.data.samplers import PairBatchSampler
from finetuner.data.shapes import PairData, ScoredPairData, TripletData
from finetuner.training.check import split


def _big_group_pairs() -> tuple[list[str], list[str]]:
    """One query with 30 documents, then 10 pairs that share nothing."""
    left = ["big query"] * 30 + [f"q{i}" for i in range(10)]
    right = [f"big doc {i}" for i in range(30)] + [f"d{i}" for i in range(10)]
    return left, right


def test_pair_batches_keep_their_count_when_one_group_holds_most_pairs() -> None:
    left, right = _big_group_pairs()
    sampler = PairBatchSampler(left, right, batch_size=4, seed=0)
    assert len(sampler) == 10
    for epoch in range(4):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(batches) == len(sampler)  # before: the epoch ended once only the big group was left
        for batch in batches:
            assert len(batch) == 4
            assert len({sampler.groups[i] for i in batch}) == 4  # one pair of a group per batch
    shares = [list(PairBatchSampler(left, right, 4, seed=0, rank=r, world_size=2)) for r in (0, 1)]
    assert [len(s) for s in shares] == [10, 10]


def test_a_batch_holds_at_most_as_many_pairs_as_there_are_groups() -> None:
    left = ["a"] * 6 + ["b"] * 6 + ["c"]
    right = [f"x{i}" for i in range(13)]
    with pytest.warns(UserWarning, match="the pairs form 3 groups"):
        sampler = PairBatchSampler(left, right, batch_size=8, seed=0)
    assert sampler.batch_size == 3 and len(sampler) == 4
    assert all(len({left[i] for i in batch}) == 3 for batch in sampler)


def test_length_batches_keep_their_count_when_one_class_holds_most_pairs() -> None:
    data = PairData(*_big_group_pairs(), "text", "text", [str(i) for i in range(40)])
    labelled = data.as_labelled()
    lengths = [len(t.split()) for t in labelled.items]
    sampler = LengthBucketPairSampler(lengths, batch_size=8, seed=0, bucket_batches=2, labels=labelled.labels)
    for epoch in range(4):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(batches) == len(sampler) == 6  # 26 pairs (the big class of 31 items gives 16), 4 a batch
        for batch in batches:
            texts = [labelled.items[i] for i in batch]
            assert len(set(texts)) == len(texts) == 8
            assert set(Counter(labelled.labels[i] for i in batch).values()) == {2}


def test_triplet_rows_are_batched_one_row_of_a_group_at_a_time() -> None:
    queries = ["q1", "q1", "q2", "q3", "q4", "q5", "q6"]
    positives = ["p1", "p2", "p1", "p3", "p4", "p5", "p6"]  # q1, q2 share p1; q1 has two positives: one group
    negatives = [("p3",), ("n",), ("n",), ("p1",), ("m",), ("n",), ("k",)]
    rows = TripletData(queries, positives, negatives, "text", "text", [str(i) for i in range(7)]).as_rows()
    assert rows.groups == [0, 0, 0, 1, 2, 3, 4]
    assert rows.targets[0] == (0, 0, 1) and rows.targets[3] == (1, 1, 0)  # p3 is row 3's positive, p1 group 0's
    first, second = [r[0] for r in rows.rows], [r[1] for r in rows.rows]
    sampler = PairBatchSampler(first, second, batch_size=4, seed=0, groups=rows.groups)
    for epoch in range(5):
        sampler.set_epoch(epoch)
        for batch in sampler:
            members = [rows.items[rows.rows[i][j]] for i in batch for j in (0, 1)]
            assert len(set(members)) == len(members)  # no query or positive twice in a batch


@pytest.mark.parametrize("kind", ["pairs", "triplets", "scored"])
def test_val_split_never_puts_a_group_on_both_sides(kind: str) -> None:
    rng = np.random.default_rng(0)
    queries = [f"q{int(i)}" for i in rng.integers(0, 25, 60)]  # repeated queries
    documents = [f"d{int(i)}" for i in rng.integers(0, 40, 60)]  # repeated documents
    ids = [str(i) for i in range(60)]
    if kind == "pairs":
        data = PairData(queries, documents, "text", "text", ids)
    elif kind == "triplets":
        data = TripletData(queries, documents, [(f"n{i}",) for i in range(60)], "text", "text", ids)
    else:
        data = ScoredPairData(queries, documents, list(rng.random(60)), "text", "text", ids)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        train, val = split(data, 0.2, seed=0)
    assert type(train) is type(data) and len(train) + len(val) == 60 and len(val) >= 1
    sides = [(train.queries, train.positives) if kind == "triplets" else (train.left, train.right),
             (val.queries, val.positives) if kind == "triplets" else (val.left, val.right)]
    train_items, val_items = ({*a, *b} for a, b in sides)
    assert not train_items & val_items
    assert sorted(train.ids + val.ids, key=int) == ids


def test_prompts_before_the_texts_keep_the_rows_duplicate_groups() -> None:
    from finetuner.models.prompts import prompt_data

    # row 1's negative is row 0's query, row 2 shares row 0's positive as its query: prefixes must not untie them
    triplets = TripletData(["q0", "q1", "p0"], ["p0", "p1", "p2"], [("n",), ("q0",), ("m",)], "text", "text",
                           ["0", "1", "2"])
    prompted = prompt_data(triplets, {"query": "query: ", "document": "passage: "})
    assert prompted.queries[0] == "query: q0" and prompted.negatives[1] == ("passage: q0",)
    assert prompted.as_rows().targets == triplets.as_rows().targets == [(0, 0, -1), (1, 1, 0), (0, 0, -1)]
